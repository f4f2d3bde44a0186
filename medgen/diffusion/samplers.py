"""Step rules of the samplers, built from predictor and corrector primitives (Song et al., ICLR 2021).

Primitives (:func:`reverse_diffusion_predictor`, :func:`euler_maruyama_predictor`, :func:`langevin_corrector`): one
short function of ``(x, t, sde, score_fn)`` returning ``(x, x_mean)`` -- the new sample and its noise-free part -- or
``(x, x_mean, score)`` with ``return_score=True``. Randomness comes from ``noise`` (given) or from ``generator``
(drawn after the score evaluation, layout-preserving: :func:`normal_like`); the noise enters through
``sde.project`` (the identity for VE/VP, HFS-SDE's high-frequency projector). A ``guidance(x, score)`` hook adds a
term to the (projected) score in the update only (it does not change the corrector's step size).

Step rules, one short function each over ``(prior, state, schedule point, consistency, generator)``:
:func:`pc_step` (TPDM, HFS-SDE and their VP/VE baselines), :func:`langevin_step` (PaDIS' DPS and Langevin solvers),
:func:`padis_pc_step` and :func:`discrete_step` (DDPM/DDIM for WDM and SDM, over the levels of :func:`discrete_walk`).
Each calls the consistency hooks of :mod:`medgen.diffusion.consistency` at the same places.

Example (TPDM's loop: corrector, then predictor, at the same ``t``; the score of ``N(0, 1)`` data stands in for
the network, so the result is a sample of ``N(0, 1)``)::

    import torch
    from medgen.diffusion.samplers import langevin_corrector, reverse_diffusion_predictor
    from medgen.diffusion.sde import VESDE

    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=100)

    def score_fn(x, t):  # grad log p_t for data ~ N(0, 1): -x / (1 + sigma(t)^2)
        return -x / (1 + sde.sigma(t) ** 2).reshape(-1, 1, 1, 1)

    g = torch.Generator().manual_seed(0)
    x = sde.prior_sampling((4, 1, 16, 16), generator=g)
    for t in torch.linspace(1.0, 1e-5, sde.N):
        x, x_mean = langevin_corrector(x, t, sde, score_fn, snr=0.16, generator=g)
        x, x_mean = reverse_diffusion_predictor(x, t, sde, score_fn, generator=g)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_choice, check_int, check_number
from medgen.diffusion.consistency import DataConsistency, StepContext
from medgen.diffusion.gaussian import GaussianDiffusion
from medgen.diffusion.priors import Prior, as_noise_model, tweedie
from medgen.diffusion.sde import SDE, ScoreFn, as_time, batch_broadcast
from medgen.diffusion.views import PlaneView

__all__ = [
    "Guidance",
    "normal_like",
    "score_function",
    "PCSettings",
    "PREDICTORS",
    "pc_step",
    "perpendicular_step",
    "langevin_step",
    "padis_pc_step",
    "PADIS_DATA_STEP_CAP",
    "PADIS_DATA_STEP_RATE",
    "DISCRETE_SAMPLERS",
    "repaint_schedule",
    "discrete_walk",
    "discrete_step",
    "reverse_diffusion_predictor",
    "euler_maruyama_predictor",
    "ddim_update",
    "ddim_predictor",
    "ddim_step",
    "langevin_corrector",
    "NORM_REDUCTIONS",
]

Guidance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``guidance(x, score) -> term`` added to the score in a step (e.g. ``-lam * g_dc``), shaped like ``x``."""

NORM_REDUCTIONS = ("batch_mean", "per_sample")


