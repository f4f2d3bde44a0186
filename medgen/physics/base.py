"""The linear-operator interface shared by every forward model in :mod:`medgen.physics`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["LinearOperator", "inner_product"]


def inner_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the Hermitian inner product ``<a, b> = sum(conj(a) * b)`` over all elements.

    Args:
        a: tensor of any shape, real or complex.
        b: tensor of the same shape as ``a``.

    Returns:
        a real 0-d tensor.
    """
    if a.is_complex() or b.is_complex():
        return torch.sum(torch.conj(a) * b).real
    return torch.sum(a * b)


class LinearOperator(nn.Module, ABC):
    """A linear forward model ``A`` with its adjoint ``A^H``.

    Subclasses implement :meth:`forward` (``A``) and :meth:`adjoint` (``A^H``) on batched tensors, differentiable and
    on any device; operator parameters (masks, maps, kernels) are registered as buffers so ``.to(device)`` moves them.
    :meth:`pseudo_inverse` defaults to conjugate gradients on the normal equations; operators with a closed form
    (z-axis averaging, FBP, Cartesian MRI) override it.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A``."""

    @abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H``."""

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H A``."""
        return self.adjoint(self.forward(x))

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        """Least-squares solution ``argmin_x ||A x - y||^2`` by conjugate gradients on ``A^H A x = A^H y``.

        Args:
            y: measurement, shaped like ``A(x)``.
            max_iter: maximum number of CG iterations.
            tol: stop when the residual norm falls below ``tol`` times the norm of ``A^H y``.

        Returns:
            the minimum-norm least-squares estimate (CG started from zero), shaped like ``x``.
        """
        if max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter}.")
        rhs = self.adjoint(y)
        x = torch.zeros_like(rhs)
        r = rhs.clone()
        p = r.clone()
        rs_old = inner_product(r, r)
        threshold = (tol**2) * rs_old
        for _ in range(max_iter):
            if rs_old <= threshold or rs_old == 0:
                break
            ap = self.normal(p)
            alpha = rs_old / inner_product(p, ap)
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = inner_product(r, r)
            p = r + (rs_new / rs_old) * p
            rs_old = rs_new
        return x
