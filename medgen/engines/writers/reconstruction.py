"""Writing a reconstructed volume from a bundle run: NIfTI + preview PNG + a JSON of metrics.

:class:`ReconstructionWriter` (an :class:`~medgen.engines.writers.base.OutputWriter`) writes ``<prefix>.nii.gz`` (the
volume's affine), ``<prefix>.png`` (the preview: input | strongest baseline | output | reference | |error| in three
orthogonal mid-planes, scores in the titles) and ``<prefix>_metrics.json`` (settings, run time, statistics, metrics
of the volume and of baselines such as the pseudo-inverse when a reference is given, by
:func:`~medgen.engines.metrics.reconstruction.reconstruction_metrics`), refuses to write over existing files
(:meth:`ReconstructionWriter.check` says so BEFORE a long reconstruction starts) and commits the three files together.
Subclasses change what is scored (:meth:`ReconstructionWriter.metrics`) and how the preview cuts the volume
(:attr:`ReconstructionWriter.slice_axis`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.reconstruction import reconstruction_metrics
from medgen.engines.metrics.uncertainty import uncertainty_metrics
from medgen.engines.writers.base import OutputWriter, as_affine, volume_statistics
from medgen.engines.writers.preview import preview_columns

__all__ = ["ReconstructionWriter"]


class ReconstructionWriter(OutputWriter):
    """Write one reconstructed volume into ``output_dir``: all three files or none, never over a file.

    Files: ``<prefix>.nii.gz`` (float32, the MetaTensor's affine or ``affine``), ``<prefix>.png`` (the preview of
    :mod:`~medgen.engines.writers.preview`: input | strongest baseline | output | reference | |error|) and
    ``<prefix>_metrics.json`` holding ``info``, the seconds since :meth:`check`, the volume's shape, affine and
    statistics, and, with a reference, :meth:`metrics` (:func:`reconstruction_metrics`) of the volume and of each
    baseline.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"tpdm_zsr_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace (e.g. the measurement and reference paths).
        data_range: the metrics' data range, passed to :func:`reconstruction_metrics`; ``None``: the reference's
            ``max - min`` (issue 16's convention for comparing with classical baselines).
        clip: passed to :func:`reconstruction_metrics`.
        display_range: ``(vmin, vmax)`` of the preview (``None``: the reference's, else the volume's 0.5 / 99.5
            percentiles).
        staging_dir: where the files are staged before they are committed together (see
            :class:`~medgen.engines.writers.base.OutputWriter`).
        write_std: the run draws several posterior samples: the volume is their mean and a call also writes
            ``<prefix>_std.nii.gz`` (their per-voxel std) and, with a reference, ``uncertainty``
            (:func:`~medgen.engines.metrics.uncertainty.uncertainty_metrics`) into the metrics JSON.

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    slice_axis: int | None = None
    """``None``: the preview shows three orthogonal mid-planes; an axis: the slices of a 2D stack along it."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "reconstruction",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        data_range: float | None = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
        staging_dir: str | os.PathLike | None = None,
        write_std: bool = False,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, staging_dir)
        self.write_std = bool(write_std)
        self.data_range = None if data_range is None else float(data_range)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.display_range = None if display_range is None else (float(display_range[0]), float(display_range[1]))

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """The scores of ``volume`` (or a baseline) against ``reference``: :func:`reconstruction_metrics`."""
        return reconstruction_metrics(volume, reference, self.metric_range(reference), self.clip)

    def paths(self, *args: Any) -> dict[str, Path | list[Path]]:
        """NIfTI, PNG and metrics JSON (:meth:`OutputWriter.paths`), and ``std`` with ``write_std``."""
        paths = super().paths(*args)
        return {**paths, "std": self.target("_std.nii.gz")} if self.write_std else paths

    def metric_range(self, reference: Any) -> float:
        """``data_range``, or the reference's ``max - min`` when it is ``None``."""
        if self.data_range is not None:
            return self.data_range
        ref = as_volume(reference, "reference")
        return float(ref.max() - ref.min())

    def __call__(
        self,
        volume: torch.Tensor,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
        input: Any | None = None,
        extra: Mapping[str, Any] | None = None,
        std: Any | None = None,
    ) -> dict[str, Any]:
        """Write ``volume`` (one volume, see :func:`reconstruction_metrics`; a MetaTensor's affine is used).

        Args:
            volume: the reconstruction.
            reference: the ground truth for metrics, or ``None``.
            baselines: named volumes (e.g. ``{"pseudo_inverse": ...}``; ``None`` entries are skipped) scored against
                ``reference`` too; the strongest is shown in the preview.
            affine: 4x4 affine to write instead of the MetaTensor's (identity for plain tensors).
            input: what the run was given, for the preview (any grid; complex: magnitudes), or ``None``.
            extra: more JSON-serialisable entries for the metrics file (computed during the run, e.g. from the data).
            std: the per-voxel posterior std (``volume`` is then the posterior mean); required with ``write_std``.

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: bad volumes (see :meth:`metrics`), or a result holding NaN/Inf (nothing written).
            OSError: the disk is full (nothing written).
        """
        data = as_volume(volume, "volume")
        if (std is not None) != self.write_std:
            raise ValueError(f"std must be given exactly when write_std=True (write_std={self.write_std}), got "
                             f"{'a std' if std is not None else 'None'}.")
        spread = None if std is None else as_volume(std, "std")
        uncertainty = None if spread is None or reference is None else uncertainty_metrics(data, spread, reference)
        affine = as_affine(affine, volume)
        baselines = {name: value for name, value in (baselines or {}).items() if value is not None}
        metrics = None if reference is None else self.metrics(data, reference)
        baseline_metrics = (
            {} if reference is None else {name: self.metrics(value, reference) for name, value in baselines.items()}
        )
        elapsed = self.seconds_since_check()
        paths = self.paths()
        array = data.float().numpy()
        columns = preview_columns(
            array, input=input, baselines={k: as_volume(v, k).numpy() for k, v in baselines.items()},
            reference=None if reference is None else as_volume(reference, "reference").numpy(), scores=metrics,
            baseline_scores=baseline_metrics, output_name=self.prefix, display_range=self.display_range,
        )
        with self.transaction():
            self.save_nifti(array, paths["nifti"], affine)
            if spread is not None:
                self.save_nifti(spread.float().numpy(), paths["std"], affine)
            self.save_preview(paths["png"], columns, self.slice_axis)
            content = {
                **self.info,
                **dict(extra or {}),
                "seconds": round(elapsed, 3),
                **self.describe(array, affine, nifti=paths["nifti"], png=paths["png"]),
                "statistics": volume_statistics(array),
                "data_range": None if reference is None else self.metric_range(reference),
                "metrics": metrics,
                "baselines": baseline_metrics,
                **({} if spread is None else {"std_nifti": paths["std"].name, "uncertainty": uncertainty}),
            }
            return self.write_summary(paths["metrics"], content)
