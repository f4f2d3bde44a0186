"""What every classical solver shares: settings, the info record, argument checks and the parameter-choice logic.

A solver is built from a :class:`~medgen.physics.base.LinearOperator` and frozen settings, and called on a batch of
measurements::

    solver = TVPDHG(operator, lam="discrepancy", max_iter=300, box=(0, 1))
    x = solver(y)            # (B, ...) images; solver.info holds iterations, residuals, the chosen lambda
    x, info = solver.solve(y, reference=truth)   # the same, returning the info (and its PSNR against truth)

How the regularisation is chosen (:attr:`Solver.rule`):

- ``"fixed"``: the ``lam`` given (a number, or a ``(B,)`` tensor of per-item values), iterations until the relative
  change falls below ``tol`` or ``max_iter``.
- ``"discrepancy"`` (reference-free): ``lam="discrepancy"`` searches lambda, ``stopping="discrepancy"`` stops the
  iteration, so that ``||A x - y||^2 ~ mu^2 + (discrepancy_tau * noise_std)^2 min(m, n)`` (the generalised
  discrepancy principle, see :mod:`medgen.solvers.parameter`; ``noise_std`` is estimated from ``y`` unless passed to
  the call).
- ``"oracle"`` (benchmarks only): ``lam="oracle"`` / ``stopping="oracle"`` pick the lambda / iteration count with the
  highest PSNR against the ``reference`` passed to the call. It is an upper bound that no user can reach.

Every item of a batch is an independent problem: step sizes, lambdas, stopping and searches are per item, so a
batch gives what its items give alone (to floating-point rounding of batched kernels).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from medgen.physics.base import LinearOperator
from medgen.checks import check_box, check_choice, check_positive_int, check_tensor
from medgen.solvers.linalg import batch_norm, num_measurements
from medgen.solvers.parameter import (
    NOISE_METHODS,
    discrepancy_search,
    discrepancy_target,
    estimate_noise_std,
    least_squares_residual,
    oracle_search,
    psnr_per_item,
    squared_error,
)
from medgen.solvers.stopping import BestIterate, DiscrepancyReached, RelativeChange, State, StoppingRule

__all__ = [
    "LAMBDA_RULES",
    "STOPPING_RULES",
    "SolverSettings",
    "SolverInfo",
    "Solver",
    "check_lam",
    "check_box",
    "check_positive",
]

LAMBDA_RULES = ("discrepancy", "oracle")
"""Strings accepted by ``lam`` instead of a value."""

STOPPING_RULES = ("tolerance", "discrepancy", "oracle")
"""Values of ``stopping`` for solvers regularised by their iteration count."""


def check_lam(lam: Any, name: str = "lam") -> None:
    """Raise unless ``lam`` is a finite number ``>= 0``, a 1D tensor of them (one per item), or a rule name."""
    if isinstance(lam, str):
        check_choice(lam, name, LAMBDA_RULES)
        return
    if isinstance(lam, torch.Tensor):
        if lam.ndim > 1 or lam.is_complex() or not bool(torch.all(torch.isfinite(lam) & (lam >= 0))):
            raise ValueError(f"{name} must be a 0D/1D tensor of finite values >= 0 (one per item), got {lam!r:.80}.")
        return
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, a (B,) tensor, or one of {LAMBDA_RULES}, got {lam!r}.")


def check_positive(value: Any, name: str, optional: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number ``> 0`` (or ``None``, if optional)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        kind = "None or a finite positive number" if optional else "a finite positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}.")


@dataclass(frozen=True)
class SolverSettings:
    """Settings shared by every solver (validated on construction).

    Attributes:
        max_iter: maximum number of iterations of one solve.
        tol: stop an item when the relative change of its iterate, ``||x_k+1 - x_k|| / ||x_k+1||``, is at most this.
        discrepancy_tau: the safety factor ``tau`` on the noise level in the discrepancy principle's target
            (:func:`~medgen.solvers.parameter.discrepancy_target`).
        noise_method: how ``noise_std`` is estimated when not given (see
            :func:`~medgen.solvers.parameter.estimate_noise_std`): ``"auto"``, ``"wavelet"`` or ``"kspace"``.
        search_steps: number of solves of a lambda search (``lam="discrepancy"`` or ``"oracle"``).
        search_range: ``(low, high)``: the lambdas searched are ``scale * [low, high]``, with ``scale`` the solver's
            natural lambda scale (see each solver).
        incompatibility_iterations: CG iterations of the least-squares residual ``mu`` of the discrepancy target
            (:func:`~medgen.solvers.parameter.least_squares_residual`).
    """

    max_iter: int = 100
    tol: float = 1e-4
    discrepancy_tau: float = 1.0
    noise_method: str = "auto"
    search_steps: int = 10
    search_range: tuple[float, float] = (1e-5, 1.0)
    incompatibility_iterations: int = 50

    def __post_init__(self) -> None:
        check_positive_int(self.max_iter, "max_iter")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not self.tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}.")
        check_positive(self.discrepancy_tau, "discrepancy_tau")
        check_choice(self.noise_method, "noise_method", NOISE_METHODS)
        check_positive_int(self.search_steps, "search_steps")
        check_positive_int(self.incompatibility_iterations, "incompatibility_iterations")
        low_high = self.search_range
        if (
            not isinstance(low_high, Sequence)
            or len(low_high) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
            or not 0 < low_high[0] < low_high[1] < math.inf
        ):
            raise ValueError(f"search_range must be (low, high) with 0 < low < high < inf, got {low_high!r}.")
        object.__setattr__(self, "search_range", (float(low_high[0]), float(low_high[1])))


@dataclass(frozen=True)
class SolverInfo:
    """What a solve did, per item of the batch (tensors ``(B,)`` on the images' device).

    Attributes:
        rule: how the regularisation was chosen: ``"fixed"``, ``"discrepancy"`` or ``"oracle"``.
        iterations: iterations of every solve together (a lambda search runs ``solves`` warm-started solves).
        converged: whether every solve stopped by a rule (tolerance, discrepancy) before ``max_iter``.
        residual_norm: ``||A x - y||`` of the returned image.
        solves: number of solves run (1 without a lambda search).
        lam: the lambda used or chosen, ``None`` for methods without one.
        best_iteration: the iteration count chosen by ``stopping="oracle"`` (else ``None``).
        noise_std: the noise level used by the discrepancy principle (given or estimated), else ``None``.
        target_residual: the discrepancy principle's residual norm (see :func:`~medgen.solvers.parameter.
            discrepancy_target`), else ``None``.
        operator_norm: the estimate of ``||A||`` used for step sizes, where one was needed.
        psnr: PSNR (dB, data range of the reference) against the ``reference`` passed to the call, else ``None``.
    """

    rule: str
    iterations: torch.Tensor
    converged: torch.Tensor
    residual_norm: torch.Tensor
    solves: int = 1
    lam: torch.Tensor | None = None
    best_iteration: torch.Tensor | None = None
    noise_std: torch.Tensor | None = None
    target_residual: torch.Tensor | None = None
    operator_norm: torch.Tensor | None = None
    psnr: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record with tensors as lists of Python numbers (JSON-serialisable)."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value
        return out


class Solver(ABC):
    """A classical reconstruction ``x = argmin_x 1/2 ||A x - y||^2 + lam R(x)`` (or an iteration regularised by its
    stopping) for any :class:`~medgen.physics.base.LinearOperator`.

    Subclasses set :attr:`settings_class` and implement :meth:`_run` (one solve at given lambdas with given stopping
    rules); the parameter choice, checks and the info record live here. Solves run without autograd
    (``torch.no_grad``): use the result as data (a baseline, a warm start, a consistency target).

    Args:
        operator: the forward operator ``A``; its buffers' device must match the measurements'.
        settings: fields of :attr:`settings_class` (validated there).

    Raises:
        TypeError: ``operator`` is not a ``LinearOperator``, or an unknown setting.
        ValueError: a setting out of range.
    """

    settings_class: ClassVar[type[SolverSettings]] = SolverSettings

    def __init__(self, operator: LinearOperator, **settings: Any) -> None:
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a medgen.physics.base.LinearOperator, got {type(operator).__name__}.")
        self.operator = operator
        self.settings = self.settings_class(**settings)
        self.info: SolverInfo | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.operator).__name__}, {self.settings})"

    @property
    def rule(self) -> str:
        """``"fixed"``, ``"discrepancy"`` or ``"oracle"``: how the regularisation is chosen."""
        lam = getattr(self.settings, "lam", None)
        if isinstance(lam, str):
            return lam
        stopping = getattr(self.settings, "stopping", "tolerance")
        return "fixed" if stopping == "tolerance" else stopping

    # ------------------------------------------------------------------------------------------------ the call
    def __call__(
        self,
        y: torch.Tensor,
        x0: torch.Tensor | None = None,
        *,
        noise_std: float | torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        **problem: Any,
    ) -> torch.Tensor:
        """Reconstruct; the info record is kept in :attr:`info`. Arguments as :meth:`solve`."""
        x, self.info = self.solve(y, x0, noise_std=noise_std, reference=reference, **problem)
        return x

    def solve(
        self,
        y: torch.Tensor,
        x0: torch.Tensor | None = None,
        *,
        noise_std: float | torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        **problem: Any,
    ) -> tuple[torch.Tensor, SolverInfo]:
        """Reconstruct a batch of measurements.

        Args:
            y: measurements ``(B, ...)`` in the operator's range, on the operator's device; real or complex as the
                operator expects. The image domain (shape, dtype, device) is that of ``A^H y``.
            x0: optional start ``(B, ...)`` shaped like ``A^H y`` (default: the solver's, usually zero).
            noise_std: noise standard deviation of each real scalar of ``y`` for the discrepancy principle, a number
                or a ``(B,)`` tensor (default: estimated from ``y``, see
                :func:`~medgen.solvers.parameter.estimate_noise_std`). Unused by the other rules.
            reference: the ground truth ``(B, ...)`` shaped like ``A^H y`` (a real reference with a complex image is
                compared in magnitude). Required by the ``"oracle"`` rule; otherwise only scored in ``info.psnr``.
            problem: solver-specific inputs (e.g. ``x_ref`` of :class:`~medgen.solvers.cgls.CGLS`).

        Returns:
            ``(x, info)``: images ``(B, ...)`` and a :class:`SolverInfo`.

        Raises:
            TypeError, ValueError: on a bad argument (named in the message), before any iteration.
        """
        check_tensor(y, "y", min_ndim=2, layout="(B, ...)")
        rule = self.rule
        with torch.no_grad():
            rhs = self.operator.adjoint(y)
            x0 = self._check_image(x0, "x0", rhs)
            reference = self._check_reference(reference, rhs, rule)
            lam = getattr(self.settings, "lam", None)
            lam = lam if lam is None or isinstance(lam, str) else self._lam_tensor(lam, rhs)
            noise = self._check_noise_std(noise_std, y) if rule == "discrepancy" else None
            context = self._prepare(y, rhs, **problem)
            target = None
            if rule == "discrepancy":
                if noise is None:
                    noise = estimate_noise_std(y, self.operator, self.settings.noise_method)
                unknowns = rhs[0].numel() * (2 if rhs.is_complex() else 1)
                target = discrepancy_target(
                    noise,
                    num_measurements(self.operator, rhs),
                    unknowns,
                    self.settings.discrepancy_tau,
                    least_squares_residual(self.operator, y, rhs, self.settings.incompatibility_iterations),
                )
            result = self._solve_with_rule(rule, lam, y, rhs, x0, reference, target, context)
            x = result["x"]
            residual = batch_norm(self.operator(x) - y)
            info = SolverInfo(
                rule=rule,
                iterations=result["iterations"],
                converged=result["converged"],
                residual_norm=residual,
                solves=result.get("solves", 1),
                lam=result.get("lam"),
                best_iteration=result.get("best_iteration"),
                noise_std=noise,
                target_residual=target,
                operator_norm=context.get("operator_norm"),
                psnr=None if reference is None else psnr_per_item(x, reference),
            )
        return x, info

    # ------------------------------------------------------------------------------------------ the choice
    def _solve_with_rule(
        self,
        rule: str,
        lam: str | torch.Tensor | None,
        y: torch.Tensor,
        rhs: torch.Tensor,
        x0: torch.Tensor | None,
        reference: torch.Tensor | None,
        target: torch.Tensor | None,
        context: dict[str, Any],
    ) -> dict[str, Any]:
        if isinstance(lam, str):
            return self._search_lambda(rule, y, rhs, x0, reference, target, context)
        rules: list[StoppingRule] = [self._convergence_rule(rhs, lam, context)]
        oracle = None
        if rule == "discrepancy":
            rules.append(DiscrepancyReached(target, lambda state: self._state_residual(state, y, context)))
        elif rule == "oracle":
            oracle = BestIterate(lambda x: squared_error(x, reference))
            rules.append(oracle)
        state, iterations, stopped = self._run(y, rhs, lam, x0, rules, context)
        return {
            "x": state["x"],
            "iterations": iterations,
            "converged": stopped,
            "lam": lam,
            "best_iteration": None if oracle is None else oracle.best_iteration,
        }

    def _search_lambda(
        self,
        rule: str,
        y: torch.Tensor,
        rhs: torch.Tensor,
        x0: torch.Tensor | None,
        reference: torch.Tensor | None,
        target: torch.Tensor | None,
        context: dict[str, Any],
    ) -> dict[str, Any]:
        batch = rhs.shape[0]
        total = torch.zeros(batch, dtype=torch.long, device=rhs.device)
        converged = torch.ones(batch, dtype=torch.bool, device=rhs.device)
        solves = 0

        def solve_at(lam: torch.Tensor, x_init: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal total, converged, solves
            rules = [self._convergence_rule(rhs, lam, context)]
            state, iterations, stopped = self._run(y, rhs, lam, x_init, rules, context)
            total = total + iterations
            converged = converged & stopped
            solves += 1
            return state["x"], batch_norm(self.operator(state["x"]) - y)

        scale = self._lambda_scale(y, rhs, context)
        search = discrepancy_search if rule == "discrepancy" else oracle_search
        criterion = target if rule == "discrepancy" else (lambda x: squared_error(x, reference))
        x, lam, _ = search(solve_at, scale, criterion, self.settings.search_range, self.settings.search_steps, x0)
        return {"x": x, "iterations": total, "converged": converged, "lam": lam, "solves": solves}

    # ---------------------------------------------------------------------------------- subclass interface
    def _prepare(self, y: torch.Tensor, rhs: torch.Tensor, **problem: Any) -> dict[str, Any]:
        """Precompute what every solve of this call needs (norms, weights); checks solver-specific inputs."""
        if problem:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(problem)}.")
        return {}

    @abstractmethod
    def _run(
        self,
        y: torch.Tensor,
        rhs: torch.Tensor,
        lam: torch.Tensor | None,
        x_init: torch.Tensor | None,
        rules: Sequence[StoppingRule],
        context: dict[str, Any],
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        """One solve: the result of :func:`~medgen.solvers.stopping.iterate` at per-item ``lam`` ``(B,)``."""

    def _convergence_rule(
        self, rhs: torch.Tensor, lam: torch.Tensor | None, context: dict[str, Any]
    ) -> StoppingRule:
        """The rule that ends a solve once it has converged (default: relative change of ``x`` below ``tol``)."""
        return RelativeChange(self.settings.tol)

    def _lambda_scale(self, y: torch.Tensor, rhs: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        """``(B,)``: the natural lambda scale the search range multiplies (default ``max |A^H y|``)."""
        return rhs.abs().reshape(rhs.shape[0], -1).max(dim=1).values

    def _state_residual(self, state: State, y: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        """``(B,)`` data residual ``||A x - y||`` of a state (subclasses with a cached residual override this)."""
        return batch_norm(self.operator(state["x"]) - y)

    # ----------------------------------------------------------------------------------------------- checks
    @staticmethod
    def _lam_tensor(lam: float | torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        dtype = rhs.real.dtype if rhs.is_complex() else rhs.dtype
        value = torch.as_tensor(lam, dtype=dtype, device=rhs.device)
        if value.ndim == 0:
            return value.expand(rhs.shape[0]).clone()
        if value.shape[0] != rhs.shape[0]:
            raise ValueError(f"lam has {value.shape[0]} values but the batch has {rhs.shape[0]} items.")
        return value

    @staticmethod
    def _check_image(x: torch.Tensor | None, name: str, rhs: torch.Tensor) -> torch.Tensor | None:
        if x is None:
            return None
        check_tensor(x, name)
        if x.shape != rhs.shape:
            raise ValueError(f"{name} must be shaped like A^H y {tuple(rhs.shape)}, got {tuple(x.shape)}.")
        if x.is_complex() and not rhs.is_complex():
            raise TypeError(f"{name} is complex ({x.dtype}) but the operator's image domain is real ({rhs.dtype}).")
        return x.to(device=rhs.device, dtype=rhs.dtype)

    @staticmethod
    def _check_reference(reference: torch.Tensor | None, rhs: torch.Tensor, rule: str) -> torch.Tensor | None:
        if reference is None:
            if rule == "oracle":
                raise ValueError("the 'oracle' rule picks by PSNR against a reference: pass reference=<ground truth>.")
            return None
        check_tensor(reference, "reference")
        if reference.shape != rhs.shape:
            raise ValueError(f"reference must be shaped like A^H y {tuple(rhs.shape)}, got {tuple(reference.shape)}.")
        if reference.is_complex() and not rhs.is_complex():
            raise TypeError(f"reference is complex ({reference.dtype}) but the images are real ({rhs.dtype}).")
        dtype = rhs.dtype if reference.is_complex() else (rhs.real.dtype if rhs.is_complex() else rhs.dtype)
        return reference.to(device=rhs.device, dtype=dtype)

    @staticmethod
    def _check_noise_std(noise_std: float | torch.Tensor | None, y: torch.Tensor) -> torch.Tensor | None:
        if noise_std is None:
            return None
        dtype = y.real.dtype if y.is_complex() else y.dtype
        value = torch.as_tensor(noise_std, dtype=dtype, device=y.device)
        if value.ndim == 0:
            value = value.expand(y.shape[0])
        if value.shape != (y.shape[0],) or not bool(torch.all(torch.isfinite(value) & (value >= 0))):
            raise ValueError(
                f"noise_std must be a finite number >= 0 or a ({y.shape[0]},) tensor of them, got {noise_std!r:.80}."
            )
        return value
