"""Shared checks for the physics operator tests."""

from __future__ import annotations

import torch

from medgen.physics.base import inner_product


def relative_adjoint_error(op, x: torch.Tensor, y: torch.Tensor, **adjoint_kwargs) -> float:
    """The issue's dot-product test, ``|<A x, y> - <x, A^H y>| / (|A x| |y|)`` (use float64 inputs)."""
    ax, aty = op(x), op.adjoint(y, **adjoint_kwargs)
    return float((inner_product(ax, y) - inner_product(x, aty)).abs() / (ax.norm() * y.norm()))
