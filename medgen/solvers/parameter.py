"""Choosing a regularisation parameter with and without a reference: noise estimates, discrepancy and oracle searches.

Reference-free rule (what a user can run): the **generalised discrepancy principle** (Morozov's, with the
incompatibility measure of Tikhonov, Goncharsky et al.). Pick the ``lam`` whose solution fits the data as well as
the noise allows::

    ||A x_lam - y||^2 = mu^2 + (tau * noise_std)^2 * min(m, n)

with ``m`` the number of measured real scalars (:func:`~medgen.solvers.linalg.num_measurements`), ``n`` the number of
real unknowns, ``noise_std`` the standard deviation of each real scalar of the measurement (for complex data: of the
real and of the imaginary part each) and ``mu = min_x ||A x - y||`` the part of the data no image explains (noise
orthogonal to the range of ``A`` and model error, e.g. coil maps estimated from the data), computed by
:func:`least_squares_residual`. For consistent, underdetermined problems (sparse-view CT, z-averaging) ``mu = 0`` and
this is Morozov's ``||A x - y|| = tau sigma sqrt(m)``; for overdetermined ones (multi-coil MRI) only the ``n`` noise
components inside the range of ``A`` can be fitted, and ``mu`` carries the rest. When ``noise_std`` is not given it
is estimated from the measurement by :func:`estimate_noise_std`. The residual grows with ``lam``, so
:func:`discrepancy_search` brackets the target by decades and then bisects in ``log(lam)``, each solve warm-started
from the previous one, and returns the LARGEST evaluated ``lam`` whose residual is within the target (the most
regularised solution that still explains the data to the noise level). A noiseless measurement gives a noise
estimate near zero and hence a small ``lam``; structure in the object that looks like noise (texture) makes the
rule regularise more than an oracle would.

Reference mode (``oracle``, benchmarks only): :func:`oracle_search` picks the ``lam`` whose solution has the lowest
squared error against the reference (the highest PSNR); :class:`~medgen.solvers.stopping.BestIterate` does the same
for an iteration count. Both are upper bounds that no user without the ground truth can reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medgen.physics.base import LinearOperator
from medgen.checks import check_choice, check_positive_int, check_tensor
from medgen.physics.mri import CartesianMRI, channels_to_complex
from medgen.solvers.cg import cg_solve
from medgen.solvers.linalg import batch_norm, per_item
from medgen.solvers.wavelets import _analysis_axis, _filters

__all__ = [
    "NOISE_METHODS",
    "estimate_noise_std",
    "least_squares_residual",
    "discrepancy_target",
    "squared_error",
    "psnr_per_item",
    "discrepancy_search",
    "oracle_search",
]

NOISE_METHODS = ("auto", "wavelet", "kspace")

# median(|N(0, 1)|): the MAD of a Gaussian divided by this is its standard deviation (Donoho & Johnstone 1994)
_MAD_TO_STD = 0.6744897501960817
# k-space points farther than this fraction of the half-width from the centre (Chebyshev distance) count as "outer"
_KSPACE_OUTER = 0.5
_MIN_DETAIL_SAMPLES = 8
# finest-scale details of this wavelet are the noise sample (2 vanishing moments: linear trends give no details;
# scikit-image's estimate_sigma uses the same wavelet)
_NOISE_WAVELET = "db2"


def _mad_std(values: torch.Tensor) -> torch.Tensor:
    """``median(|v|) / 0.6745`` of each item of ``values`` ``(B, N)`` (real)."""
    return values.abs().median(dim=1).values / _MAD_TO_STD


def _real_scalars(t: torch.Tensor) -> torch.Tensor:
    """Complex entries as (real, imag) pairs, flattened per item: ``(B, N)`` real."""
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.reshape(t.shape[0], -1)


def _wavelet_noise_std(y: torch.Tensor) -> torch.Tensor:
    """Per item: the minimum over the axes ``2..`` of the MAD estimate of the finest wavelet details along that axis."""
    weight = torch.as_tensor(_filters(_NOISE_WAVELET)[0], dtype=y.real.dtype, device=y.device)
    parts = (y.real, y.imag) if y.is_complex() else (y,)
    estimates = []
    for axis in range(2, y.ndim):
        n = y.shape[axis] - y.shape[axis] % 2
        if n < _MIN_DETAIL_SAMPLES:
            continue
        details = [_analysis_axis(part.narrow(axis, 0, n), axis, weight).narrow(axis, n // 2, n // 2)
                   for part in parts]
        estimates.append(_mad_std(torch.cat([d.reshape(y.shape[0], -1) for d in details], dim=1)))
    if not estimates:
        raise ValueError(
            f"y of shape {tuple(y.shape)} has no axis beyond (B, C) with at least {_MIN_DETAIL_SAMPLES} samples to "
            "estimate the noise from; pass noise_std."
        )
    return torch.stack(estimates).min(dim=0).values


def _kspace_noise_std(y: torch.Tensor, operator: CartesianMRI) -> torch.Tensor:
    """Per item: MAD estimate over the measured k-space samples in the outer part of k-space."""
    if operator.channels:
        y = channels_to_complex(y)
    height, width = y.shape[-2:]
    rows = (torch.arange(height, device=y.device) - height // 2).abs() / (height / 2)
    cols = (torch.arange(width, device=y.device) - width // 2).abs() / (width / 2)
    outer = torch.maximum(rows[:, None], cols[None, :]) > _KSPACE_OUTER
    selected = torch.broadcast_to((operator.mask.to(y.device) != 0) & outer, y.shape)
    estimates = []
    for item, keep in zip(y, selected):
        values = item[keep]
        if values.numel() < _MIN_DETAIL_SAMPLES:
            raise ValueError(
                "too few measured k-space samples outside the centre to estimate the noise from "
                f"({values.numel()}); pass noise_std."
            )
        estimates.append(_mad_std(_real_scalars(values[None]))[0])
    return torch.stack(estimates)


def estimate_noise_std(y: torch.Tensor, operator: LinearOperator | None = None, method: str = "auto") -> torch.Tensor:
    """Standard deviation of the noise in each item's measurement, estimated from the measurement alone.

    Rules (the MAD of a Gaussian sample is ``0.6745`` times its standard deviation; medians ignore the few large
    values that signal adds, so these are robust upper estimates):

    - ``"wavelet"`` (any operator): for every axis ``2, 3, ...`` of ``y`` with at least 8 samples, the finest
      orthonormal Daubechies-2 details along that axis (periodic; 2 vanishing moments, so constant and linear trends
      give none) are pure noise where the signal is smooth along it; the estimate of that axis is
      ``median(|details|) / 0.6745`` (Donoho & Johnstone 1994), real and imaginary parts pooled, and the result is the
      MINIMUM over the axes (signal only raises an estimate, so the smallest one is the tightest). Sinograms give it
      along the detector axis, z-averaged volumes in-plane. Edges and texture of the object raise it.
    - ``"kspace"`` (:class:`~medgen.physics.mri.CartesianMRI`): the measured samples (mask non-zero) in the outer
      part of k-space, farther than half the half-width from the centre along either axis (three quarters of the
      area), where the signal of a smooth image is weak; ``median(|Re|, |Im|) / 0.6745``. Sharp edges leave signal
      out there, which raises the estimate.
    - ``"auto"``: ``"kspace"`` for a ``CartesianMRI`` operator, ``"wavelet"`` otherwise.

    A noiseless measurement gives an estimate near zero (or exactly zero where a measurement has flat regions, e.g.
    a sinogram's empty detector bins), and then the discrepancy principle asks for an exact fit.

    Args:
        y: measurement ``(B, ...)``, real or complex (or the real ``[real, imag]`` channel layout of a ``CartesianMRI``
            with ``channels=True``).
        operator: the forward operator (needed for ``"kspace"``).
        method: ``"auto"``, ``"wavelet"`` or ``"kspace"``.

    Returns:
        real tensor ``(B,)``: the standard deviation of each real scalar of the measurement (real and imaginary part
        each, for complex data).

    Raises:
        TypeError: ``y`` is not a tensor, or ``method="kspace"`` without a ``CartesianMRI``.
        ValueError: an unknown ``method``, or too few samples to estimate from.
    """
    check_tensor(y, "y", min_ndim=2, layout="(B, C, ...)")
    check_choice(method, "method", NOISE_METHODS)
    if method == "auto":
        method = "kspace" if isinstance(operator, CartesianMRI) else "wavelet"
    if method == "kspace":
        if not isinstance(operator, CartesianMRI):
            raise TypeError(f"method='kspace' needs a CartesianMRI operator, got {type(operator).__name__}.")
        return _kspace_noise_std(y, operator)
    return _wavelet_noise_std(y)


def least_squares_residual(
    operator: LinearOperator, y: torch.Tensor, rhs: torch.Tensor | None = None, max_iter: int = 50
) -> torch.Tensor:
    """``mu = min_x ||A x - y||`` of each item, by ``max_iter`` conjugate-gradient steps on the normal equations.

    CG on ``A^H A x = A^H y`` decreases ``||A x - y||`` monotonically, so a truncated run gives an upper bound of
    ``mu`` (close to it for well-conditioned problems; ``0`` where ``A`` is onto and the iteration has converged).

    Args:
        operator: the forward operator.
        y: measurement ``(B, ...)``.
        rhs: ``A^H y`` if already computed.
        max_iter: CG iterations.

    Returns:
        real tensor ``(B,)``.
    """
    rhs = operator.adjoint(y) if rhs is None else rhs
    with torch.no_grad():
        x = cg_solve(operator.normal, rhs, max_iter=max_iter, tol=1e-6).x
        return batch_norm(operator(x) - y)


def discrepancy_target(
    noise_std: torch.Tensor,
    num_measured: torch.Tensor,
    num_unknowns: int,
    tau: float,
    incompatibility: torch.Tensor | None = None,
) -> torch.Tensor:
    """The residual norm of the generalised discrepancy principle, per item ``(B,)``:
    ``sqrt(mu^2 + (tau * noise_std)^2 * min(m, n))`` (see the module docstring).

    Args:
        noise_std: ``(B,)`` noise standard deviation per real scalar of the measurement.
        num_measured: ``(B,)`` measured real scalars ``m``.
        num_unknowns: real unknowns ``n`` of one item.
        tau: safety factor.
        incompatibility: ``(B,)`` ``mu = min_x ||A x - y||`` (``None``: 0, Morozov's principle).
    """
    fitted = torch.clamp(num_measured, max=float(num_unknowns))
    target = (tau * noise_std) ** 2 * fitted
    if incompatibility is not None:
        target = target + incompatibility.to(target.dtype) ** 2
    return target.sqrt()


def _compared(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return x.abs() if x.is_complex() and not reference.is_complex() else x


def squared_error(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each item ``(B,)``; a complex ``x`` against a real reference is compared in magnitude."""
    diff = _compared(x, reference) - reference
    return torch.mean((diff.abs() ** 2).reshape(x.shape[0], -1), dim=1)


def psnr_per_item(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR of each item in dB with the data range of the reference, ``max - min`` of ``|reference|`` per item."""
    magnitude = reference.abs().reshape(reference.shape[0], -1)
    data_range = magnitude.max(dim=1).values - magnitude.min(dim=1).values
    return 10 * torch.log10(data_range**2 / squared_error(x, reference))


SolveAt = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
"""``solve_at(lam (B,), x_init or None) -> (x, residual_norm (B,))``."""


def discrepancy_search(
    solve_at: SolveAt,
    scale: torch.Tensor,
    target: torch.Tensor,
    search_range: tuple[float, float],
    steps: int,
    x_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item search for the largest ``lam`` whose solution's residual is at most ``target``.

    ``lam = scale * 10^e`` with ``e`` in ``log10(search_range)``. Starting at the upper end, ``e`` moves by one
    decade per solve until the target is bracketed (residual above it at one end, within it at the other), then
    bisects the bracket; every solve starts from the previous solution. Items are independent: an item's result
    does not depend on the rest of the batch.

    Args:
        solve_at: the solver at given lambdas.
        scale: ``(B,)`` the solver's natural lambda scale.
        target: ``(B,)`` residual norm to reach.
        search_range: ``(low, high)`` multiples of ``scale`` searched, ``0 < low < high``.
        steps: number of solves, ``>= 1``.
        x_init: start of the first solve (``None``: the solver's default).

    Returns:
        ``(x, lam, residual_norm)`` of the chosen solutions; items whose residual exceeds the target even at the
        lowest ``lam`` get that lowest-``lam`` solution.
    """
    check_positive_int(steps, "steps")
    low, high = (math.log10(v) for v in search_range)
    exponent = torch.full_like(scale, high)
    below = torch.full_like(scale, -math.inf)  # largest exponent with residual <= target
    above = torch.full_like(scale, math.inf)  # smallest exponent with residual > target
    best_x, best_exponent, best_residual = None, torch.full_like(scale, math.nan), torch.full_like(scale, math.nan)
    previous = x_init
    for _ in range(steps):
        x, residual = solve_at(scale * 10.0**exponent, previous)
        fits = residual <= target
        if best_x is None:
            best_x, best_exponent, best_residual = x.clone(), exponent.clone(), residual.clone()
        # keep the largest fitting exponent; until something fits, the smallest exponent tried
        take = torch.where(fits, ~(best_residual <= target) | (exponent > best_exponent),
                           ~(best_residual <= target) & (exponent < best_exponent))
        best_x = torch.where(per_item(take, x) > 0, x, best_x)
        best_exponent = torch.where(take, exponent, best_exponent)
        best_residual = torch.where(take, residual, best_residual)
        below = torch.where(fits, torch.maximum(below, exponent), below)
        above = torch.where(fits, above, torch.minimum(above, exponent))
        bracketed = torch.isfinite(below) & torch.isfinite(above)
        exponent = torch.where(
            bracketed, (below + above) / 2, torch.where(fits, exponent + 1, exponent - 1)
        ).clamp(low, high)
        previous = x
    return best_x, scale * 10.0**best_exponent, best_residual


def oracle_search(
    solve_at: SolveAt,
    scale: torch.Tensor,
    score: Callable[[torch.Tensor], torch.Tensor],
    search_range: tuple[float, float],
    steps: int,
    x_init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item search for the ``lam`` with the lowest ``score`` (e.g. squared error against a reference).

    ``lam = scale * 10^e``: first a grid of ``ceil(steps / 2)`` exponents evenly spaced over ``log10(search_range)``,
    solved from the largest ``lam`` down (each solve warm-started from the previous, a continuation), then the rest
    of the budget refines around each item's best exponent, alternately trying half the current spacing above and
    below it (warm-started from the best solution) and halving the spacing after each pair. An upper bound on what
    the solver can reach: it needs the ground truth.

    Args:
        solve_at: the solver at given lambdas.
        scale: ``(B,)`` the solver's natural lambda scale.
        score: ``x -> (B,)``, lower is better.
        search_range: ``(low, high)`` multiples of ``scale`` searched, ``0 < low < high``.
        steps: number of solves, ``>= 2``.
        x_init: start of the first solve.

    Returns:
        ``(x, lam, residual_norm)`` of the best solutions.
    """
    check_positive_int(steps, "steps")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 for the oracle search, got {steps}.")
    low, high = (math.log10(v) for v in search_range)
    num_grid = math.ceil(steps / 2)
    grid = torch.linspace(high, low, num_grid, dtype=torch.float64).tolist()
    spacing = (high - low) / max(num_grid - 1, 1)
    best = None
    previous = x_init
    for e in grid:
        exponent = torch.full_like(scale, e)
        x, residual = solve_at(scale * 10.0**exponent, previous)
        best = _keep_best(best, x, exponent, residual, score(x))
        previous = x
    for k in range(steps - num_grid):
        if k % 2 == 0:
            spacing /= 2
        direction = 1 if k % 2 == 0 else -1
        exponent = (best[1] + direction * spacing).clamp(low, high)
        x, residual = solve_at(scale * 10.0**exponent, best[0])
        best = _keep_best(best, x, exponent, residual, score(x))
    x, exponent, residual, _ = best
    return x, scale * 10.0**exponent, residual


def _keep_best(best, x, exponent, residual, score):
    if best is None:
        return x.clone(), exponent.clone(), residual.clone(), score.clone()
    bx, be, br, bs = best
    better = score < bs
    return (
        torch.where(per_item(better, x) > 0, x, bx),
        torch.where(better, exponent, be),
        torch.where(better, residual, br),
        torch.where(better, score, bs),
    )
