"""HFS-SDE's metrics of complex MR slices: magnitudes, no clipping, data ranges taken from the images, plus NMSE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medgen.engines.metrics.base import as_magnitude_slices, check_same_shape, check_ssim_window, ssim_2d

__all__ = ["hfs_metrics"]


def hfs_metrics(reconstruction: Any, reference: Any, win_size: int = 11) -> dict[str, Any]:
    """PSNR, SSIM and NMSE of magnitude images per slice, as HFS-SDE evaluates (``utils/calc.py``).

    HFS-SDE's definition differs on purpose from
    :func:`~medgen.engines.metrics.reconstruction.reconstruction_metrics` and
    :func:`~medgen.engines.metrics.slices.slice_metrics`: no clipping, and the data range of each slice is
    taken from the images (not fixed), so the scores do not depend on the intensity scale; PSNR is computed in
    Python floats from that range (torchmetrics' formula), only the SSIM goes through
    :func:`medgen.engines.metrics.ssim_2d`.

    For each slice, on magnitudes ``r = |reconstruction|``, ``l = |reference|`` (HFS-SDE's std-normalised units;
    all three are invariant to a common scaling of both images):

    - PSNR (torchmetrics ``PeakSignalNoiseRatio()``, data range from the reference):
      ``10 log10((max l - min l)^2 / mean((r - l)^2))``;
    - SSIM (torchmetrics ``StructuralSimilarityIndexMeasure()``: Gaussian window 11, sigma 1.5, ``k1 = 0.01``,
      ``k2 = 0.03``, data range ``max(max r - min r, max l - min l)``, mean over the valid window positions),
      computed with MONAI's :class:`~monai.metrics.SSIMMetric`;
    - NMSE: ``||r / max r - l / max l||^2 / ||l / max l||^2``.

    Args:
        reconstruction: ``(H, W)``, ``(S, H, W)`` or ``(S, 1, H, W)`` images, real or complex (magnitudes are used).
        reference: the same shape.
        win_size: SSIM window (HFS-SDE/torchmetrics: 11); ``H, W >= win_size``.

    Returns:
        ``{"psnr": mean, "ssim": mean, "nmse": mean, "per_slice": {"psnr": [...], "ssim": [...], "nmse": [...]}}``.

    Raises:
        TypeError, ValueError: inputs that are not images of one shape, or slices smaller than ``win_size``.
    """
    r, ref = as_magnitude_slices(reconstruction, "reconstruction"), as_magnitude_slices(reference, "reference")
    check_same_shape(r, ref, "reconstruction")
    check_ssim_window(r.shape[-2:], win_size, "images")
    psnr, ssim, nmse = [], [], []
    for x, y in zip(r, ref):
        reference_range = float(y.max() - y.min())
        mse = float(torch.mean((x - y) ** 2))
        psnr.append(float("inf") if mse == 0 else 10.0 * math.log10(reference_range**2 / mse))
        data_range = max(float(x.max() - x.min()), reference_range)
        ssim.append(float(ssim_2d(x[None], y[None], data_range, win_size).mean()))
        xn, yn = x / x.max(), y / y.max()
        nmse.append(float(torch.sum((xn - yn) ** 2) / torch.sum(yn**2)))
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "nmse": float(np.mean(nmse)),
        "per_slice": {"psnr": psnr, "ssim": ssim, "nmse": nmse},
    }

