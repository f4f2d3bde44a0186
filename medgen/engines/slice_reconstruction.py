"""Writing slice-wise (2D) reconstructions from a bundle run: NIfTI + comparison PNG + a JSON of per-slice metrics.

2D methods (PaDIS) reconstruct a stack of slices, often a single one, for which the volume metrics of
:func:`medgen.engines.reconstruction.reconstruction_metrics` (SSIM in all three planes) are undefined.
:func:`slice_metrics` scores a slice stack the 2D way, with MONAI's :class:`~monai.metrics.PSNRMetric` and
:class:`~monai.metrics.SSIMMetric` through :mod:`medgen.engines.metrics`: PSNR over all voxels jointly and per slice,
SSIM as the 2D SSIM of every slice (and their mean). :class:`SliceReconstructionWriter` is
:class:`~medgen.engines.reconstruction.ReconstructionWriter` (same files, same no-overwrite and atomic-write rules)
with these metrics and a PNG that puts the middle slice of the reconstruction next to the baselines and the reference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.engines.metrics import (
    as_volume,
    check_same_shape,
    check_ssim_window,
    clip_pair,
    error_statistics,
    psnr,
    slices_along,
    ssim_2d,
)
from medgen.engines.reconstruction import ReconstructionWriter
from medgen.engines.writers import save_panel_grid_png

__all__ = ["SliceReconstructionWriter", "save_slice_comparison_png", "slice_metrics"]


def _check_slice_axis(slice_axis: int) -> int:
    if isinstance(slice_axis, bool) or slice_axis not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"slice_axis must be one of 0, 1, 2, -3, -2, -1 (an axis of a (D, H, W) volume), got "
                         f"{slice_axis!r}.")
    return slice_axis % 3


def slice_metrics(
    volume: Any,
    reference: Any,
    slice_axis: int = -1,
    data_range: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    win_size: int = 11,
) -> dict[str, Any]:
    """PSNR and 2D SSIM of a stack of slices against a reference (PaDIS' evaluation, with MONAI's metrics).

    PaDIS' definition: a fixed ``data_range`` on clipped images (as :func:`~medgen.engines.reconstruction.
    reconstruction_metrics`, unlike :func:`~medgen.engines.kspace.hfs_metrics`), but SSIM only in the plane of the
    slices (TPDM scores all three planes) and PSNR also per slice.

    Args:
        volume: the reconstruction ``(D, H, W)`` (or with leading singleton batch/channel axes), the slices stacked
            along ``slice_axis`` (e.g. ``(X, Y, 1)`` for one axial slice).
        reference: the ground truth, same shape.
        slice_axis: the axis holding the slices.
        data_range: the intensity range of the metrics (PaDIS: 1, images in ``[0, 1]``).
        clip: clip both volumes to this range first (PaDIS clamps to ``[0, 1]``; ``None``: no clipping).
        win_size: SSIM Gaussian window (11, sigma 1.5); both in-plane sizes must be at least this.

    Returns:
        ``{"psnr": dB over all voxels, "ssim": mean 2D SSIM over the slices, "mse", "mae",
        "per_slice": {"psnr": [...], "ssim": [...]}}``.

    Raises:
        TypeError, ValueError: non-real inputs, different shapes, a bad ``slice_axis`` or slices smaller than
            ``win_size``.
    """
    axis = _check_slice_axis(slice_axis)
    x, ref = as_volume(volume, "volume"), as_volume(reference, "reference")
    check_same_shape(x, ref)
    check_ssim_window([s for d, s in enumerate(x.shape) if d != axis], win_size)
    x, ref = clip_pair(x, ref, clip)
    slices, ref_slices = slices_along(x, axis), slices_along(ref, axis)
    per_slice_psnr = psnr(slices, ref_slices, data_range).flatten()
    per_slice_ssim = ssim_2d(slices, ref_slices, data_range, win_size).flatten()
    return {
        "psnr": float(psnr(x[None, None], ref[None, None], data_range).mean()),
        "ssim": float(per_slice_ssim.mean()),
        **error_statistics(x, ref),
        "per_slice": {"psnr": per_slice_psnr.tolist(), "ssim": per_slice_ssim.tolist()},
    }


def save_slice_comparison_png(
    panels: Mapping[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] | list[str | os.PathLike] = (),
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "gray",
) -> Path:
    """Write a PNG with named 2D images side by side (matplotlib, Agg backend), atomically.

    Args:
        panels: ``{name: image (H, W)}`` shown left to right, each with axis 0 horizontal and axis 1 vertical (origin
            lower left, as :func:`medgen.data.save_orthogonal_slices_png` shows an axial slice).
        path: output file ending in ``.png``.
        title: figure title.
        overwrite: replace an existing ``path`` (never one listed in ``inputs``).
        inputs: paths that must not be overwritten.
        vmin, vmax: display range (``None``: the 0.5 / 99.5 percentiles of all panels).
        cmap: matplotlib colormap name.

    Returns:
        the written path.

    Raises:
        ValueError: no panels or a panel that is not 2D; FileExistsError as :func:`medgen.data.save_nifti`.
    """
    if not panels:
        raise ValueError("panels must hold at least one named image.")
    images = {}
    for name, image in panels.items():
        array = as_volume(image[..., None] if getattr(image, "ndim", 0) == 2 else image, str(name)).numpy()
        if array.ndim != 3 or array.shape[-1] != 1:
            raise ValueError(f"panel {name!r} must be a 2D image (H, W), got shape {tuple(array.shape)}.")
        images[str(name)] = array[..., 0].astype(np.float32)
    everything = np.concatenate([a.ravel() for a in images.values()])
    lo = float(np.percentile(everything, 0.5)) if vmin is None else vmin
    hi = float(np.percentile(everything, 99.5)) if vmax is None else vmax
    return save_panel_grid_png(
        [list(images.items())], path, title=title, overwrite=overwrite, inputs=inputs, vmin=lo, vmax=hi, cmap=cmap
    )


class SliceReconstructionWriter(ReconstructionWriter):
    """Write one slice-wise reconstruction into ``output_dir`` without overwriting anything.

    Files (as :class:`~medgen.engines.reconstruction.ReconstructionWriter`): ``<prefix>.nii.gz`` (float32, the
    MetaTensor's affine or ``affine``), ``<prefix>.png`` and ``<prefix>_metrics.json`` holding ``info``, the seconds
    since :meth:`check`, the volume's shape, affine and statistics, and, with a reference, :func:`slice_metrics` of the
    reconstruction and of each baseline. The PNG shows the middle slice (along ``slice_axis``) of every baseline, of
    the reconstruction and of the reference, side by side, on ``display_range``.

    Args:
        output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range: as
            :class:`~medgen.engines.reconstruction.ReconstructionWriter`.
        slice_axis: the axis of the ``(D, H, W)`` volume holding the slices (``-1``: the last, e.g. axial slices of an
            RAS volume).
        win_size: SSIM window of :func:`slice_metrics`.

    Raises:
        ValueError: an empty prefix, one holding a path separator, or a bad ``slice_axis``.
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
        slice_axis: int = -1,
        win_size: int = 11,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range)
        self.slice_axis = _check_slice_axis(slice_axis)
        self.win_size = int(win_size)

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """:func:`slice_metrics` with this writer's settings."""
        return slice_metrics(volume, reference, self.slice_axis, self.data_range, self.clip, self.win_size)

    def save_png(
        self, path: Path, volume: torch.Tensor, reference: Any | None, baselines: Mapping[str, Any]
    ) -> None:
        """Write the middle slice (along ``slice_axis``) of every baseline, of ``volume`` and of ``reference`` side by
        side on ``display_range`` (:func:`save_slice_comparison_png`)."""
        middle = volume.shape[self.slice_axis] // 2

        def middle_slice(v: Any) -> torch.Tensor:
            return as_volume(v, "panel").select(self.slice_axis, middle)

        panels = {name: middle_slice(value) for name, value in baselines.items()}
        panels[self.prefix] = middle_slice(volume)
        if reference is not None:
            panels["reference"] = middle_slice(reference)
        save_slice_comparison_png(
            panels, path, title=None, overwrite=self.overwrite, inputs=self.inputs,
            vmin=self.display_range[0], vmax=self.display_range[1],
        )
