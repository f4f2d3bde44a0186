"""How well a per-voxel posterior standard deviation covers the actual error of the posterior mean.

:func:`uncertainty_metrics` compares ``|mean - reference|`` with ``std`` voxel by voxel: the fraction of voxels whose
error is at most ``k`` std (``k = 2``: 95 % for a calibrated Gaussian posterior), the Pearson correlation of std and
error over the voxels (does the std point at where the errors are?), and their means.
"""

from __future__ import annotations

from typing import Any

import torch

from medgen.engines.metrics.base import check_same_shape

__all__ = ["uncertainty_metrics"]


def _as_float64(x: Any, name: str) -> torch.Tensor:
    t = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
        raise TypeError(f"{name} must be a real or complex array, got {getattr(t, 'dtype', type(x).__name__)}.")
    t = t.detach().cpu()
    return (t.to(torch.complex128) if t.is_complex() else t.to(torch.float64)).squeeze()


def uncertainty_metrics(mean: Any, std: Any, reference: Any, k: float = 2.0) -> dict[str, float]:
    """Coverage and correlation of a per-voxel std with the error of the posterior mean.

    Args:
        mean: the posterior mean (real, or complex: the error is the modulus of the complex difference).
        std: the per-voxel standard deviation, the shape of ``mean`` (leading singleton axes are ignored).
        reference: the ground truth, the shape of ``mean``; a real reference with a complex mean is compared with
            the mean's magnitude.
        k: the coverage multiple.

    Returns:
        ``{"coverage": fraction of voxels with |error| <= k std, "k": k, "std_error_correlation": Pearson r of std and
        |error| (0 when either is constant), "mean_std", "mean_abs_error"}``.

    Raises:
        TypeError: non-numeric inputs, or a complex std.
        ValueError: different shapes, a negative std or ``k <= 0``.
    """
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k!r}.")
    m, s, ref = _as_float64(mean, "mean"), _as_float64(std, "std"), _as_float64(reference, "reference")
    if s.is_complex():
        raise TypeError("std must be real.")
    if m.is_complex() and not ref.is_complex():
        m = m.abs()
    check_same_shape(s, m, "std")
    check_same_shape(m, ref, "mean")
    if bool((s < 0).any()):
        raise ValueError("std must be >= 0 everywhere.")
    error = (m - ref).abs().flatten()
    s = s.flatten()
    centred_error, centred_std = error - error.mean(), s - s.mean()
    denominator = torch.linalg.vector_norm(centred_error) * torch.linalg.vector_norm(centred_std)
    correlation = float((centred_error @ centred_std) / denominator) if float(denominator) > 0 else 0.0
    return {
        "coverage": float((error <= k * s).double().mean()),
        "k": float(k),
        "std_error_correlation": correlation,
        "mean_std": float(s.mean()),
        "mean_abs_error": float(error.mean()),
    }
