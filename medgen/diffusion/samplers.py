"""Predictor and corrector steps of predictor-corrector (PC) sampling (Song et al., ICLR 2021).

Each step is one short function of ``(x, t, sde, score_fn)`` returning ``(x, x_mean)`` -- the new sample and its
noise-free part -- or ``(x, x_mean, score)`` with ``return_score=True``, where ``score`` is ``score_fn`` at the step's
input (TPDM's DPS uses it for ``x0_hat``). There is no hidden state: randomness comes from ``noise`` (given) or from
``generator`` (drawn after the score evaluation), and the noise enters through ``sde.project`` (the identity for
VE/VP, HFS-SDE's high-frequency projector for :class:`~medgen.diffusion.sde.HFSSDE`).

A ``guidance(x, score)`` hook returns a term added to the (projected) score in the update only, e.g. HFS-SDE's
norm-matched data-consistency gradient (:func:`medgen.diffusion.guidance.hfs_data_consistency`); it does not change
the corrector's step size.

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

import torch

from medgen.diffusion.sde import SDE, ScoreFn, as_time, batch_broadcast

__all__ = [
    "Guidance",
    "reverse_diffusion_predictor",
    "euler_maruyama_predictor",
    "langevin_corrector",
    "NORM_REDUCTIONS",
]

Guidance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``guidance(x, score) -> term`` added to the score in a step (e.g. ``-lam * g_dc``), shaped like ``x``."""

NORM_REDUCTIONS = ("batch_mean", "per_sample")


def _noise(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is None:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
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
