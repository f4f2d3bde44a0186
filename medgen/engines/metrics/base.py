"""What the bundles' image-quality metrics share: input conversion, argument checks, clipping and MONAI's PSNR/SSIM.

Each method scores its results as its official evaluation does, and the definitions differ on purpose:

- :func:`medgen.engines.metrics.reconstruction.reconstruction_metrics` (TPDM, 3D volumes): both volumes clipped to
  ``[0, 1]``, a FIXED data range 1, PSNR over all voxels jointly, SSIM as the mean 2D SSIM over the slices of each
  of the three planes (and the mean of the planes).
- :func:`medgen.engines.metrics.slices.slice_metrics` (PaDIS, 2D slice stacks): clipping and fixed data range
  as above, PSNR over all voxels jointly and per slice, SSIM per slice in ONE plane (the slices' own).
- :func:`medgen.engines.metrics.kspace.hfs_metrics` (HFS-SDE, complex MR slices): magnitudes, NO clipping, the data
  range taken FROM THE IMAGES per slice (PSNR: the reference's range; SSIM: the larger of both ranges), plus NMSE.

This module holds the pieces they have in common: :func:`as_volume` / :func:`as_magnitude_slices` (tensor, array or
MetaTensor in, float64 CPU tensor out), :func:`check_same_shape` / :func:`check_ssim_window` (errors naming the
argument), :func:`clip_pair`, :func:`slices_along`, :func:`error_statistics` (MSE, MAE) and :func:`psnr` /
:func:`ssim_2d` (MONAI's :class:`~monai.metrics.PSNRMetric` and :class:`~monai.metrics.SSIMMetric`: Gaussian window,
sigma 1.5, ``k1 = 0.01``, ``k2 = 0.03``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric

__all__ = [
    "as_volume",
    "as_magnitude_slices",
    "check_same_shape",
    "check_ssim_window",
    "clip_pair",
    "error_statistics",
    "psnr",
    "slices_along",
    "ssim_2d",
]


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """A plain detached CPU tensor from a tensor, MetaTensor or numpy array."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or numpy array, got {type(x).__name__}.")
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    return x.detach().cpu()


def as_volume(x: Any, name: str) -> torch.Tensor:
    """One real volume as a float64 CPU tensor ``(D, H, W)``.

    Args:
        x: ``(D, H, W)``, or with leading singleton batch/channel axes (``(1, D, H, W)``, ``(1, 1, D, H, W)``); a
            tensor, MetaTensor (the affine is dropped) or numpy array of a real dtype (floating point, integer, bool).
        name: the argument's name for error messages.

    Returns:
        the ``(D, H, W)`` float64 CPU tensor.

    Raises:
        TypeError: ``x`` is not a tensor/array or is complex.
        ValueError: ``x`` is not one 3D volume.
    """
    x = _as_tensor(x, name)
    if x.is_complex():
        raise TypeError(f"{name} must be real, got {x.dtype}.")
    while x.ndim > 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"{name} must be one volume (D, H, W), (1, D, H, W) or (1, 1, D, H, W), got {tuple(x.shape)}.")
    return x.to(torch.float64)


def as_magnitude_slices(x: Any, name: str) -> torch.Tensor:
    """The magnitudes of a stack of 2D images as a float64 CPU tensor ``(S, 1, H, W)``.

    Args:
        x: ``(H, W)``, ``(S, H, W)`` or ``(S, 1, H, W)`` real or complex images (tensor, MetaTensor or numpy array).
        name: the argument's name for error messages.

    Returns:
        ``|x|`` shaped ``(S, 1, H, W)``, float64.

    Raises:
        TypeError: ``x`` is not a tensor/array.
        ValueError: ``x`` has another shape.
    """
    x = _as_tensor(x, name).abs()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be shaped (H, W), (S, H, W) or (S, 1, H, W), got {tuple(x.shape)}.")
    return x.to(torch.float64)


def check_same_shape(x: torch.Tensor, reference: torch.Tensor, name: str = "volume") -> None:
    """Raise ``ValueError`` naming ``name`` and ``reference`` when their shapes differ."""
    if x.shape != reference.shape:
        raise ValueError(f"{name} {tuple(x.shape)} and reference {tuple(reference.shape)} must have the same shape.")


def check_ssim_window(plane: Sequence[int], win_size: int, what: str = "the slices") -> None:
    """Raise ``ValueError`` when a 2D SSIM window of ``win_size`` pixels does not fit in images of size ``plane``."""
    if min(plane) < win_size:
        raise ValueError(
            f"{what} must be at least win_size={win_size} pixels on each side for SSIM, got {tuple(plane)}."
        )


def clip_pair(
    x: torch.Tensor, reference: torch.Tensor, clip: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images clamped to ``clip = (low, high)`` (unchanged for ``None``), as the evaluations clip results."""
    if clip is None:
        return x, reference
    return x.clamp(*clip), reference.clamp(*clip)


def slices_along(x: torch.Tensor, axis: int) -> torch.Tensor:
    """The 2D slices of a ``(D, H, W)`` volume across ``axis`` as a batch of images ``(S, 1, h, w)``."""
    return x.movedim(axis, 0).unsqueeze(1)


def error_statistics(x: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """``{"mse": mean((x - reference)^2), "mae": mean(|x - reference|)}`` over all voxels (intensity units)."""
    return {"mse": float(torch.mean((x - reference) ** 2)), "mae": float(torch.mean((x - reference).abs()))}


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float) -> torch.Tensor:
    """PSNR in dB of each item, ``20 log10(data_range) - 10 log10(MSE)`` (MONAI's :class:`~monai.metrics.PSNRMetric`).

    Args:
        x: ``(B, C, *spatial)`` images; the MSE of each item is over all its channels and voxels.
        reference: the same shape.
        data_range: the peak value ``max_val`` (intensity units of the images).

    Returns:
        ``(B, 1)``: one PSNR per item (a MONAI metric's call does not reduce; its ``reduction`` only acts in
        ``aggregate``).
    """
    return PSNRMetric(max_val=data_range)(x, reference)


def ssim_2d(x: torch.Tensor, reference: torch.Tensor, data_range: float, win_size: int = 11) -> torch.Tensor:
    """2D SSIM of each image pair (MONAI's :class:`~monai.metrics.SSIMMetric`: Gaussian window of ``win_size`` pixels,
    sigma 1.5, ``k1 = 0.01``, ``k2 = 0.03``, mean over the valid window positions).

    Args:
        x: ``(S, 1, H, W)`` images.
        reference: the same shape.
        data_range: the intensity range ``L`` of the SSIM constants ``(k1 L)^2``, ``(k2 L)^2``.
        win_size: the window size; ``H, W >= win_size``.

    Returns:
        ``(S, 1)``: one SSIM per image.
    """
    return SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size, kernel_sigma=1.5)(x, reference)
