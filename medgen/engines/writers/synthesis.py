"""Writing a synthesised contrast (cWDM modality translation) with its scores inside the brain mask.

:class:`SynthesisWriter` is a :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter` whose metrics are
:func:`~medgen.engines.metrics.synthesis.masked_synthesis_metrics` in a brain mask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.synthesis import masked_synthesis_metrics
from medgen.engines.writers.reconstruction import ReconstructionWriter

__all__ = ["SynthesisWriter"]


class SynthesisWriter(ReconstructionWriter):
    """Write a synthesised contrast: ``<prefix>.nii.gz``, ``<prefix>.png`` (the preview of three orthogonal mid-planes) and
    ``<prefix>_metrics.json`` with :func:`masked_synthesis_metrics` of the synthesis and of each baseline.

    Args:
        output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range, staging_dir: as
            :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter`.
        mask: the brain mask the metrics are computed in (``None``: every voxel).
        win_size: SSIM window of :func:`masked_synthesis_metrics`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "synthesis",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        data_range: float = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
        mask: Any | None = None,
        win_size: int = 7,
        staging_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range, staging_dir)
        self.mask = None if mask is None else as_volume(mask, "mask") != 0
        self.win_size = int(win_size)

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """:func:`masked_synthesis_metrics` of ``volume`` in this writer's mask."""
        mask = torch.ones_like(as_volume(reference, "reference")) if self.mask is None else self.mask
        return masked_synthesis_metrics(volume, reference, mask, self.data_range, self.clip, self.win_size)
