"""Per-item linear algebra shared by the solvers: batched inner products and norms, operator norms, measurement counts.

Every solver in :mod:`medgen.solvers` treats axis 0 as a batch of independent problems, so its step sizes, stopping
tests and lambdas are per item. The helpers here reduce over all axes but the first; they are the per-item
counterparts of :func:`medgen.physics.base.inner_product` (which reduces over everything).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medgen.physics.base import LinearOperator
from medgen.checks import check_positive_int, check_tensor

__all__ = [
    "batch_inner_product",
    "batch_norm",
    "per_item",
    "operator_norm",
    "operator_norm_bound",
    "num_measurements",
]

# the start vector of the power iteration is drawn from this seed, so estimates repeat exactly
_POWER_ITERATION_SEED = 20240516


def batch_inner_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the Hermitian inner product ``sum(conj(a) * b)`` of each item.

    Args:
        a: tensor ``(B, ...)``, real or complex.
        b: tensor of the same shape.

    Returns:
        real tensor ``(B,)``.
    """
    if a.is_complex() or b.is_complex():
        return torch.sum((torch.conj(a) * b).real.reshape(a.shape[0], -1), dim=1)
    return torch.sum((a * b).reshape(a.shape[0], -1), dim=1)


def batch_norm(a: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each item of ``a`` ``(B, ...)`` (complex: of the moduli); real ``(B,)``."""
    return torch.linalg.vector_norm(a.reshape(a.shape[0], -1), dim=1)


def per_item(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` (a number or a ``(B,)`` tensor) shaped ``(B, 1, ..., 1)`` to broadcast against ``like`` ``(B, ...)``.

    The result is real, in ``like``'s real dtype and on its device.
    """
    dtype = like.real.dtype if like.is_complex() else like.dtype
    value = torch.as_tensor(value, dtype=dtype, device=like.device)
    if value.ndim == 0:
        value = value.expand(like.shape[0])
    return value.reshape(like.shape[0], *([1] * (like.ndim - 1)))


def _start_vector(like: torch.Tensor) -> torch.Tensor:
    """The same deterministic pseudo-random vector for every item (so a batch gives what its items give alone)."""
    generator = torch.Generator().manual_seed(_POWER_ITERATION_SEED)
    dtype = like.real.dtype if like.is_complex() else like.dtype
    item = torch.randn(like.shape[1:], generator=generator, dtype=torch.float64)
    if like.is_complex():
        item = torch.complex(item, torch.randn(like.shape[1:], generator=generator, dtype=torch.float64))
    return item.to(device=like.device, dtype=like.dtype if like.is_complex() else dtype).expand_as(like).clone()


def operator_norm(
    normal: LinearOperator | Callable[[torch.Tensor], torch.Tensor],
    like: torch.Tensor,
    max_iter: int = 50,
    tol: float = 1e-3,
) -> torch.Tensor:
    """Spectral norm ``||A||`` of each item by power iteration on ``A^H A``.

    The iteration starts from the same pseudo-random vector in every item (a fixed seed: the estimate repeats, and an
    item gives the same norm alone or in a batch) and stops when every item's Rayleigh quotient changes by less than
    ``tol`` relative. Power iteration approaches ``||A||`` from below: callers that need a safe step size multiply by
    a margin (the solvers use ``1.01``).

    Args:
        normal: a :class:`~medgen.physics.base.LinearOperator` (its :meth:`normal` ``A^H A`` is used) or any callable
            applying a Hermitian positive semi-definite operator (then the result is the square root of its largest
            eigenvalue).
        like: a tensor ``(B, ...)`` in the operator's domain (shape, dtype, real/complex and device of the iterates).
        max_iter: maximum number of iterations.
        tol: relative change of the eigenvalue estimate at which to stop.

    Returns:
        real tensor ``(B,)``, on ``like``'s device.

    Raises:
        TypeError: ``like`` is not a floating-point or complex tensor.
        ValueError: ``max_iter`` is not a positive integer or ``tol`` is not positive.
    """
    check_tensor(like, "like", min_ndim=1)
    if not (like.is_floating_point() or like.is_complex()):
        raise TypeError(f"like must be a floating-point or complex tensor, got dtype {like.dtype}.")
    check_positive_int(max_iter, "max_iter")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}.")
    apply = normal.normal if isinstance(normal, LinearOperator) else normal
    with torch.no_grad():
        v = _start_vector(like)
        v = v / per_item(batch_norm(v), v)
        estimate = torch.zeros(like.shape[0], dtype=batch_norm(v).dtype, device=like.device)
        active = torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
        for _ in range(max_iter):
            w = apply(v)
            new = batch_inner_product(v, w).clamp_min(0)
            w_norm = batch_norm(w)
            converged = (new - estimate).abs() <= tol * new
            # items freeze once converged, so an item's estimate does not depend on the rest of the batch
            estimate = torch.where(active, new, estimate)
            active = active & ~converged & (w_norm > 0)
            if not bool(active.any()):
                break
            safe = torch.where(w_norm > 0, w_norm, torch.ones_like(w_norm))
            v = torch.where(per_item(active, w) > 0, w / per_item(safe, w), v)
    return estimate.sqrt()


def operator_norm_bound(
    operator: LinearOperator, like: torch.Tensor, known: float | None = None, margin: float = 1.01
) -> torch.Tensor:
    """``||A||`` per item for step sizes: ``known`` as given, else :func:`operator_norm` times ``margin``.

    Power iteration approaches the norm from below, so the margin keeps step sizes ``1 / ||A||^2`` on the safe side.
    A zero estimate (a zero operator) becomes 1, which leaves the steps finite.

    Args:
        operator: the forward operator.
        like: a tensor ``(B, ...)`` in its domain.
        known: the exact norm if known (used for every item, without margin).
        margin: factor applied to the estimate.

    Returns:
        real tensor ``(B,)`` on ``like``'s device.
    """
    if known is not None:
        dtype = like.real.dtype if like.is_complex() else like.dtype
        return torch.full((like.shape[0],), float(known), dtype=dtype, device=like.device)
    estimate = operator_norm(operator, like) * margin
    return torch.where(estimate > 0, estimate, torch.ones_like(estimate))


def num_measurements(operator: LinearOperator, like: torch.Tensor) -> torch.Tensor:
    """Number of real scalars of each item's measurement that ``A`` can make non-zero (``m`` of the discrepancy rule).

    A probe: ``A`` is applied to a pseudo-random image and the non-zero scalars of the result are counted (complex
    entries count twice: real and imaginary part). Entries that are structurally zero, such as unsampled k-space
    locations of a masked Fourier operator, are not measurements and do not count.

    Args:
        operator: the forward operator.
        like: a tensor ``(B, ...)`` in the operator's domain.

    Returns:
        float tensor ``(B,)`` (in ``like``'s real dtype) on ``like``'s device.
    """
    with torch.no_grad():
        probe = operator(_start_vector(like))
        if probe.is_complex():
            probe = torch.view_as_real(probe)
        count = (probe != 0).reshape(probe.shape[0], -1).sum(dim=1)
    return count.to(like.real.dtype if like.is_complex() else like.dtype)
