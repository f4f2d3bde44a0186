"""Writing a reconstructed volume from a bundle run: NIfTI + orthogonal-slices PNG + a JSON of metrics.

:class:`ReconstructionWriter` (an :class:`~medgen.engines.writers.base.OutputWriter`) writes ``<prefix>.nii.gz`` (the
volume's affine), ``<prefix>.png`` and ``<prefix>_metrics.json`` (settings, run time, statistics, metrics of the
volume and of baselines such as the pseudo-inverse when a reference is given, by
:func:`~medgen.engines.metrics.reconstruction.reconstruction_metrics`), refuses to write over existing files
(:meth:`ReconstructionWriter.check` says so BEFORE a long reconstruction starts) and writes each file atomically.
Subclasses change what is scored (:meth:`ReconstructionWriter.metrics`) and drawn
(:meth:`ReconstructionWriter.save_png`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medgen.data.io import save_orthogonal_slices_png
from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.reconstruction import reconstruction_metrics
from medgen.engines.writers.base import OutputWriter, as_affine, volume_statistics

__all__ = ["ReconstructionWriter"]


class ReconstructionWriter(OutputWriter):
    """Write one reconstructed volume into ``output_dir`` without overwriting anything.

    Files: ``<prefix>.nii.gz`` (float32, the MetaTensor's affine or ``affine``), ``<prefix>.png`` (:meth:`save_png`:
    three orthogonal mid-slices) and ``<prefix>_metrics.json`` holding ``info``, the seconds since :meth:`check`, the
    volume's shape, affine and statistics, and, with a reference, :meth:`metrics` (:func:`reconstruction_metrics`) of
    the volume and of each baseline.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"tpdm_zsr_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace (e.g. the measurement and reference paths).
        data_range, clip: passed to :func:`reconstruction_metrics`.
        display_range: ``(vmin, vmax)`` of the PNG (``None``: the volume's 0.5 / 99.5 percentiles).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "reconstruction",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        data_range: float = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs)
        self.data_range = float(data_range)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.display_range = (None, None) if display_range is None else tuple(map(float, display_range))

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """The scores of ``volume`` (or a baseline) against ``reference``: :func:`reconstruction_metrics`."""
        return reconstruction_metrics(volume, reference, self.data_range, self.clip)

    def save_png(
        self, path: Path, volume: torch.Tensor, reference: Any | None, baselines: Mapping[str, Any]
    ) -> None:
        """Write the preview of ``volume`` ``(D, H, W)``: its three orthogonal mid-slices on ``display_range``."""
        save_orthogonal_slices_png(
            volume.float().numpy(), path, title=self.prefix, overwrite=self.overwrite, inputs=self.inputs,
            vmin=self.display_range[0], vmax=self.display_range[1],
        )

    def __call__(
        self,
        volume: torch.Tensor,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
    ) -> dict[str, Any]:
        """Write ``volume`` (one volume, see :func:`reconstruction_metrics`; a MetaTensor's affine is used).

        Args:
            volume: the reconstruction.
            reference: the ground truth for metrics, or ``None``.
            baselines: named volumes (e.g. ``{"pseudo_inverse": ...}``; ``None`` entries are skipped) scored against
                ``reference`` too (and shown by subclasses' :meth:`save_png`).
            affine: 4x4 affine to write instead of the MetaTensor's (identity for plain tensors).

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: bad volumes (see :meth:`metrics`).
        """
        data = as_volume(volume, "volume")
        affine = as_affine(affine, volume)
        baselines = {name: value for name, value in (baselines or {}).items() if value is not None}
        metrics = None if reference is None else self.metrics(data, reference)
        baseline_metrics = (
            {} if reference is None else {name: self.metrics(value, reference) for name, value in baselines.items()}
        )
        elapsed = self.seconds_since_check()
        paths = self.paths()
        array = data.float().numpy()
        self.save_nifti(array, paths["nifti"], affine)
        self.save_png(paths["png"], data, reference, baselines)
        content = {
            **self.info,
            "seconds": round(elapsed, 3),
            **self.describe(array, affine, nifti=paths["nifti"], png=paths["png"]),
            "statistics": volume_statistics(array),
            "metrics": metrics,
            "baselines": baseline_metrics,
        }
        return self.write_summary(paths["metrics"], content)
