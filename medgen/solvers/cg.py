"""Batched conjugate gradients for Hermitian positive semi-definite systems: :func:`cg_solve` (used by
:class:`~medgen.solvers.cgls.CGLS` and by the discrepancy principle's least-squares floor)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from medgen.checks import check_positive_int, check_tensor
from medgen.solvers.linalg import batch_inner_product, batch_norm, per_item
from medgen.solvers.stopping import State, StoppingRule, iterate

__all__ = ["CGResult", "cg_solve", "cg_iterate", "ResidualBelow"]


class CGResult(NamedTuple):
    """Result of :func:`cg_solve`: ``x`` ``(B, ...)``; per item ``(B,)``: ``iterations``, ``residual_norm``
    ``||rhs - N x||`` and ``converged`` (stopped by a rule before ``max_iter``)."""

    x: torch.Tensor
    iterations: torch.Tensor
    residual_norm: torch.Tensor
    converged: torch.Tensor


class ResidualBelow(StoppingRule):
    """Stop a CG item when its residual ``||rhs - N x||`` is at most ``tol * ||rhs||`` (``tol`` relative)."""

    def __init__(self, tol: float, rhs: torch.Tensor) -> None:
        self.threshold = tol * batch_norm(rhs)

    def check(self, state: State, previous: State | None, active: torch.Tensor, iteration: int) -> torch.Tensor:
        return state["rs"].sqrt() <= self.threshold


def _cg_state(normal_op: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, x0: torch.Tensor | None) -> State:
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal_op(x) if x0 is not None else rhs.clone()
    return {"x": x, "r": r, "p": r.clone(), "rs": batch_inner_product(r, r)}


def _cg_step(normal_op: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[State], State]:
    def step(state: State) -> State:
        x, r, p, rs = state["x"], state["r"], state["p"], state["rs"]
        normal_p = normal_op(p)
        curvature = batch_inner_product(p, normal_p)
        alpha = torch.where(curvature > 0, rs / torch.where(curvature > 0, curvature, torch.ones_like(curvature)),
                            torch.zeros_like(rs))
        x = x + per_item(alpha, x) * p
        r = r - per_item(alpha, r) * normal_p
        rs_new = batch_inner_product(r, r)
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        return {"x": x, "r": r, "p": r + per_item(beta, p) * p, "rs": rs_new}

    return step


def cg_iterate(
    normal_op: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None,
    max_iter: int,
    rules: Sequence[StoppingRule],
) -> tuple[State, torch.Tensor, torch.Tensor]:
    """:func:`cg_solve` without argument checks, returning the raw ``(state, iterations, stopped)`` of
    :func:`~medgen.solvers.stopping.iterate` (state keys ``x``, ``r`` residual, ``p`` direction, ``rs`` ``||r||^2``)."""
    return iterate(_cg_step(normal_op), _cg_state(normal_op, rhs, x0), max_iter, rules)


def cg_solve(
    normal_op: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
    rules: Sequence[StoppingRule] = (),
) -> CGResult:
    """Batched conjugate gradients for ``N x = rhs`` with ``N`` Hermitian positive (semi-)definite, per item.

    Each item has its own step sizes and stops on its own when ``||rhs - N x|| <= tol ||rhs||`` (or by an extra
    rule), so a batch gives what its items give alone. ``N`` must act on each item independently (any
    :class:`~medgen.physics.base.LinearOperator`'s ``normal``, plus ``lam * x``, does). Runs under the caller's
    autograd mode; wrap in ``torch.no_grad()`` when no gradient is needed.

    Args:
        normal_op: ``x -> N x`` on tensors shaped like ``rhs``, e.g. ``lambda x: op.normal(x) + lam * x``.
        rhs: right-hand side ``(B, ...)``, real or complex.
        x0: start (default zero).
        max_iter: maximum number of iterations.
        tol: relative residual tolerance, ``>= 0``.
        rules: extra :class:`~medgen.solvers.stopping.StoppingRule` s (e.g. a discrepancy rule).

    Returns:
        a :class:`CGResult`.

    Raises:
        TypeError, ValueError: on bad arguments.
    """
    check_tensor(rhs, "rhs", min_ndim=1)
    if x0 is not None:
        check_tensor(x0, "x0")
        if x0.shape != rhs.shape:
            raise ValueError(f"x0 must be shaped like rhs {tuple(rhs.shape)}, got {tuple(x0.shape)}.")
    check_positive_int(max_iter, "max_iter")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}.")
    state, iterations, stopped = cg_iterate(normal_op, rhs, x0, max_iter, [ResidualBelow(tol, rhs), *rules])
    return CGResult(state["x"], iterations, state["rs"].sqrt(), stopped)
