"""Writing a bundle run's results: NIfTI, previews and a JSON summary per run, atomically, never over a file.

- :mod:`~medgen.engines.writers.atomic`: :func:`write_atomically` (temporary file, then one rename);
- :mod:`~medgen.engines.writers.base`: :class:`OutputWriter`, the base every writer shares;
- :mod:`~medgen.engines.writers.staging`: :class:`OutputStaging`, all of a run's files or none;
- :mod:`~medgen.engines.writers.preview`: the one preview style (input | baseline | output | reference | |error|);
- :mod:`~medgen.engines.writers.handler`: :class:`WriteResults`, a writer as an evaluator handler;
- one writer per kind of result: :class:`GeneratedVolumeWriter`, :class:`ReconstructionWriter`,
  :class:`SliceReconstructionWriter`, :class:`KspaceReconstructionWriter`, :class:`SemanticSynthesisWriter`,
  :class:`SynthesisWriter`.
"""

from __future__ import annotations

from medgen.engines.writers.atomic import write_atomically
from medgen.engines.writers.staging import OutputStaging, recover_staging
from medgen.engines.writers.preview import PreviewColumn, preview_columns, save_preview_png
from medgen.engines.writers.base import OutputWriter, as_affine, save_panel_grid_png, volume_statistics
from medgen.engines.writers.generated import GeneratedVolumeWriter
from medgen.engines.writers.reconstruction import ReconstructionWriter
from medgen.engines.writers.slices import SliceReconstructionWriter, save_slice_comparison_png
from medgen.engines.writers.kspace import KspaceReconstructionWriter
from medgen.engines.writers.semantic import SemanticSynthesisWriter
from medgen.engines.writers.synthesis import SynthesisWriter
from medgen.engines.writers.handler import WriteResults

__all__ = [
    "write_atomically",
    "OutputStaging",
    "recover_staging",
    "PreviewColumn",
    "preview_columns",
    "save_preview_png",
    "OutputWriter",
    "as_affine",
    "save_panel_grid_png",
    "volume_statistics",
    "GeneratedVolumeWriter",
    "ReconstructionWriter",
    "SliceReconstructionWriter",
    "save_slice_comparison_png",
    "KspaceReconstructionWriter",
    "SemanticSynthesisWriter",
    "SynthesisWriter",
    "WriteResults",
]