def normal_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.randn_like(x)`` drawn from ``generator``.

    It keeps ``x``'s memory layout and fills it in memory order (on the CPU a non-contiguous tensor also goes through
    another sampling kernel), so on a permuted slice stack its values differ from ``randn(x.shape)``; TPDM draws its
    noise this way on permuted volumes. For a contiguous ``x`` it equals ``randn(x.shape)``.
    """
    return torch.empty_like(x).normal_(generator=generator)


def _noise(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is None:
        return normal_like(x, generator)
    if noise.shape != x.shape:
        raise ValueError(f"noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}.")
    return noise


def _finish(
    x: torch.Tensor, x_mean: torch.Tensor, score: torch.Tensor, return_score: bool
) -> tuple[torch.Tensor, ...]:
    return (x, x_mean, score) if return_score else (x, x_mean)


def reverse_diffusion_predictor(
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: SDE,
    score_fn: ScoreFn,
    *,
    probability_flow: bool = False,
    guidance: Guidance | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_score: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Reverse-diffusion predictor: ``x_mean = x - rev_f``, ``x = x_mean + rev_G * project(z)``.

    ``rev_f, rev_G`` come from ``sde.reverse(score_fn).discretize`` (for the VE-SDE: ``x_mean = x + G^2 s`` with
    ``G^2 = sigma_i^2 - sigma_{i-1}^2``).

    Args:
        x: current sample ``(B, C, *spatial)``.
        t: continuous time(s) ``(B,)`` or a scalar.
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)``.
        probability_flow: discretise the probability-flow ODE instead (no noise, half the score term).
        guidance: optional ``guidance(x, score)`` added to the score.
        noise: the standard normal draw ``z`` (shaped like ``x``); drawn from ``generator`` if ``None``.
        generator: random generator on ``x``'s device.
        return_score: also return the score of the input.

    Returns:
        ``(x, x_mean)`` or ``(x, x_mean, score)``.
    """
    t = as_time(t, x)
    score = score_fn(x, t)
    effective = score if guidance is None else score + guidance(x, score)
    rev_f, rev_g = sde.reverse(score_fn, probability_flow).discretize(x, t, score=effective)
    z = _noise(x, noise, generator)
    x_mean = x - rev_f
    x_next = x_mean + batch_broadcast(rev_g, x) * sde.project(z)
    return _finish(x_next, x_mean, score, return_score)


