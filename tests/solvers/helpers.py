"""Small explicit operators and problems shared by the solver tests."""

from __future__ import annotations

import torch

from medgen.physics.base import LinearOperator


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class MatrixOperator(LinearOperator):
    """``A x = M x`` on flattened items: images ``(B, 1, n)``, measurements ``(B, 1, m)``; ``M`` is ``(m, n)`` (one
    matrix for every item) or ``(B, m, n)`` (one per item), real or complex."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.matrix @ x.transpose(1, 2)).transpose(1, 2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.matrix.mH @ y.transpose(1, 2)).transpose(1, 2)

    def dense(self, item: int = 0) -> torch.Tensor:
        return self.matrix if self.matrix.ndim == 2 else self.matrix[item]


class Identity(LinearOperator):
    """``A = I`` on any shape (denoising problems)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


def disk_phantom(size: int = 32, batch: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(batch, 1, size, size)`` piecewise-constant images in [0, 1]: a disk and an inner square (shifted per item)."""
    axis = torch.arange(size, dtype=dtype) - (size - 1) / 2
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    images = []
    for b in range(batch):
        image = 0.5 * ((rows**2 + cols**2) < (0.35 * size) ** 2).to(dtype)
        shift = b * 2 - 2
        image = image + 0.4 * (((rows - shift).abs() < size / 8) & ((cols + shift).abs() < size / 6)).to(dtype)
        images.append(image)
    return torch.stack(images)[:, None]
