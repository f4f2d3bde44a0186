"""Writing multi-coil k-space reconstructions: magnitude slices, a preview PNG and HFS-SDE's metrics.

:class:`KspaceReconstructionWriter`: ``<prefix>.nii.gz`` (magnitude slices), ``<prefix>.png`` (the preview of
:mod:`~medgen.engines.writers.preview`: measured k-space | zero-filled | reconstruction | reference | |error| per
slice) and ``<prefix>_metrics.json`` (:func:`~medgen.engines.metrics.kspace.hfs_metrics`), committed together and
never over an existing file or an input.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.engines.metrics.base import as_magnitude_slices
from medgen.engines.metrics.kspace import hfs_metrics
from medgen.engines.metrics.uncertainty import uncertainty_metrics
from medgen.engines.writers.base import OutputWriter, as_affine, volume_statistics
from medgen.engines.writers.preview import preview_columns

__all__ = ["KspaceReconstructionWriter"]


class KspaceReconstructionWriter(OutputWriter):
    """Write a reconstruction of 2D slices into ``output_dir``: all three files or none, never over a file.

    Files: ``<prefix>.nii.gz`` (the magnitudes ``(H, W, S)``: slices along the third axis, float32, ``affine``),
    ``<prefix>.png`` (the preview: the measured k-space as log-magnitudes, the zero-filled baseline, the
    reconstruction, the reference and the absolute error, one row per slice, the scores (means over the slices) in
    the titles; without a reference only the first three) and ``<prefix>_metrics.json`` (``info``, seconds since
    :meth:`check`, shape, affine, statistics and, with a reference, :func:`hfs_metrics` of the reconstruction and of
    every baseline).

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"hfssde_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace.
        staging_dir: where the files are staged before they are committed together (see
            :class:`~medgen.engines.writers.base.OutputWriter`).
        write_std: the run draws several posterior samples: the reconstruction is their mean and a call also writes
            ``<prefix>_std.nii.gz`` (their per-voxel std, ``(H, W, S)``) and, with a reference, ``uncertainty``
            (:func:`~medgen.engines.metrics.uncertainty.uncertainty_metrics` of the magnitudes) into the JSON.

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
        staging_dir: str | os.PathLike | None = None,
        write_std: bool = False,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, staging_dir)
        self.write_std = bool(write_std)

    def paths(self, *args: Any) -> dict[str, Path | list[Path]]:
        """NIfTI, PNG and metrics JSON, and ``std`` with ``write_std``."""
        paths = super().paths(*args)
        return {**paths, "std": self.target("_std.nii.gz")} if self.write_std else paths

    @staticmethod
    def kspace_display(kspace: Any) -> np.ndarray:
        """``log(1 + |k|)`` of multi-coil k-space ``(S, Nc, H, W)`` combined over coils (root sum of squares),
        as ``(H, W, S)`` for the preview."""
        k = torch.as_tensor(kspace).detach().cpu()
        k = k.reshape(-1, *k.shape[-3:]) if k.ndim > 3 else k[None]
        magnitude = torch.sqrt((k.abs().to(torch.float64) ** 2).sum(dim=1))
        return torch.log1p(magnitude / magnitude.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30) * 1e3) \
            .permute(1, 2, 0).numpy()

    def __call__(
        self,
        reconstruction: Any,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
        extra: Mapping[str, Any] | None = None,
        kspace: Any | None = None,
        std: Any | None = None,
    ) -> dict[str, Any]:
        """Write ``reconstruction`` ``(S, 1, H, W)`` (or ``(S, H, W)``; complex or real, magnitudes are written).

        Args:
            reconstruction: the reconstructed slices.
            reference: the fully sampled images for metrics and the preview, or ``None``.
            baselines: named images (e.g. ``{"zero_filled": ...}``), scored against ``reference`` too; the strongest is
                shown in the preview.
            affine: 4x4 affine of the NIfTI (default identity, whatever ``reconstruction`` is).
            extra: more JSON-serialisable entries for the metrics file (computed during the run).
            kspace: the measured (undersampled) k-space ``(S, Nc, H, W)``, shown in the preview, or ``None``.
            std: the per-pixel posterior std ``(S, 1, H, W)`` (the reconstruction is then the posterior mean); required
                with ``write_std``.

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: images of the wrong type or shape, or a result holding NaN/Inf (nothing written).
            OSError: the disk is full (nothing written).
        """
        if (std is not None) != self.write_std:
            raise ValueError(f"std must be given exactly when write_std=True (write_std={self.write_std}), got "
                             f"{'a std' if std is not None else 'None'}.")
        recon = as_magnitude_slices(reconstruction, "reconstruction")
        spread = None if std is None else as_magnitude_slices(std, "std")
        ref = None if reference is None else as_magnitude_slices(reference, "reference")
        named = {k: as_magnitude_slices(v, k) for k, v in (baselines or {}).items() if v is not None}
        for name, image in [("reference", ref), *named.items()]:
            if image is not None and image.shape != recon.shape:
                raise ValueError(f"{name} {tuple(image.shape)} must be shaped like the reconstruction "
                                 f"{tuple(recon.shape)}.")
        affine = as_affine(affine)
        metrics = None if ref is None else hfs_metrics(recon, ref)
        uncertainty = None if spread is None or ref is None else uncertainty_metrics(recon, spread, ref)
        baseline_metrics = {k: hfs_metrics(v, ref) for k, v in named.items()} if ref is not None else {}
        elapsed = self.seconds_since_check()
        paths = self.paths()

        def stack(images: torch.Tensor) -> np.ndarray:  # (S, 1, H, W) -> (H, W, S)
            return images[:, 0].permute(1, 2, 0).float().numpy()

        volume = stack(recon)
        display = stack(ref) if ref is not None else volume
        columns = preview_columns(
            volume, input=None if kspace is None else self.kspace_display(kspace), input_name="measured k-space",
            baselines={k: stack(v) for k, v in named.items()}, reference=None if ref is None else stack(ref),
            scores=metrics, baseline_scores=baseline_metrics, output_name=self.prefix,
            display_range=(0.0, float(np.percentile(display, 99.5)) or 1.0),
        )
        with self.transaction():
            self.save_nifti(volume, paths["nifti"], affine)
            if spread is not None:
                self.save_nifti(stack(spread), paths["std"], affine)
            self.save_preview(paths["png"], columns, slice_axis=2)
            content = {
                **self.info,
                **dict(extra or {}),
                "seconds": round(elapsed, 3),
                **self.describe(volume, affine, nifti=paths["nifti"], png=paths["png"]),
                "statistics": volume_statistics(volume),
                "metrics": metrics,
                "baselines": baseline_metrics,
                **({} if spread is None else {"std_nifti": paths["std"].name, "uncertainty": uncertainty}),
            }
            return self.write_summary(paths["metrics"], content)