def euler_maruyama_predictor(
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: SDE,
    score_fn: ScoreFn,
    *,
    probability_flow: bool = False,
    guidance: Guidance | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_score: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Euler-Maruyama step of the reverse SDE with ``dt = -T / N``: ``x_mean = x + drift dt``,
    ``x = x_mean + g sqrt(|dt|) project(z)``.

    For :class:`~medgen.diffusion.sde.HFSSDE` with ``guidance = -g_dc`` this is HFS-SDE's predictor:
    ``x_mean = x + (beta P x / 2 + beta (s - g_dc)) / N``, ``x = x_mean + sqrt(beta / N) P z``.
    score_sde draws ``z`` before the score, HFS-SDE after; here it is after (equivalent unless ``score_fn`` itself
    draws from the same generator).

    Args:
        x: current sample ``(B, C, *spatial)``.
        t: continuous time(s) ``(B,)`` or a scalar.
        sde: the forward SDE (``sde.N`` sets ``dt``).
        score_fn: ``score_fn(x, t)``.
        probability_flow: integrate the probability-flow ODE instead.
        guidance: optional ``guidance(x, score)`` added to the score.
        noise: the standard normal draw ``z``; drawn from ``generator`` if ``None``.
        generator: random generator on ``x``'s device.
        return_score: also return the score of the input.

    Returns:
        ``(x, x_mean)`` or ``(x, x_mean, score)``.
    """
    t = as_time(t, x)
    dt = -sde.T / sde.N
    score = score_fn(x, t)
    effective = score if guidance is None else score + guidance(x, score)
    drift, diffusion = sde.reverse(score_fn, probability_flow).sde(x, t, score=effective)
    z = _noise(x, noise, generator)
    x_mean = x + drift * dt
    x_next = x_mean + batch_broadcast(diffusion, x) * math.sqrt(-dt) * sde.project(z)
    return _finish(x_next, x_mean, score, return_score)


def ddim_update(
    x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float, eta: float,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM's update of a VE state ``x = x0 + sigma eps`` (Song et al., ICLR 2021, eq. 12 with ``alpha = 1``).

    ``x_mean = x0 + sqrt(sigma'^2 - c^2) eps`` and ``x' = x_mean + c z`` with ``c = eta sigma' sqrt(1 - sigma'^2 /
    sigma^2)``: ``eta = 1`` draws from ``p(x' | x, x0)`` (ancestral sampling), ``eta = 0`` is deterministic (the
    probability-flow ODE's exponential integrator). Unlike the reverse-diffusion predictor, whose added noise
    ``sqrt(sigma^2 - sigma'^2)`` is close to ``sigma`` when the levels are far apart, the new state carries exactly
    ``sigma'`` of noise at any step count.

    Args:
        x0: denoised estimate ``(B, ...)`` (possibly corrected by a data-consistency term).
        eps: the state's noise as the network predicts it, ``(x - D(x)) / sigma``, shaped like ``x0``.
        sigma, sigma_next: the noise std of ``x`` and of the new state (scalars or ``(B,)``; ``sigma' = 0``: ``x0``).
        eta: stochasticity in ``[0, 1]``.
        noise: the standard normal draw ``z``, shaped like ``x0``.

    Returns:
        ``(x', x_mean)``.
    """
    sigma, sigma_next = (batch_broadcast(torch.as_tensor(v, dtype=x0.real.dtype, device=x0.device), x0)
                         for v in (sigma, sigma_next))
    c = eta * sigma_next * torch.sqrt((1 - (sigma_next / sigma) ** 2).clamp(min=0))
    x_mean = x0 + torch.sqrt((sigma_next**2 - c**2).clamp(min=0)) * eps
    return x_mean + c * noise, x_mean


def ddim_predictor(
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: SDE,
    score_fn: ScoreFn,
    *,
    eta: float = 1.0,
    denoised: Callable[[torch.Tensor], torch.Tensor] | None = None,
    guidance: Guidance | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    return_score: bool = False,
) -> tuple[torch.Tensor, ...]:
    """DDIM predictor of a VE-SDE (:func:`ddim_update`) between the levels ``sde.step_sigmas(t)``.

    ``x0 = x + sigma^2 s`` from the (guided) score. At ``eta = 1`` its mean equals the reverse-diffusion predictor's
    and only the added noise differs (``sigma' sqrt(1 - sigma'^2 / sigma^2)`` instead of ``sqrt(sigma^2 - sigma'^2)``),
    which is what keeps few-step sampling on the noise schedule.

    Args:
        x: current sample ``(B, C, *spatial)``.
        t: continuous time(s) ``(B,)`` or a scalar.
        sde: a :class:`~medgen.diffusion.sde.VESDE`.
        score_fn: ``score_fn(x, t)``.
        eta: stochasticity in ``[0, 1]`` (1: ancestral, 0: deterministic).
        denoised: optional ``x0 -> x0'`` applied to the denoised estimate before the update (a consistency term's
            :meth:`~medgen.diffusion.consistency.DataConsistency.denoised`: DDNM, DDS); the noise stays the network's.
        guidance, noise, generator, return_score: as in :func:`reverse_diffusion_predictor`.

    Returns:
        ``(x, x_mean)`` or ``(x, x_mean, score)``.
    """
    if not hasattr(sde, "step_sigmas"):
        raise TypeError(f"the ddim predictor needs a VE-SDE with a sigma table (VESDE), got {type(sde).__name__}.")
    t = as_time(t, x)
    sigma, sigma_next = sde.step_sigmas(t)
    score = score_fn(x, t)
    effective = score if guidance is None else score + guidance(x, score)
    eps = -batch_broadcast(sigma, x) * effective
    x0 = x - batch_broadcast(sigma, x) * eps
    if denoised is not None:
        with torch.no_grad():
            x0 = denoised(x0.detach())
    x_next, x_mean = ddim_update(x0, eps, sigma, sigma_next, eta, _noise(x, noise, generator))
    return _finish(x_next, x_mean, score, return_score)


def langevin_corrector(
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: SDE,
    score_fn: ScoreFn,
    snr: float,
    *,
    n_steps: int = 1,
    norm_reduction: str = "batch_mean",
    guidance: Guidance | None = None,
    noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    return_score: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Langevin corrector: ``n_steps`` of ``x_mean = x + eps g``, ``x = x_mean + sqrt(2 eps) project(z)``.

    ``g = project(score)`` and ``eps = 2 alpha (snr |z| / |g|)^2`` with ``alpha = sde.langevin_alpha(t)`` (1 for VE,
    ``1 - beta_i`` for VP/HFS) and ``|z|`` measured BEFORE the projection (HFS-SDE's order). The norms are over all
    non-batch axes of each item and then

    - ``norm_reduction="batch_mean"`` (score_sde/TPDM/HFS-SDE): averaged over the batch, so one step size is shared by
      the whole minibatch and depends on its composition (the minibatch size matters for exact parity);
    - ``norm_reduction="per_sample"``: each item gets its own step size (independent of the batch).

    Args:
        x: current sample ``(B, C, *spatial)``.
        t: continuous time(s) ``(B,)`` or a scalar.
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)``.
        snr: target signal-to-noise ratio (TPDM 0.16, HFS-SDE 0.16/0.32).
        n_steps: Langevin steps per call.
        norm_reduction: ``"batch_mean"`` or ``"per_sample"``.
        guidance: optional ``guidance(x, g)`` added to the projected score in the update (not in the step size).
        noise: the standard normal draw(s): a tensor for ``n_steps=1`` or a sequence of ``n_steps`` tensors;
            drawn from ``generator`` if ``None``.
        generator: random generator on ``x``'s device.
        return_score: also return ``score_fn`` at the input of the last Langevin step (the call's input for
            ``n_steps=1``).

    Returns:
        ``(x, x_mean)`` or ``(x, x_mean, score)``.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}.")
    if norm_reduction not in NORM_REDUCTIONS:
        raise ValueError(f"norm_reduction must be one of {NORM_REDUCTIONS}, got {norm_reduction!r}.")
    if isinstance(noise, torch.Tensor):
        noise = [noise]
    if noise is not None and len(noise) != n_steps:
        raise ValueError(f"noise must hold n_steps = {n_steps} tensors, got {len(noise)}.")
    t = as_time(t, x)
    alpha = sde.langevin_alpha(t)
    x_mean = x
    for i in range(n_steps):
        score = score_fn(x, t)
        grad = sde.project(score)
        z = _noise(x, None if noise is None else noise[i], generator)
        grad_norm = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=-1)
        noise_norm = torch.linalg.vector_norm(z.reshape(z.shape[0], -1), dim=-1)
        if norm_reduction == "batch_mean":
            grad_norm, noise_norm = grad_norm.mean(), noise_norm.mean()
        step = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
        direction = grad if guidance is None else grad + guidance(x, grad)
        x_mean = x + batch_broadcast(step, x) * direction
        x = x_mean + batch_broadcast(torch.sqrt(step * 2), x) * sde.project(z)
    return _finish(x, x_mean, score, return_score)


