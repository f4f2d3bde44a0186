"""Total variation: finite differences, the TV norm, its proximal map and TV-regularised reconstruction by PDHG.

Conventions shared by everything here:

- The TV acts on the last ``spatial_dims`` axes of ``(B, ...)`` tensors; every axis between the batch axis and the
  spatial ones (channels, coils, slices) is a channel.
- Differences are forward differences with unit spacing, ``(D_a x)[i] = x[i + 1] - x[i]``, and either ``"neumann"``
  (zero at the last sample; scikit-image, Chambolle) or ``"circular"`` (wrapping, as sigpy's ``FiniteDifference``)
  boundaries. ``||D||^2 <= 4 * spatial_dims`` in both cases.
- Isotropic TV is ``sum_i sqrt(sum_{a, c} |D_a x_c[i]|^2)``: the channels are coupled (vectorial TV), so the TV of
  a complex image equals the TV of its ``[real, imag]`` channel layout. Anisotropic TV is ``sum |D_a x_c[i]|``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_bool, check_box, check_choice, check_positive_int, check_tensor
from medgen.solvers.base import Solver, SolverSettings, check_lam, check_positive
from medgen.solvers.linalg import batch_norm, operator_norm_bound, per_item
from medgen.solvers.proximal import project_box
from medgen.solvers.stopping import RelativeChange, State, StoppingRule, iterate

__all__ = [
    "TV_BOUNDARIES",
    "finite_differences",
    "finite_differences_adjoint",
    "tv_norm",
    "tv_prox",
    "TVPDHGSettings",
    "TVPDHG",
]

TV_BOUNDARIES = ("neumann", "circular")
_SPATIAL_DIMS = (1, 2, 3)


def _check_spatial(x: torch.Tensor, name: str, spatial_dims: int) -> None:
    check_tensor(x, name)
    check_choice(spatial_dims, "spatial_dims", _SPATIAL_DIMS)
    if x.ndim < spatial_dims + 1:
        raise ValueError(
            f"{name} must be (B, ..., *spatial) with {spatial_dims} spatial axes, got shape {tuple(x.shape)}."
        )


def finite_differences(x: torch.Tensor, spatial_dims: int = 2, boundary: str = "neumann") -> torch.Tensor:
    """Forward differences ``D x`` along each of the last ``spatial_dims`` axes.

    Args:
        x: tensor ``(B, ..., *spatial)``, real or complex.
        spatial_dims: number of trailing spatial axes (1, 2 or 3).
        boundary: ``"neumann"`` (zero difference at the last sample) or ``"circular"``.

    Returns:
        ``(B, spatial_dims, ..., *spatial)``: entry ``[:, a]`` is the difference along spatial axis ``a`` (in order).
    """
    _check_spatial(x, "x", spatial_dims)
    check_choice(boundary, "boundary", TV_BOUNDARIES)
    parts = []
    for axis in range(x.ndim - spatial_dims, x.ndim):
        if boundary == "circular":
            parts.append(torch.roll(x, -1, axis) - x)
        else:
            n = x.shape[axis]
            diff = x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1)
            parts.append(torch.cat([diff, torch.zeros_like(x.narrow(axis, 0, 1))], dim=axis))
    return torch.stack(parts, dim=1)


def finite_differences_adjoint(g: torch.Tensor, spatial_dims: int = 2, boundary: str = "neumann") -> torch.Tensor:
    """The adjoint ``D^H g`` of :func:`finite_differences` (minus the discrete divergence).

    Args:
        g: ``(B, spatial_dims, ..., *spatial)``.
        spatial_dims: as for :func:`finite_differences`.
        boundary: as for :func:`finite_differences`.

    Returns:
        ``(B, ..., *spatial)``.
    """
    _check_spatial(g, "g", spatial_dims)
    check_choice(boundary, "boundary", TV_BOUNDARIES)
    if g.shape[1] != spatial_dims:
        raise ValueError(f"g must have {spatial_dims} difference components along axis 1, got shape {tuple(g.shape)}.")
    out = None
    ndim = g.ndim - 1
    for index, axis in enumerate(range(ndim - spatial_dims, ndim)):
        p = g[:, index]
        if boundary == "circular":
            term = torch.roll(p, 1, axis) - p
        else:
            n = p.shape[axis]
            inner = p.narrow(axis, 0, n - 1)
            zero = torch.zeros_like(p.narrow(axis, 0, 1))
            term = torch.cat([zero, inner], dim=axis) - torch.cat([inner, zero], dim=axis)
        out = term if out is None else out + term
    return out


def _magnitude(g: torch.Tensor, spatial_dims: int, isotropic: bool) -> torch.Tensor:
    """Pointwise magnitude of differences ``g`` ``(B, d, ..., *spatial)``: coupled over components and channels
    (isotropic, keepdim) or elementwise (anisotropic)."""
    if not isotropic:
        return g.abs()
    dims = tuple(range(1, g.ndim - spatial_dims))
    return torch.sqrt(torch.sum(g.abs() ** 2, dim=dims, keepdim=True))


def tv_norm(
    x: torch.Tensor, spatial_dims: int = 2, isotropic: bool = True, boundary: str = "neumann"
) -> torch.Tensor:
    """Total variation of each item ``(B,)`` (see the module docstring for the definition).

    Args:
        x: tensor ``(B, ..., *spatial)``, real or complex.
        spatial_dims: number of trailing spatial axes.
        isotropic: isotropic (coupled) or anisotropic TV.
        boundary: ``"neumann"`` or ``"circular"`` differences.

    Returns:
        real tensor ``(B,)``.
    """
    magnitude = _magnitude(finite_differences(x, spatial_dims, boundary), spatial_dims, isotropic)
    return magnitude.reshape(x.shape[0], -1).sum(dim=1)


def _project_dual(p: torch.Tensor, radius: torch.Tensor, spatial_dims: int, isotropic: bool) -> torch.Tensor:
    """Project differences ``p`` onto ``{|p|_pointwise <= radius}`` (``radius`` broadcastable, may be 0)."""
    magnitude = _magnitude(p, spatial_dims, isotropic)
    return p * torch.clamp(radius / torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)), max=1.0)


def tv_prox(
    v: torch.Tensor,
    lam: float | torch.Tensor,
    spatial_dims: int = 2,
    max_iter: int = 100,
    tol: float = 1e-5,
    box: tuple[float, float] | None = None,
    isotropic: bool = True,
    boundary: str = "neumann",
) -> torch.Tensor:
    """Proximal map of TV: ``argmin_x 1/2 ||x - v||^2 + lam TV(x)``, optionally with ``x`` in ``box``.

    Solved on the dual by Beck & Teboulle's fast gradient projection (FGP, IEEE TIP 2009, with the box constraint of
    their constrained denoising): ``x = P_box(v - lam D^H p)`` with ``|p| <= 1`` pointwise, step ``1 / (4 d lam)``.
    Items are independent (per-item ``lam`` and stopping). Without a box this is the ROF problem scikit-image's
    ``denoise_tv_chambolle(v, weight=lam)`` solves.

    Args:
        v: images ``(B, ..., *spatial)``, real or complex (no box for complex).
        lam: TV weight ``>= 0``, a number or ``(B,)`` tensor (0 returns ``P_box(v)``).
        spatial_dims: number of trailing spatial axes (1, 2 or 3).
        max_iter: maximum FGP iterations (a few suffice as a prox inside another solver).
        tol: stop an item when the relative change of ``x`` is below this.
        box: optional ``(low, high)`` bounds.
        isotropic: isotropic (coupled) or anisotropic TV.
        boundary: ``"neumann"`` or ``"circular"`` differences.

    Returns:
        the denoised images, like ``v``.

    Raises:
        TypeError, ValueError: bad arguments, a box with complex ``v``.
    """
    _check_spatial(v, "v", spatial_dims)
    check_lam(lam)
    if isinstance(lam, str):
        raise ValueError(f"lam of tv_prox must be a value, got {lam!r}.")
    check_positive_int(max_iter, "max_iter")
    box = check_box(box)
    if box is not None and v.is_complex():
        raise TypeError(f"box {box} needs real images, got dtype {v.dtype}.")
    check_choice(boundary, "boundary", TV_BOUNDARIES)
    weight = per_item(lam, v)
    grad_weight = weight.unsqueeze(1)
    lipschitz = 4 * spatial_dims
    step = torch.where(grad_weight > 0, 1 / (lipschitz * torch.where(grad_weight > 0, grad_weight, 1.0)), 0.0)

    def primal(p: torch.Tensor) -> torch.Tensor:
        return project_box(v - weight * finite_differences_adjoint(p, spatial_dims, boundary), box)

    def fgp_step(state: State) -> State:
        x_r = primal(state["r"])
        p = _project_dual(state["r"] + step * finite_differences(x_r, spatial_dims, boundary), torch.ones_like(step),
                          spatial_dims, isotropic)
        t = state["t"]
        t_next = (1 + torch.sqrt(1 + 4 * t**2)) / 2
        r = p + per_item((t - 1) / t_next, p) * (p - state["p"])
        return {"x": primal(p), "p": p, "r": r, "t": t_next}

    zeros = torch.zeros_like(finite_differences(v, spatial_dims, boundary))
    state = {"x": primal(zeros), "p": zeros, "r": zeros, "t": torch.ones_like(weight.reshape(-1))}
    state, _, _ = iterate(fgp_step, state, max_iter, [RelativeChange(tol)])
    return state["x"]


@dataclass(frozen=True)
class TVPDHGSettings(SolverSettings):
    """Settings of :class:`TVPDHG` (the shared ones in :class:`~medgen.solvers.base.SolverSettings`).

    Attributes:
        lam: TV weight ``>= 0`` (a number, a ``(B,)`` tensor, or ``"discrepancy"`` / ``"oracle"`` to choose it; the
            search range multiplies ``max |A^H y|``).
        spatial_dims: 2 (images ``(B, ..., H, W)``) or 3 (volumes ``(B, ..., D, H, W)``); 1 also works.
        box: optional ``(low, high)`` constraint on ``x`` (real images only).
        isotropic: isotropic (default) or anisotropic TV.
        boundary: ``"neumann"`` (default) or ``"circular"`` differences.
        operator_norm: ``||A||`` if known (used as is); ``None``: estimated by power iteration, times 1.01.
        step_ratio: initial primal/dual step ratio ``tau / sigma`` on the normalised operator.
        adaptive_steps: rebalance ``tau / sigma`` from the primal and dual residuals (see :class:`TVPDHG`).
    """

    max_iter: int = 500
    tol: float = 1e-4
    lam: float | torch.Tensor | str = "discrepancy"
    spatial_dims: int = 2
    box: tuple[float, float] | None = None
    isotropic: bool = True
    boundary: str = "neumann"
    operator_norm: float | None = None
    step_ratio: float = 1.0
    adaptive_steps: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lam(self.lam)
        check_choice(self.spatial_dims, "spatial_dims", _SPATIAL_DIMS)
        object.__setattr__(self, "box", check_box(self.box))
        for name in ("isotropic", "adaptive_steps"):
            check_bool(getattr(self, name), name)
        check_choice(self.boundary, "boundary", TV_BOUNDARIES)
        check_positive(self.operator_norm, "operator_norm", optional=True)
        check_positive(self.step_ratio, "step_ratio")


# Goldstein et al.'s adaptive PDHG constants: initial adaptivity, its decay, and the residual-balance band
_ADAPT_ALPHA, _ADAPT_DECAY, _ADAPT_BAND = 0.5, 0.95, 1.5


class TVPDHG(Solver):
    """TV-regularised reconstruction ``argmin_x 1/2 ||A x - y||^2 + lam TV(x)`` (+ box) by PDHG (Chambolle-Pock).

    The saddle-point form uses ``K = [A / L_A; D / L_D]`` with ``L_A`` the (estimated) norm of ``A`` and
    ``L_D = sqrt(4 d)`` the bound on ``||D||``, so ``||K||^2 <= 2`` whatever the scale of ``A``, and the steps keep
    ``tau sigma = 0.98 / 2 < 1 / ||K||^2`` (Chambolle & Pock 2011, theta = 1), starting from
    ``tau / sigma = step_ratio``. Per iteration, with dual variables ``q`` (data) and ``p`` (differences)::

        x_new <- P_box(x - tau (A^H q / L_A + D^H p / L_D));   x_bar <- 2 x_new - x
        q <- (q + sigma (A x_bar - y) / L_A) / (1 + sigma / L_A^2)
        p <- project_{|p| <= lam L_D}(p + sigma D x_bar / L_D)

    With ``adaptive_steps`` the ratio ``tau / sigma`` is rebalanced per item from the primal and dual residuals
    (Goldstein, Li, Yuan, Esser & Baraniuk, "Adaptive primal-dual splitting methods", NeurIPS 2015, non-backtracking
    variant: the product ``tau sigma`` is kept and the adaptivity decays by 0.95 at every change, which keeps the
    convergence guarantee). The best fixed ratio differs by orders of magnitude between a large and a small ``lam``;
    the adaptive one needs no tuning. ``A x`` and ``A^H q`` are carried along, so an iteration costs one ``A`` and
    one ``A^H`` either way. ``L_A`` and the steps are per item. Stops on the relative change of ``x`` (``tol``) or at
    ``max_iter``.

    Example::

        solver = TVPDHG(ParallelBeamCT.padis(64, views=8, num_detectors=128), lam="discrepancy", box=(0, 1))
        x = solver(sinogram)            # solver.info.lam: the chosen lambda per item

    Args:
        operator: the forward operator ``A``.
        settings: fields of :class:`TVPDHGSettings`.
    """

    settings_class = TVPDHGSettings

    def _prepare(self, y: torch.Tensor, rhs: torch.Tensor, **problem: Any) -> dict[str, Any]:
        super()._prepare(y, rhs, **problem)
        settings = self.settings
        _check_spatial(rhs, "A^H y", settings.spatial_dims)
        if settings.box is not None and rhs.is_complex():
            raise TypeError(f"box {settings.box} needs real images, but A^H y is {rhs.dtype}.")
        return {"operator_norm": operator_norm_bound(self.operator, rhs, settings.operator_norm)}

    def _run(
        self,
        y: torch.Tensor,
        rhs: torch.Tensor,
        lam: torch.Tensor | None,
        x_init: torch.Tensor | None,
        rules: Sequence[StoppingRule],
        context: dict[str, Any],
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        s = self.settings
        d, boundary, box, isotropic = s.spatial_dims, s.boundary, s.box, s.isotropic
        norm_a_x = per_item(context["operator_norm"], rhs)
        norm_a_y = per_item(context["operator_norm"], y)
        norm_d = math.sqrt(4 * d)
        radius = (per_item(lam, rhs) * norm_d).unsqueeze(1)

        def dual_step(q: torch.Tensor, p: torch.Tensor, ka: torch.Tensor, kd: torch.Tensor, sigma: torch.Tensor):
            sigma_y = per_item(sigma, q)
            q = (q + sigma_y * (ka - y / norm_a_y)) / (1 + sigma_y / norm_a_y**2)
            p = _project_dual(p + per_item(sigma, p) * kd, radius, d, isotropic)
            return q, p

        def adjoint_k(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return self.operator.adjoint(q) / norm_a_x + finite_differences_adjoint(p, d, boundary) / norm_d

        def step(state: State) -> State:
            x, q, p, tau, sigma = state["x"], state["q"], state["p"], state["tau"], state["sigma"]
            x_new = project_box(x - per_item(tau, x) * state["kt_dual"], box)
            x_bar = 2 * x_new - x
            ka_bar = self.operator(x_bar) / norm_a_y
            q_new, p_new = dual_step(q, p, ka_bar, finite_differences(x_bar, d, boundary) / norm_d, sigma)
            kt_new = adjoint_k(q_new, p_new)
            ka_new = (ka_bar + state["ka"]) / 2  # A x_new / L_A by linearity, without another A
            new = {"x": x_new, "q": q_new, "p": p_new, "ka": ka_new, "kt_dual": kt_new, "tau": tau, "sigma": sigma,
                   "alpha": state["alpha"]}
            if s.adaptive_steps:
                new.update(self._balanced_steps(state, new, d, boundary, norm_d))
            return new

        x = project_box(torch.zeros_like(rhs) if x_init is None else x_init, box)
        batch = torch.ones_like(context["operator_norm"])
        sigma = batch * (0.99 / (s.step_ratio * math.sqrt(2)))
        ka = self.operator(x) / norm_a_y
        grad = finite_differences(x, d, boundary) / norm_d
        # a first dual step from x, so that the first primal step moves (zero duals would leave x where it is)
        q, p = dual_step(torch.zeros_like(y), torch.zeros_like(grad), ka, grad, sigma)
        state = {
            "x": x,
            "q": q,
            "p": p,
            "ka": ka,
            "kt_dual": adjoint_k(q, p),
            "tau": batch * (0.99 * s.step_ratio / math.sqrt(2)),
            "sigma": sigma,
            "alpha": batch * _ADAPT_ALPHA,
        }
        return iterate(step, state, s.max_iter, rules)

    @staticmethod
    def _balanced_steps(old: State, new: State, d: int, boundary: str, norm_d: float) -> State:
        """Goldstein et al.'s residual balancing: grow ``tau`` (shrink ``sigma``) when the primal residual dominates,
        the reverse when the dual one does; ``tau sigma`` is unchanged and the adaptivity ``alpha`` decays."""
        tau, sigma, alpha = old["tau"], old["sigma"], old["alpha"]
        primal = (old["x"] - new["x"]) / per_item(tau, new["x"]) - (old["kt_dual"] - new["kt_dual"])
        dual_data = (old["q"] - new["q"]) / per_item(sigma, new["q"]) - (old["ka"] - new["ka"])
        dual_diff = (old["p"] - new["p"]) / per_item(sigma, new["p"]) - (
            finite_differences(old["x"] - new["x"], d, boundary) / norm_d
        )
        primal_norm = batch_norm(primal)
        dual_norm = torch.sqrt(batch_norm(dual_data) ** 2 + batch_norm(dual_diff) ** 2)
        grow = primal_norm > _ADAPT_BAND * dual_norm
        shrink = primal_norm * _ADAPT_BAND < dual_norm
        factor = torch.where(grow, 1 / (1 - alpha), torch.where(shrink, 1 - alpha, torch.ones_like(alpha)))
        return {"tau": tau * factor, "sigma": sigma / factor, "alpha": torch.where(grow | shrink, alpha * _ADAPT_DECAY,
                                                                                     alpha)}
