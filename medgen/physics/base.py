"""The linear-operator interface shared by every forward model in :mod:`medgen.physics`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["LinearOperator", "ComposedOperator", "inner_product"]


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

    coisometry: bool = False
    """``A A^H = I`` (orthonormal rows: a crop, a slice selection), so ``(B A)^+ = A^H B^+`` for any ``B``."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A``."""

    @abstractmethod
    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H``."""

    def batch_slice(self, index: slice) -> LinearOperator:
        """The operator for batch items ``index`` of its inputs: ``self`` unless it holds per-item buffers (which
        subclasses such as :class:`~medgen.physics.mri.CartesianMRI` slice)."""
        return self

    def image_shape(self, y: torch.Tensor, name: str = "inputs") -> torch.Size:
        """The shape of the images ``y`` measures: that of ``A^H y``, checked by ``A`` mapping it back to ``y``'s shape.

        Args:
            y: a measurement of this operator.
            name: the argument ``y`` came as, for the message.

        Raises:
            ValueError: ``y`` is not a measurement of this operator (naming ``name``, the shapes and the operator).
        """
        try:
            with torch.no_grad():
                image = self.adjoint(y)
                measured = self.forward(torch.zeros_like(image)).shape
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{name} of shape {tuple(y.shape)} is not a measurement of {self!r}: {err}") from err
        if measured != y.shape:
            raise ValueError(
                f"{name} of shape {tuple(y.shape)} is not a measurement of {self!r}: it maps images "
                f"{tuple(image.shape)} to {tuple(measured)}."
            )
        return image.shape

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


class ComposedOperator(LinearOperator):
    """``A = outer o inner`` (``A^H = inner^H o outer^H``), e.g. a measurement of the image area of a padded canvas.

    The pseudo-inverse is ``inner^H outer^+`` when ``inner`` is a :attr:`~LinearOperator.coisometry` (so any closed
    form of ``outer`` carries over), else the generic conjugate-gradient one.

    Args:
        outer: applied second (e.g. CT on the image).
        inner: applied first (e.g. cropping the image out of a canvas).
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        super().__init__()
        for name, op in (("outer", outer), ("inner", inner)):
            if not isinstance(op, LinearOperator):
                raise TypeError(f"{name} must be a medgen LinearOperator, got {type(op).__name__}.")
        self.outer, self.inner = outer, inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        if self.inner.coisometry:
            return self.inner.adjoint(self.outer.pseudo_inverse(y))
        return super().pseudo_inverse(y, max_iter=max_iter, tol=tol)

    def batch_slice(self, index: slice) -> LinearOperator:
        return ComposedOperator(self.outer.batch_slice(index), self.inner.batch_slice(index))
