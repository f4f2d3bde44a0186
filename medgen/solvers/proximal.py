"""Elementary proximal maps shared by the solvers: soft thresholding and box projection (complex-aware)."""

from __future__ import annotations

import torch

from medgen.checks import check_tensor
from medgen.solvers.linalg import per_item

__all__ = ["soft_threshold", "project_box"]


def soft_threshold(x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The proximal map of ``threshold * ||x||_1``: ``x * max(1 - threshold / |x|, 0)``.

    For real ``x`` this is ``sign(x) max(|x| - threshold, 0)``; for complex ``x`` it shrinks the modulus and keeps
    the phase (the prox of the sum of moduli). Zero stays zero.

    Args:
        x: tensor ``(B, ...)``, real or complex.
        threshold: ``>= 0``, a number, a ``(B,)`` tensor (one per item) or a tensor broadcastable to ``x``.

    Returns:
        tensor like ``x``.
    """
    check_tensor(x, "x", min_ndim=1)
    if isinstance(threshold, torch.Tensor) and threshold.ndim == 1 and x.ndim > 1:
        threshold = per_item(threshold, x)
    magnitude = x.abs()
    shrink = torch.clamp(1 - threshold / torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)), min=0)
    return x * torch.where(magnitude > 0, shrink, torch.zeros_like(shrink))


def project_box(x: torch.Tensor, box: tuple[float, float] | None) -> torch.Tensor:
    """Clamp ``x`` to ``box = (low, high)`` (``None``: unchanged).

    Raises:
        TypeError: a box on a complex tensor (bounds need an order).
    """
    if box is None:
        return x
    if x.is_complex():
        raise TypeError(f"box {box} needs real images, got dtype {x.dtype}.")
    return x.clamp(box[0], box[1])