# ------------------------------------------------------------------------------------------- step rules
# Each step rule is one short function over (prior, state, schedule point, consistency, generator). The consistency
# hooks (:mod:`medgen.diffusion.consistency`) are called at the same places by every rule: ``guidance`` inside the
# update, ``denoised`` on the denoised estimate, ``apply`` after the update.


def score_function(prior: Prior, sde: SDE, generator: torch.Generator | None = None) -> ScoreFn:
    """``score_fn(x, t) = prior.score(x, sde.noise_level(t))``, the prior rescaled to the SDE's noise model."""
    prior = as_noise_model(prior, sde.noise_model)
    return lambda x, t: prior.score(x, sde.noise_level(t), generator=generator)


def _guidance(consistency: DataConsistency | None) -> Guidance | None:
    if consistency is None or type(consistency).guidance is DataConsistency.guidance:
        return None
    return consistency.guidance


PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ddim")


@dataclass(frozen=True)
class PCSettings:
    """Settings of :func:`pc_step`.

    Attributes:
        snr: Langevin signal-to-noise ratio (TPDM 0.16; HFS-SDE 0.16, accelerated 0.32).
        corrector_steps: Langevin steps before the predictor (0: predictor only).
        predictor: ``"reverse_diffusion"`` (score_sde/TPDM, VE baselines), ``"euler_maruyama"`` (HFS-SDE, VP) or
            ``"ddim"`` (VE only: :func:`ddim_predictor`, stays on the schedule with few steps).
        norm_reduction: Langevin norms ``"batch_mean"`` (score_sde/TPDM/HFS-SDE: one step size per minibatch) or
            ``"per_sample"``.
        eta: ``"ddim"``'s stochasticity in ``[0, 1]`` (1: ancestral, 0: deterministic).
    """

    snr: float = 0.16
    corrector_steps: int = 1
    predictor: str = "reverse_diffusion"
    norm_reduction: str = "batch_mean"
    eta: float = 1.0

    def __post_init__(self) -> None:
        check_number(self.snr, "snr", 0.0, open_low=True)
        check_int(self.corrector_steps, "corrector_steps", 0)
        check_choice(self.predictor, "predictor", PREDICTORS)
        check_choice(self.norm_reduction, "norm_reduction", NORM_REDUCTIONS)
        check_number(self.eta, "eta", 0.0, 1.0)


