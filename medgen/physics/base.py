"""The linear-operator interface shared by every forward model in :mod:`medgen.physics`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["LinearOperator", "inner_product", "check_tensor", "check_positive_int", "check_choice"]


def check_tensor(value: Any, name: str, min_ndim: int = 0, layout: str = "", real_floating: bool = False) -> None:
    """Raise a clear error unless ``value`` is a tensor with at least ``min_ndim`` dims (real floating if asked).

    Args:
        value: the argument to check.
        name: its name, used in the message.
        min_ndim: minimum number of dimensions.
        layout: the expected layout, quoted in the message (e.g. ``"(..., H, W)"``).
        real_floating: also require a real floating-point dtype.

    Raises:
        TypeError: if ``value`` is not a ``torch.Tensor``, or not real floating point when ``real_floating``.
        ValueError: if it has fewer than ``min_ndim`` dims.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if value.ndim < min_ndim:
        layout = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have at least {min_ndim} dims{layout}, got shape {tuple(value.shape)}.")
    if real_floating and (value.is_complex() or not value.is_floating_point()):
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {value.dtype}.")


def check_positive_int(value: Any, name: str) -> int:
    """``value`` if it is an ``int`` (not ``bool``) ``>= 1``, else a ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    """Raise a ``ValueError`` naming ``name`` and the allowed ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


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
