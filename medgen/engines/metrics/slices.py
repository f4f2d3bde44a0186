"""PaDIS' slice-stack metrics: PSNR over all voxels and per slice, 2D SSIM per slice in the slices' own plane.

2D methods (PaDIS) reconstruct a stack of slices, often a single one, for which the volume metrics of
:func:`medgen.engines.metrics.reconstruction.reconstruction_metrics` (SSIM in all three planes) are undefined.
"""

from __future__ import annotations

from typing import Any

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

__all__ = ["check_slice_axis", "slice_metrics"]


def check_slice_axis(slice_axis: int) -> int:
    """``slice_axis`` as an axis ``0, 1, 2`` of a ``(D, H, W)`` volume (negative axes allowed); ``ValueError`` else."""
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

    PaDIS' definition: a fixed ``data_range`` on clipped images (as
    :func:`~medgen.engines.metrics.reconstruction.reconstruction_metrics`, unlike
    :func:`~medgen.engines.metrics.kspace.hfs_metrics`), but SSIM only in the plane of the slices (TPDM scores all three
    planes) and PSNR also per slice.

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
    axis = check_slice_axis(slice_axis)
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

