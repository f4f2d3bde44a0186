"""Inpainting: the measurement keeps the voxels a mask marks as known."""

from __future__ import annotations

import torch

from medgen.checks import check_tensor
from medgen.physics.base import LinearOperator

__all__ = ["Inpainting"]


class Inpainting(LinearOperator):
    """``A x = m * x`` for a mask ``m`` of weights in ``[0, 1]`` (1 = known voxel), ``A^H = A``.

    The pseudo-inverse divides by ``m`` where it is positive (``m * y`` for a binary mask), so ``A A^+ y = y`` on the
    known voxels and the projection ``x + A^+ (y - A x)`` pastes the known values (hard inpainting consistency).

    Args:
        mask: weights broadcastable to the image (e.g. ``(B or 1, 1, *spatial)``), real or bool.

    Raises:
        TypeError: ``mask`` is not a real tensor.
        ValueError: a weight lies outside ``[0, 1]``.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        check_tensor(mask, "mask", min_ndim=1)
        if mask.is_complex():
            raise TypeError(f"mask must be real or bool, got {mask.dtype}.")
        mask = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
        if bool((mask < 0).any()) or bool((mask > 1).any()):
            raise ValueError("mask must hold weights in [0, 1] (1 = known voxel).")
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask.to(x.real.dtype) * x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.mask.to(y.real.dtype) * y

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        mask = self.mask.to(y.real.dtype)
        return torch.where(mask > 0, y / mask.clamp(min=torch.finfo(mask.dtype).tiny), torch.zeros_like(y))

    def batch_slice(self, index: slice) -> Inpainting:
        return Inpainting(self.mask[index]) if self.mask.ndim > 1 and self.mask.shape[0] > 1 else self

    def extra_repr(self) -> str:
        return f"mask_shape={tuple(self.mask.shape)}, known_fraction={float(self.mask.mean()):.3f}"
