"""Writing multi-coil k-space reconstructions: magnitude slices, a comparison PNG and HFS-SDE's metrics.

:class:`KspaceReconstructionWriter`: ``<prefix>.nii.gz`` (magnitude slices), ``<prefix>.png`` (reference,
zero-filled, reconstruction and error per slice) and ``<prefix>_metrics.json``
(:func:`~medgen.engines.metrics.kspace.hfs_metrics`), atomically and never over an existing file or an input.
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
from medgen.engines.writers.base import OutputWriter, as_affine, save_panel_grid_png, volume_statistics

__all__ = ["KspaceReconstructionWriter"]


class KspaceReconstructionWriter(OutputWriter):
    """Write a reconstruction of 2D slices into ``output_dir`` without overwriting anything.

    Files: ``<prefix>.nii.gz`` (the magnitudes ``(H, W, S)``: slices along the third axis, float32, ``affine``),
    ``<prefix>.png`` (one row per slice: reference, zero-filled, reconstruction and 5x the absolute error, on the
    reference's display range; without a reference only the reconstruction and the zero-filled image) and
    ``<prefix>_metrics.json`` (``info``, seconds since :meth:`check`, shape, affine, statistics and, with a
    reference, :func:`hfs_metrics` of the reconstruction and of every baseline).

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"hfssde_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace.

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
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs)

    def __call__(
        self,
        reconstruction: Any,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``reconstruction`` ``(S, 1, H, W)`` (or ``(S, H, W)``; complex or real, magnitudes are written).

        Args:
            reconstruction: the reconstructed slices.
            reference: the fully sampled images for metrics and the PNG, or ``None``.
            baselines: named images (e.g. ``{"zero_filled": ...}``), scored against ``reference`` too; the one named
                ``"zero_filled"`` is shown in the PNG.
            affine: 4x4 affine of the NIfTI (default identity, whatever ``reconstruction`` is).
            extra: more JSON-serialisable entries for the metrics file (computed during the run).

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: images of the wrong type or shape.
        """
        recon = as_magnitude_slices(reconstruction, "reconstruction")
        ref = None if reference is None else as_magnitude_slices(reference, "reference")
        named = {k: as_magnitude_slices(v, k) for k, v in (baselines or {}).items() if v is not None}
        for name, image in [("reference", ref), *named.items()]:
            if image is not None and image.shape != recon.shape:
                raise ValueError(f"{name} {tuple(image.shape)} must be shaped like the reconstruction "
                                 f"{tuple(recon.shape)}.")
        affine = as_affine(affine)
        metrics = None if ref is None else hfs_metrics(recon, ref)
        baseline_metrics = {k: hfs_metrics(v, ref) for k, v in named.items()} if ref is not None else {}
        elapsed = self.seconds_since_check()
        paths = self.paths()
        volume = recon[:, 0].permute(1, 2, 0).float().numpy()  # (H, W, S)
        self.save_nifti(volume, paths["nifti"], affine)
        self._save_png(paths["png"], recon, ref, named.get("zero_filled"), metrics, baseline_metrics)
        content = {
            **self.info,
            **dict(extra or {}),
            "seconds": round(elapsed, 3),
            **self.describe(volume, affine, nifti=paths["nifti"], png=paths["png"]),
            "statistics": volume_statistics(volume),
            "metrics": metrics,
            "baselines": baseline_metrics,
        }
        return self.write_summary(paths["metrics"], content)

    def _save_png(
        self,
        path: Path,
        recon: torch.Tensor,
        ref: torch.Tensor | None,
        zero_filled: torch.Tensor | None,
        metrics: Mapping[str, Any] | None,
        baseline_metrics: Mapping[str, Any],
    ) -> None:
        columns: list[tuple[str, torch.Tensor, Mapping[str, Any] | None]] = []
        if ref is not None:
            columns.append(("reference", ref, None))
        if zero_filled is not None:
            columns.append(("zero-filled", zero_filled, baseline_metrics.get("zero_filled")))
        columns.append(("reconstruction", recon, metrics))
        if ref is not None:
            columns.append(("|error| x 5", 5 * (recon - ref).abs(), None))
        display = ref if ref is not None else recon
        vmax = float(np.percentile(display.numpy(), 99.5)) or 1.0
        rows = []
        for row in range(recon.shape[0]):
            panels = []
            for title, images, scores in columns:
                if scores is not None:
                    psnr, ssim = scores["per_slice"]["psnr"][row], scores["per_slice"]["ssim"][row]
                    title = f"{title}\n{psnr:.2f} dB / {ssim:.3f}"
                panels.append((title, images[row, 0].numpy()))
            rows.append(panels)
        save_panel_grid_png(
            rows, path, title=self.prefix, overwrite=self.overwrite, inputs=self.inputs, vmin=0.0, vmax=vmax,
            panel_size=(2.4, 2.5), fontsize=8, title_fontsize=9,
        )
