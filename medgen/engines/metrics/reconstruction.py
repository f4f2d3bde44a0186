"""TPDM's volume metrics: PSNR over all voxels and SSIM in each of the three planes (MONAI's PSNR/SSIM).

:func:`reconstruction_metrics` scores a volume against a reference as TPDM evaluates (PSNR over all voxels jointly,
SSIM as the mean 2D SSIM over the slices of each of the three planes, both on ``[0, 1]``-clipped volumes with data
range 1), with the pieces of :mod:`medgen.engines.metrics.base` (which says how the other methods' metrics differ).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medgen.engines.metrics.base import (
    as_volume,
    check_same_shape,
    check_ssim_window,
    clip_pair,
    error_statistics,
    psnr,
    slices_along,
    ssim_2d,
)

__all__ = ["PLANE_NAMES", "reconstruction_metrics"]


PLANE_NAMES: tuple[str, str, str] = ("sagittal", "coronal", "axial")
"""Names of the slices across spatial axes 0, 1, 2 of an RAS-oriented volume (x left-right, y posterior-anterior,
z inferior-superior), as :func:`medgen.data.save_orthogonal_slices_png` labels them."""


def reconstruction_metrics(
    volume: Any,
    reference: Any,
    data_range: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    win_size: int = 11,
) -> dict[str, Any]:
    """PSNR and per-plane SSIM of one volume against a reference (TPDM's MRI evaluation, with MONAI's metrics).

    TPDM's definition: a fixed ``data_range`` (not the images' range, unlike
    :func:`~medgen.engines.metrics.kspace.hfs_metrics`), one PSNR over all voxels, and SSIM in all three planes
    (unlike the single plane of :func:`~medgen.engines.metrics.slices.slice_metrics`).

    Args:
        volume: the reconstruction ``(D, H, W)`` (or with leading singleton batch/channel axes).
        reference: the ground truth, same shape.
        data_range: the intensity range of the metrics (TPDM MRI: 1).
        clip: clip both volumes to this range first (TPDM MRI: ``(0, 1)``; ``None``: no clipping).
        win_size: SSIM Gaussian window (11, sigma 1.5); every in-plane size must be at least this.

    Returns:
        ``{"psnr": dB over all voxels, "ssim": {"sagittal", "coronal", "axial", "mean"}, "mse", "mae"}``; SSIM of a
        plane is the mean 2D SSIM over the volume's slices across that axis (:data:`PLANE_NAMES`).

    Raises:
        TypeError, ValueError: non-real inputs, different shapes, or slices smaller than ``win_size``.
    """
    x, ref = as_volume(volume, "volume"), as_volume(reference, "reference")
    check_same_shape(x, ref)
    check_ssim_window(x.shape, win_size, "every size of the volume")
    x, ref = clip_pair(x, ref, clip)
    ssim = {
        plane: float(ssim_2d(slices_along(x, axis), slices_along(ref, axis), data_range, win_size).mean())
        for axis, plane in enumerate(PLANE_NAMES)
    }
    ssim["mean"] = float(np.mean([ssim[p] for p in PLANE_NAMES]))
    return {"psnr": float(psnr(x[None, None], ref[None, None], data_range).mean()), "ssim": ssim,
            **error_statistics(x, ref)}