def pc_step(
    prior: Prior,
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: SDE,
    settings: PCSettings = PCSettings(),
    *,
    corrector_consistency: DataConsistency | None = None,
    predictor_consistency: DataConsistency | None = None,
    noise: Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One predictor-corrector step at ``t``: the Langevin corrector, then the predictor (TPDM's and HFS-SDE's order).

    After each sub-step its consistency term is applied to ``x`` and ``x_mean`` with the sub-step's input ``x_in``,
    the denoised estimate ``x0_hat = (x_in + sigma^2 s(x_in)) / m`` from the score the sub-step used (through the
    network, under ``torch.enable_grad``, when the term needs the graph: DPS) and ``sigma = sde.noise_level(t)``;
    ``noise_to_level`` draws from the marginal at the sub-step's output time (``t`` after the corrector,
    ``t - T / N`` after the predictor) for RePaint. The ``"ddim"`` predictor updates from the term's
    :meth:`~medgen.diffusion.consistency.DataConsistency.denoised` estimate (DDNM, DDS), computed once per sub-step.

    Args:
        prior: the prior (rescaled to the SDE's noise model).
        x: state ``(B, C, *spatial)``.
        t: continuous time(s), scalar or ``(B,)``.
        sde: the SDE (VE for TPDM, HFS/VP/VE for HFS-SDE).
        settings: :class:`PCSettings`.
        corrector_consistency: term after (and inside) the corrector.
        predictor_consistency: term after (and inside) the predictor.
        noise: the standard normal draws of the sub-steps (one tensor per Langevin step, then the predictor's);
            drawn from ``generator`` (layout-preserving, :func:`normal_like`) after each score otherwise.
        generator: random generator on ``x``'s device.

    Returns:
        ``(x, x_mean)`` of the predictor, detached.
    """
    t = as_time(t, x)
    score_fn = score_function(prior, sde, generator)
    sigma = sde.noise_level(t)
    sub_steps: list[tuple[str, DataConsistency | None]] = []
    if settings.corrector_steps:
        sub_steps.append(("corrector", corrector_consistency))
    sub_steps.append(("predictor", predictor_consistency))
    draws = list(noise) if noise is not None else None
    x = x.detach()
    for kind, consistency in sub_steps:
        needs_graph = consistency is not None and consistency.requires_graph
        with torch.enable_grad() if needs_graph else torch.no_grad():
            x_in = x.detach().requires_grad_(needs_graph)
            common: dict[str, Any] = {"guidance": _guidance(consistency), "generator": generator, "return_score": True}
            if kind == "corrector":
                count = settings.corrector_steps
                z = None if draws is None else [draws.pop(0) for _ in range(count)]
                x, x_mean, score = langevin_corrector(
                    x_in, t, sde, score_fn, settings.snr, n_steps=count, norm_reduction=settings.norm_reduction,
                    noise=z, **common,
                )
            else:
                z = None if draws is None else draws.pop(0)
                if settings.predictor == "ddim":
                    hook = None if consistency is None else consistency.denoised
                    x, x_mean, score = ddim_predictor(x_in, t, sde, score_fn, eta=settings.eta, denoised=hook, noise=z,
                                                      **common)
                else:
                    predictor = reverse_diffusion_predictor if settings.predictor == "reverse_diffusion" else (
                        euler_maruyama_predictor
                    )
                    x, x_mean, score = predictor(x_in, t, sde, score_fn, noise=z, **common)
            if consistency is not None:
                x0_hat = tweedie(x_in, score, sigma, sde.noise_model)
                level = t if kind == "corrector" else (t - sde.T / sde.N).clamp(min=0)
                context = StepContext(
                    x_in=x_in, x0_hat=x0_hat, sigma=sigma, generator=generator,
                    noise_to_level=lambda x0, level=level: _noised(sde, x0, level, generator),
                )
                x, x_mean = consistency.apply(context, x, x_mean)
        x, x_mean = x.detach(), x_mean.detach()
    return x, x_mean


def perpendicular_step(
    priors: Sequence[Prior],
    view: PlaneView,
    x: torch.Tensor,
    step: int,
    t: torch.Tensor,
    sde: SDE,
    settings: PCSettings,
    terms: Sequence[DataConsistency] | None = None,
    keep_noise: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One TPDM step (Lee et al., ICCV 2023): :func:`pc_step` on every slice of one plane of the volumes ``x``.

    The view decides whether ``step`` is primary (:meth:`~medgen.diffusion.views.PlaneView.is_primary`); that plane's
    slices go through :func:`pc_step` with that plane's prior in minibatches of one volume, and on primary steps with
    the volume's consistency term restricted to the minibatch (after the corrector and after the predictor).

    Args:
        priors: the ``(primary, auxiliary)`` VE priors.
        view: the planes, their schedule and the minibatch size.
        x: volumes ``(B, D0, D1, D2)``.
        step: the step's index (it decides the plane).
        t: the step's SDE time (0-d).
        sde: the VE-SDE.
        settings: the predictor-corrector settings.
        terms: one consistency term per volume acting on its primary slices ``(S, 1, R, C)`` (``None``: none).
        keep_noise: return the predictor's noisy ``x`` (else its mean ``x_mean``).
        generator: the sampler's generator.

    Returns:
        the volumes after the step ``(B, D0, D1, D2)``.
    """
    primary = view.is_primary(step, generator, x.device)
    plane = view.plane(primary)
    volumes = []
    for b in range(x.shape[0]):
        stack = view.to_stack(x[b], plane)
        new = []
        for chunk in view.chunks(stack.shape[0]):
            term = terms[b].restrict(chunk) if primary and terms else None
            x_new, x_mean = pc_step(
                priors[0 if primary else 1], stack[chunk], t, sde, settings,
                corrector_consistency=term, predictor_consistency=term, generator=generator,
            )
            new.append(x_new if keep_noise else x_mean)
        volumes.append(view.from_stack(torch.cat(new, dim=0), plane))
    return view.assemble(volumes)


def _noised(sde: SDE, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A draw of ``p_t(x_t | x_0)``: the marginal mean plus its std times ``project(z)``."""
    mean, std = sde.marginal_prob(x0, t)
    return mean + batch_broadcast(std, x0) * sde.project(normal_like(x0, generator))


def langevin_step(
    prior: Prior,
    x: torch.Tensor,
    sigma: float,
    alpha: float,
    *,
    consistency: DataConsistency | None = None,
    step_size: float = 1.0,
    add_noise: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One Langevin step at a fixed noise level (PaDIS' inner loop): ``x <- x + alpha/2 s(x) + sqrt(alpha) z``.

    ``s = (D' - x) / sigma^2`` with ``D' = consistency.denoised(D(x, sigma))``; then ``consistency.apply`` with the
    step's input, ``D`` (through the network for DPS) and ``step_size``. PaDIS' ``dps`` solver is this step with
    ``alpha = sigma^2 / 2`` and :class:`~medgen.diffusion.consistency.DPS`; its ``langevin`` solver uses
    ``alpha = sigma^2`` with a residual-normalised gradient (``step_size = min(40, 200 sigma)``) or DDNM's
    :class:`~medgen.diffusion.consistency.RangeNullSpace`.

    Args:
        prior: a VE prior (e.g. :class:`~medgen.diffusion.priors.PatchPrior`).
        x: state.
        sigma: noise level.
        alpha: Langevin step.
        consistency: data-consistency term.
        step_size: passed to the term.
        add_noise: draw ``z`` (PaDIS: not at the last level).
        generator: random generator (noise, and the prior's own randomness).

    Returns:
        the new state, detached.
    """

    def update(x: torch.Tensor, denoised: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        new = x + alpha / 2 * (used - x) / sigma**2
        return new + math.sqrt(alpha) * normal_like(new, generator) if add_noise else new

    return _denoiser_step(prior, x, sigma, update, consistency, step_size, generator)


def _denoiser_step(
    prior: Prior,
    x: torch.Tensor,
    sigma: float,
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    consistency: DataConsistency | None,
    step_size: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``update(x, D(x, sigma), consistency.denoised(D(x, sigma)))``, then ``consistency.apply`` with the step's
    input and ``D`` (through the network when the term needs the graph: DPS); the frame of the denoiser step rules."""
    prior = as_noise_model(prior, "ve")
    needs_graph = consistency is not None and consistency.requires_graph
    x_in = x.detach()
    with torch.enable_grad() if needs_graph else torch.no_grad():
        x_in.requires_grad_(needs_graph)
        denoised = prior.denoise(x_in, sigma, generator=generator)
    with torch.no_grad():
        used = denoised if consistency is None else consistency.denoised(denoised.detach())
        new = update(x_in.detach(), denoised.detach(), used)
    if consistency is not None:
        context = StepContext(x_in=x_in, x0_hat=denoised, sigma=sigma, step_size=step_size, generator=generator)
        with torch.enable_grad() if needs_graph else torch.no_grad():
            (new,) = consistency.apply(context, new)
    return new.detach()


def ddim_step(
    prior: Prior,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    eta: float = 1.0,
    *,
    consistency: DataConsistency | None = None,
    step_size: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step of a VE denoiser prior from ``sigma`` to ``sigma_next`` (:func:`ddim_update`), one network call.

    The DDIM update to ``sigma_next`` from ``x0 = consistency.denoised(D(x, sigma))`` and the network's noise
    ``(x - D) / sigma`` (DDNM's and DDS's rule when the term corrects ``x0``), then ``consistency.apply`` with the
    step's input and ``D`` (through the network for DPS), as :func:`langevin_step` does.

    Args:
        prior: a VE prior (e.g. :class:`~medgen.diffusion.priors.PatchPrior`).
        x: state.
        sigma: noise level of ``x``.
        sigma_next: noise level after the step (0: the denoised estimate).
        eta: stochasticity in ``[0, 1]`` (1: ancestral, 0: deterministic).
        consistency: data-consistency term.
        step_size: passed to the term.
        generator: random generator (noise, and the prior's own randomness).

    Returns:
        the new state, detached.
    """

    def update(x: torch.Tensor, denoised: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        return ddim_update(used, (x - denoised) / sigma, sigma, sigma_next, eta, normal_like(used, generator))[0]

    return _denoiser_step(prior, x, sigma, update, consistency, step_size, generator)


PADIS_DATA_STEP_CAP = 40.0
PADIS_DATA_STEP_RATE = 200.0
"""PaDIS' Langevin/PC data step size factor ``min(40, 200 sigma)`` (hard-coded in its inverse_nodist.py)."""


def _grouped(t: torch.Tensor, group_size: int) -> torch.Tensor:
    """Norms of consecutive groups of ``group_size`` items of ``t``, broadcastable to ``t`` (one group: 0-d)."""
    if group_size >= t.shape[0]:
        return torch.linalg.vector_norm(t)
    norms = torch.linalg.vector_norm(t.reshape(t.shape[0] // group_size, -1), dim=1)
    return norms.repeat_interleave(group_size).view(-1, *[1] * (t.ndim - 1))


def padis_pc_step(
    prior: Prior,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    snr: float,
    *,
    consistency: DataConsistency | None = None,
    group_size: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PaDIS' predictor-corrector step (``pc_sampling``) between two noise levels, official formulas kept.

    Predictor ``x <- x + (sigma^2 - sigma'^2) s + sqrt(sigma^2 - sigma'^2) z``, data step (``step_size = 1``);
    corrector with the SAME patch offsets, ``D`` at ``sigma`` but ``s = (D - x) / sigma'^2``,
    ``eps = 2 snr ||z|| / ||s||`` (not squared, PaDIS' quirk), ``x <- x + eps s + sqrt(2 eps) z``; data step with
    ``step_size = min(40, 200 sigma)``. Norms are over groups of ``group_size`` canvases (PaDIS: one image).

    Returns:
        the new state.
    """
    offsets = prior.draw_offsets(x.shape[0], generator, x.device) if hasattr(prior, "draw_offsets") else None
    extra = {} if offsets is None else {"offsets": offsets}
    with torch.no_grad():
        score = (prior.denoise(x, sigma, generator=generator, **extra) - x) / sigma**2
        x = x + (sigma**2 - sigma_next**2) * score
        x = x + math.sqrt(sigma**2 - sigma_next**2) * normal_like(x, generator)
        if consistency is not None:
            (x,) = consistency.apply(StepContext(x_in=x, sigma=sigma, generator=generator), x)
        z = normal_like(x, generator)
        score = (prior.denoise(x, sigma, generator=generator, **extra) - x) / sigma_next**2
        eps = 2 * snr * _grouped(z, group_size) / _grouped(score, group_size)
        x = x + eps * score
        x = x + torch.sqrt(2 * eps) * z
        if consistency is not None:
            step = min(PADIS_DATA_STEP_CAP, sigma * PADIS_DATA_STEP_RATE)
            (x,) = consistency.apply(StepContext(x_in=x, sigma=sigma, step_size=step, generator=generator), x)
    return x


DISCRETE_SAMPLERS = ("ddpm", "ddim")


def repaint_schedule(num_steps: int, jump_length: int = 1, jump_n_sample: int = 1) -> list[int]:
    """The noise levels a RePaint sampler visits (Lugmayr et al., CVPR 2022), from ``num_steps - 1`` down to ``-1``.

    Level ``l`` means ``x_l`` of the (respaced) process and ``-1`` the clean sample. Going down one level is a reverse
    diffusion step at ``t = l``; going up one level (a "resampling jump") re-noises with ``q(x_{l+1} | x_l)``.
    Every ``jump_length`` levels (counted from 0) the sampler goes back up ``jump_length`` levels, ``jump_n_sample - 1``
    times, so each such segment is denoised ``jump_n_sample`` times. ``jump_n_sample = 1`` gives the plain descent
    ``num_steps - 1, ..., 0, -1``.

    Args:
        num_steps: number of steps ``T`` of the process.
        jump_length: levels per jump (RePaint: 10).
        jump_n_sample: passes over each jumped segment (RePaint: 10; 1 disables jumps).

    Returns:
        the list of levels, starting at ``num_steps - 1`` and ending at ``-1``.

    Raises:
        ValueError: a count is not a positive integer.
    """
    for name, value in (("num_steps", num_steps), ("jump_length", jump_length), ("jump_n_sample", jump_n_sample)):
        check_int(value, name, 1)
    remaining_jumps = {j: jump_n_sample - 1 for j in range(0, num_steps - jump_length, jump_length)}
    level, levels = num_steps - 1, [num_steps - 1]
    while level >= 0:
        level -= 1
        levels.append(level)
        if remaining_jumps.get(level, 0) > 0:
            remaining_jumps[level] -= 1
            for _ in range(jump_length):
                level += 1
                levels.append(level)
    return levels



def discrete_walk(
    diffusion: GaussianDiffusion,
    reverse: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    levels: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[int, Callable[[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]]]:
    """The number of steps and the :class:`~medgen.diffusion.loop.SamplingLoop` step of a discrete sampler.

    Step ``i`` takes the state ``{"x": x_l}`` from level ``levels[i] = l`` to ``levels[i + 1] = l'``: down, to
    ``reverse(x, t, l')`` with ``t = l`` for every item (e.g. :func:`discrete_step`'s ``sample``); up, by a RePaint
    jump (:meth:`~medgen.diffusion.gaussian.GaussianDiffusion.q_step`, noise from ``generator``).

    Args:
        diffusion: the (respaced) process.
        reverse: ``reverse(x_t, t, target) -> x_{t-1}``, ``t`` integer timesteps ``(B,)``, ``target`` the level
            reached (``-1``: the clean sample).
        levels: the levels visited (:func:`repaint_schedule`); ``None``: the plain descent ``T - 1, ..., 0, -1``.
        generator: random generator on the state's device.
    """
    levels = list(range(diffusion.num_timesteps - 1, -2, -1)) if levels is None else levels
    moves = list(zip(levels[:-1], levels[1:]))

    def step(i: int, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        (level, target), x = moves[i], state["x"]
        if target > level:  # a RePaint resampling jump
            return {"x": diffusion.q_step(x, level, generator)}
        return {"x": reverse(x, torch.full((x.shape[0],), level, dtype=torch.long, device=x.device), target)}

    return len(moves), step


def discrete_step(
    diffusion: GaussianDiffusion,
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    sampler: str = "ddpm",
    eta: float = 0.0,
    consistency: DataConsistency | None = None,
    clip_denoised: bool = False,
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One reverse step of a discrete process (ancestral DDPM ``p_sample`` or DDIM), with RePaint-style consistency.

    Before the step, ``consistency.apply`` runs with ``noise_to_level = q_sample(., t)`` (the known state noised to
    ``x_t``'s level); the model is called first, then the step's noise is drawn (guided-diffusion's order).

    Args:
        diffusion: the (respaced) process.
        model: ``model(x_t, model_t)``.
        x: ``x_t``.
        t: integer timesteps ``(B,)`` of the respaced process.
        sampler: ``"ddpm"`` or ``"ddim"``.
        eta: DDIM's noise scale.
        consistency: e.g. :class:`~medgen.diffusion.consistency.RePaint`.
        clip_denoised: clamp ``x0`` to ``[-1, 1]``.
        denoised_fn: applied to the ``x0`` prediction first (WDM's image-space clipping).
        generator: random generator.

    Returns:
        dict with ``sample`` (``x_{t-1}``) and ``pred_xstart`` (the ``x0`` prediction used).
    """
    if consistency is not None:
        noise_to_level = lambda x0: diffusion.q_sample(x0, t, generator=generator)  # noqa: E731
        (x,) = consistency.apply(StepContext(x_in=x, generator=generator, noise_to_level=noise_to_level), x)
    kwargs = {"clip_denoised": clip_denoised, "denoised_fn": denoised_fn, "generator": generator}
    if sampler == "ddim":
        return diffusion.ddim_sample(model, x, t, eta=eta, **kwargs)
    return diffusion.p_sample(model, x, t, **kwargs)
