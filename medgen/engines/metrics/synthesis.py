"""Scoring a synthesised contrast (cWDM modality translation) inside a brain mask, and its classical baseline.

cWDM is scored on the brain: the synthesis zeroes everything outside the mask (the first condition's non-zero
voxels), so metrics over the whole box would mostly count background. :func:`masked_synthesis_metrics` gives PSNR,
MSE and MAE over the mask's voxels and the mean of the 3D SSIM map (MONAI's Gaussian-window SSIM) over the mask.
:class:`LinearSynthesisBaseline` is the voxel-wise linear regression of the target on the conditions that a learnt
synthesis must beat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics.regression import compute_ssim_and_cs

from medgen.engines.metrics.base import as_volume, check_same_shape, clip_pair

__all__ = ["LinearSynthesisBaseline", "masked_synthesis_metrics"]


def masked_synthesis_metrics(
    volume: Any,
    reference: Any,
    mask: Any,
    data_range: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    win_size: int = 7,
    sigma: float = 1.5,
) -> dict[str, Any]:
    """PSNR, SSIM, MSE and MAE of a synthesised volume against the true contrast, inside ``mask``.

    Args:
        volume: the synthesis ``(D, H, W)`` (or with leading singleton axes).
        reference: the true contrast, same shape and intensity scale (cWDM: both in ``[0, 1]``).
        mask: the brain mask, same shape (non-zero = inside).
        data_range: the intensity range ``L`` of PSNR and of the SSIM constants.
        clip: clip both volumes to this range first (``None``: no clipping).
        win_size: side of the Gaussian SSIM window (odd; every size of the volume must be at least this).
        sigma: standard deviation of the SSIM window, voxels.

    Returns:
        ``{"psnr": dB, "ssim": mean SSIM over the masked voxels the window fits around, "mse", "mae",
        "voxels": mask size}``.

    Raises:
        TypeError, ValueError: non-real inputs, different shapes, an empty mask or a window larger than the volume.
    """
    x, ref = as_volume(volume, "volume"), as_volume(reference, "reference")
    inside = as_volume(mask, "mask") != 0
    check_same_shape(x, ref)
    check_same_shape(inside, ref, "mask")
    if not bool(inside.any()):
        raise ValueError("mask is empty: no voxel to score.")
    if win_size % 2 != 1 or min(x.shape) < win_size:
        raise ValueError(f"win_size must be odd and at most every size of the volume {tuple(x.shape)}, got {win_size}.")
    x, ref = clip_pair(x, ref, clip)
    error = (x - ref)[inside]
    mse = float(torch.mean(error**2))
    ssim_map, _ = compute_ssim_and_cs(
        x[None, None], ref[None, None], 3, [win_size] * 3, [sigma] * 3, data_range=data_range
    )
    border = win_size // 2  # the map covers the positions where the whole window fits
    core = inside[border:-border, border:-border, border:-border] if border else inside
    return {
        "psnr": 20 * math.log10(data_range) - 10 * math.log10(mse) if mse > 0 else math.inf,
        "ssim": float(ssim_map[0, 0][core].mean()) if bool(core.any()) else math.nan,
        "mse": mse,
        "mae": float(error.abs().mean()),
        "voxels": int(inside.sum()),
    }


class LinearSynthesisBaseline:
    """The classical baseline of contrast synthesis: the target as a voxel-wise affine combination of the conditions.

    ``target ~ sum_k w_k condition_k + b``, fitted by least squares over the brain voxels of training cases
    (conditions and targets normalised as the network's data). A method that does not beat it has learnt nothing
    beyond a global intensity mapping.

    Args:
        conditions: training conditions, one ``(K, D, H, W)`` array/tensor per case.
        targets: the training targets, one ``(D, H, W)`` (or ``(1, D, H, W)``) per case.
        masks: brain masks per case (``None``: the voxels where the first condition is non-zero).

    Raises:
        ValueError: no case, mismatched counts or shapes, or no masked voxel.
    """

    def __init__(self, conditions: Sequence[Any], targets: Sequence[Any], masks: Sequence[Any] | None = None) -> None:
        if not conditions or len(conditions) != len(targets) or (masks is not None and len(masks) != len(targets)):
            raise ValueError(
                f"conditions, targets (and masks) must be non-empty lists of one length, got {len(conditions)} and "
                f"{len(targets)}{'' if masks is None else f' and {len(masks)}'}."
            )
        rows, values = [], []
        for i, (condition, target) in enumerate(zip(conditions, targets)):
            c = torch.as_tensor(condition, dtype=torch.float64).reshape(-1, *torch.as_tensor(target).shape[-3:])
            t = torch.as_tensor(target, dtype=torch.float64).reshape(c.shape[1:])
            inside = (c[0] != 0) if masks is None else torch.as_tensor(masks[i]).reshape(t.shape) != 0
            rows.append(torch.cat([c[:, inside].T, torch.ones(int(inside.sum()), 1, dtype=torch.float64)], dim=1))
            values.append(t[inside])
        design = torch.cat(rows)
        if design.shape[0] <= design.shape[1]:
            raise ValueError(f"too few masked voxels ({design.shape[0]}) to fit {design.shape[1]} coefficients.")
        self.coefficients = torch.linalg.lstsq(design, torch.cat(values)[:, None]).solution[:, 0]

    def __call__(self, conditions: Any, mask: Any | None = None) -> torch.Tensor:
        """The baseline synthesis ``(D, H, W)`` of ``(K, D, H, W)`` (or ``(1, K, D, H, W)``) conditions, 0 outside
        ``mask`` (default: where the first condition is non-zero)."""
        c = torch.as_tensor(conditions, dtype=torch.float64)
        c = c.reshape(-1, *c.shape[-3:]).cpu()
        if c.shape[0] != self.coefficients.numel() - 1:
            raise ValueError(f"expected {self.coefficients.numel() - 1} conditions, got {c.shape[0]}.")
        out = torch.einsum("k...,k->...", c, self.coefficients[:-1]) + self.coefficients[-1]
        inside = (c[0] != 0) if mask is None else torch.as_tensor(mask).reshape(out.shape).cpu() != 0
        return torch.where(inside, out, torch.zeros_like(out))
