"""Training losses of the five methods.

- :func:`score_matching_loss`: denoising score matching for :class:`~medgen.diffusion.sde.VESDE`,
  :class:`~medgen.diffusion.sde.VPSDE` (TPDM/score_sde) and :class:`~medgen.diffusion.sde.HFSSDE` (only the
  high-frequency part is noised and scored).
- :func:`wavelet_diffusion_loss`: WDM's per-subband MSE of an x0-predicting DDPM on Haar wavelet coefficients.
- :func:`pachify`, :func:`edm_loss`, :func:`patch_edm_loss`: EDM's loss and PaDIS's random patches with positions.
- :func:`hybrid_loss`: guided-diffusion's ``MSE + VLB`` (improved DDPM with learned-range variances; SDM/CTCA), with
  :func:`normal_kl`, :func:`discretized_gaussian_log_likelihood` and :func:`vb_terms_bpd`.

Randomness comes from an optional ``torch.Generator`` (drawn in the official order, so a generator seeded like the
official global RNG reproduces its draws) or from explicit ``t``/``noise`` arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from medgen.diffusion.gaussian import GaussianDiffusion
from medgen.diffusion.sde import SDE, ScoreFn, batch_broadcast
from medgen.transforms.wavelet import haar_dwt3d

__all__ = [
    "score_matching_loss",
    "wavelet_diffusion_loss",
    "pachify",
    "edm_loss",
    "patch_edm_loss",
    "normal_kl",
    "approx_standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "vb_terms_bpd",
    "hybrid_loss",
]


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------------- score matching
def score_matching_loss(
    sde: SDE,
    score_fn: ScoreFn,
    x0: torch.Tensor,
    *,
    eps: float = 1e-5,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduce_mean: bool = True,
    likelihood_weighting: bool = False,
) -> torch.Tensor:
    """Denoising score matching ``E_t E_z || std * P s(x_t, t) + P z ||^2`` (score_sde's continuous loss).

    ``t ~ U(eps, T)`` (drawn first) and ``z ~ N(0, I)``; ``x_t = mean(x0, t) + std(t) P z`` with ``P = sde.project``
    (identity for VE/VP, the high-frequency projector for HFS-SDE, whose loss is
    ``mean((std * Mhat(score) + Mhat(z))^2)``). With ``likelihood_weighting`` the per-item loss is
    ``|| P s + P z / std ||^2 * g(t)^2`` instead.

    ``score_fn`` maps ``(x_t, t)`` to the score and carries the network's time convention: score_sde's continuous VE
    and HFS-SDE feed the marginal std (``sigma(t)`` for VE) to the network and use its output as the score.

    Args:
        sde: the forward SDE.
        score_fn: ``score_fn(x_t, t)`` with continuous ``t`` ``(B,)``.
        x0: clean batch ``(B, C, *spatial)``.
        eps: smallest time.
        t: times ``(B,)`` to use instead of drawing them.
        noise: the normal draw ``z`` (shaped like ``x0``) to use instead of drawing it.
        generator: random generator on ``x0``'s device.
        reduce_mean: mean over the non-batch axes (``False``: half the sum, as score_sde).
        likelihood_weighting: use the likelihood weighting of Song et al. (2021b).

    Returns:
        scalar loss (mean over the batch).
    """
    batch = x0.shape[0]
    if t is None:
        t = torch.rand(batch, generator=generator, device=x0.device, dtype=x0.dtype) * (sde.T - eps) + eps
    if noise is None:
        noise = _randn(x0.shape, x0, generator)
    mean, std = sde.marginal_prob(x0, t)
    projected_noise = sde.project(noise)
    x_t = mean + batch_broadcast(std, x0) * projected_noise
    score = sde.project(score_fn(x_t, t))
    if likelihood_weighting:
        g2 = sde.sde(torch.zeros_like(x0), t)[1] ** 2
        losses = torch.square(score + projected_noise / batch_broadcast(std, x0))
    else:
        losses = torch.square(score * batch_broadcast(std, x0) + projected_noise)
    losses = losses.reshape(batch, -1)
    losses = losses.mean(dim=-1) if reduce_mean else 0.5 * losses.sum(dim=-1)
    if likelihood_weighting:
        losses = losses * g2
    return losses.mean()


# ---------------------------------------------------------------------------------------------------- WDM
def wavelet_diffusion_loss(
    diffusion: GaussianDiffusion,
    model: Callable[..., torch.Tensor],
    x_start: torch.Tensor,
    t: torch.Tensor,
    *,
    lll_scale: float = 3.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """WDM's training loss: MSE between the Haar subbands of ``x_start`` and the network's ``x0`` prediction.

    ``x0 = DWT(x_start)`` with LLL divided by ``lll_scale``; the noise is drawn in IMAGE space at full resolution
    and transformed WITHOUT the LLL scaling (so it stays i.i.d. N(0, 1)); ``x_t = q_sample(x0, t, DWT(noise))``;
    ``mse_wav[c] = mean over batch and voxels of (x0 - model(x_t, t))^2`` for each subband channel ``c``;
    ``loss = mse_wav.mean()`` (equal subband weights, as WDM's training loop).

    Args:
        diffusion: an ``"start_x"`` :class:`~medgen.diffusion.gaussian.GaussianDiffusion`.
        model: ``model(x_t, model_t, **model_kwargs)`` on ``(B, 8 C, D/2, H/2, W/2)`` coefficients.
        x_start: image batch ``(B, C, D, H, W)`` (WDM: ``C = 1``, values in ``[-1, 1]``).
        t: integer timesteps ``(B,)``.
        lll_scale: WDM's LLL divisor (3).
        noise: image-space normal draw shaped like ``x_start``; drawn from ``generator`` if ``None``.
        generator: random generator on ``x_start``'s device.
        model_kwargs: extra network inputs.

    Returns:
        dict with ``loss`` (scalar), ``mse_wav`` (per-channel, ``(8 C,)``), ``x_t``, ``target`` and ``model_output``.
    """
    if diffusion.model_mean_type != "start_x":
        raise ValueError(
            f"WDM's loss needs an x0-predicting diffusion, got model_mean_type={diffusion.model_mean_type!r}."
        )
    target = haar_dwt3d(x_start, lll_scale=lll_scale)
    if noise is None:
        noise = _randn(x_start.shape, x_start, generator)
    x_t = diffusion.q_sample(target, t, noise=haar_dwt3d(noise))
    output = model(x_t, diffusion.model_timesteps(t), **(model_kwargs or {}))
    if output.shape != target.shape:
        raise ValueError(
            f"model output must be shaped like the coefficients {tuple(target.shape)}, got {tuple(output.shape)}."
        )
    mse_wav = torch.square(target - output).flatten(2).mean(dim=2).mean(dim=0)
    return {"loss": mse_wav.mean(), "mse_wav": mse_wav, "x_t": x_t, "target": target, "model_output": output}


# ---------------------------------------------------------------------------------------------------- EDM / PaDIS
def pachify(
    images: torch.Tensor, patch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PaDIS's random square patches with positional channels (``Patch_EDMLoss.pachify``).

    One patch per image at a uniformly random top-left corner ``(i, j)`` (``i`` drawn first; no draw when the patch
    is the whole image); positions from :func:`medgen.networks.songunet.patch_position_channels` normalised by the
    (already padded) image height.

    Args:
        images: ``(B, C, H, W)`` batch (PaDIS pads it with zeros beforehand).
        patch_size: patch side ``<= min(H, W)``.
        generator: random generator for the corners (on ``images``' device).

    Returns:
        ``(patches (B, C, p, p), positions (B, 2, p, p), i (B,), j (B,))``.
    """
    from medgen.networks.songunet import patch_position_channels  # the one definition of PaDIS's positions

    b, _, h, w = images.shape
    if not 1 <= patch_size <= min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}], got {patch_size}.")
    if patch_size == h and patch_size == w:
        i = torch.zeros(b, dtype=torch.long, device=images.device)
        j = torch.zeros(b, dtype=torch.long, device=images.device)
    else:
        i = torch.randint(0, h - patch_size + 1, (b,), generator=generator, device=images.device)
        j = torch.randint(0, w - patch_size + 1, (b,), generator=generator, device=images.device)
    rows = (torch.arange(patch_size, device=images.device)[None, :] + i[:, None])[:, None, :, None]
    cols = (torch.arange(patch_size, device=images.device)[None, :] + j[:, None])[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    patches = images[batch, channel, rows, cols]
    positions = patch_position_channels(i, j, patch_size, patch_size, h, dtype=images.dtype)
    return patches, positions, i, j


def edm_loss(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM's loss ``lambda(sigma) (D(y + sigma n; sigma) - y)^2`` with ``ln sigma ~ N(p_mean, p_std^2)``.

    ``lambda = (sigma^2 + sd^2) / (sigma sd)^2``; ``sigma`` is drawn first (shape ``(B, 1, ..., 1)``), then ``n``.

    Args:
        denoiser: ``denoiser(x_noisy, sigma)`` -> denoised estimate (sigma in data units, ``(B, 1, ..., 1)``).
        images: clean batch ``(B, C, *spatial)``.
        p_mean, p_std: log-normal noise-level distribution.
        sigma_data: data standard deviation of the preconditioning.
        sigma: noise levels to use instead of drawing them (``(B,)`` or ``(B, 1, ..., 1)``).
        noise: the standard normal ``n`` to use instead of drawing it.
        generator: random generator on ``images``' device.

    Returns:
        the UNREDUCED per-element loss shaped like ``images`` (as EDM; the training loop sums/averages it).
    """
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    if sigma is None:
        sigma = (_randn(shape, images, generator) * p_std + p_mean).exp()
    else:
        sigma = torch.as_tensor(sigma, device=images.device, dtype=images.dtype).reshape(shape)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if noise is None:
        noise = _randn(images.shape, images, generator)
    denoised = denoiser(images + noise * sigma, sigma)
    return weight * (denoised - images) ** 2


def patch_edm_loss(
    net: Callable[..., torch.Tensor],
    images: torch.Tensor,
    patch_size: int,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    class_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PaDIS's ``Patch_EDMLoss``: :func:`pachify` then :func:`edm_loss` with ``net(x, sigma, x_pos=positions)``.

    Args:
        net: e.g. :class:`medgen.networks.songunet.PatchEDMPrecond`, called as
            ``net(x, sigma, x_pos=..., class_labels=...)``.
        images: zero-padded clean batch ``(B, C, H, W)``.
        patch_size: patch side.
        p_mean, p_std, sigma_data: as :func:`edm_loss`.
        class_labels: optional labels passed to ``net``.
        generator: random generator (corners, then sigma, then noise).

    Returns:
        unreduced loss ``(B, C, patch_size, patch_size)``.
    """
    patches, positions, _, _ = pachify(images, patch_size, generator)
    return edm_loss(
        lambda x, sigma: net(x, sigma, x_pos=positions, class_labels=class_labels),
        patches,
        p_mean=p_mean,
        p_std=p_std,
        sigma_data=sigma_data,
        generator=generator,
    )


# ---------------------------------------------------------------------------------------------------- improved DDPM
def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)))`` in nats (broadcasting)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF used by guided-diffusion (error below ~3e-4)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor, bin_width: float = 2.0 / 255.0
) -> torch.Tensor:
    """Log-likelihood of data in ``[-1, 1]`` discretised into bins of ``bin_width`` (8-bit: ``2/255``) under a Gaussian.

    Each value's probability is the Gaussian mass of its bin ``[x - w/2, x + w/2]``; the edge bins extend to
    ``-inf`` (``x < -0.999``) and ``+inf`` (``x > 0.999``). Uses :func:`approx_standard_normal_cdf` and clamps the
    masses at ``1e-12`` as guided-diffusion does.

    Args:
        x: targets, scaled to ``[-1, 1]``.
        means: Gaussian means, same shape.
        log_scales: Gaussian log standard deviations, same shape.
        bin_width: width of one quantisation bin.

    Returns:
        elementwise log-probabilities (nats).
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + bin_width / 2))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - bin_width / 2))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vb_terms_bpd(
    diffusion: GaussianDiffusion,
    model_output: torch.Tensor,
    x_start: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    clip_denoised: bool = False,
) -> torch.Tensor:
    """One term of the variational bound in bits per dimension, per batch item ``(B,)``.

    ``KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` for ``t > 0`` and the discretised decoder NLL
    ``-log p(x_0 | x_1)`` at ``t == 0``, both averaged over the non-batch axes and divided by ``ln 2``.

    Args:
        diffusion: the process.
        model_output: the network output at ``(x_t, t)`` (``2 C`` channels for learned variances).
        x_start, x_t: ``(B, C, *spatial)``.
        t: integer timesteps ``(B,)``.
        clip_denoised: clamp the ``x0`` prediction to ``[-1, 1]``.
    """
    true_mean, _, true_log_variance = diffusion.q_posterior_mean_variance(x_start, x_t, t)
    out = diffusion.p_mean_variance(lambda *args, **kwargs: model_output, x_t, t, clip_denoised=clip_denoised)
    kl = normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])
    kl = kl.flatten(1).mean(dim=1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x_start, out["mean"], 0.5 * out["log_variance"])
    nll = nll.flatten(1).mean(dim=1) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def hybrid_loss(
    diffusion: GaussianDiffusion,
    model: Callable[..., torch.Tensor],
    x_start: torch.Tensor,
    t: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict[str, Any] | None = None,
    rescale_vb: bool = False,
) -> dict[str, torch.Tensor]:
    """guided-diffusion's ``training_losses`` for ``LossType.MSE``/``RESCALED_MSE``: ``mse + vb`` per batch item.

    ``mse`` is the mean squared error of the network's mean prediction (noise, ``x_0`` or posterior mean per
    ``diffusion.model_mean_type``); with a learned variance, ``vb`` is :func:`vb_terms_bpd` computed with the mean
    output DETACHED, so the bound only trains the variance (Nichol & Dhariwal's ``L_hybrid``;
    ``rescale_vb`` multiplies it by ``T / 1000``, guided-diffusion's ``RESCALED_MSE``). SDM/CTCA use
    ``model_var_type="learned_range"`` without rescaling.

    Args:
        diffusion: the process.
        model: ``model(x_t, model_t, **model_kwargs)``.
        x_start: clean batch ``(B, C, *spatial)``.
        t: integer timesteps ``(B,)``.
        noise: the normal draw shaped like ``x_start``; drawn from ``generator`` if ``None``.
        generator: random generator on ``x_start``'s device.
        model_kwargs: extra network inputs.
        rescale_vb: scale ``vb`` by ``num_timesteps / 1000``.

    Returns:
        dict with per-item ``loss``, ``mse`` and (learned variances) ``vb``, each ``(B,)``.
    """
    if noise is None:
        noise = _randn(x_start.shape, x_start, generator)
    x_t = diffusion.q_sample(x_start, t, noise=noise)
    output = model(x_t, diffusion.model_timesteps(t), **(model_kwargs or {}))
    terms: dict[str, torch.Tensor] = {}
    channels = x_start.shape[1]
    if diffusion.model_var_type in ("learned", "learned_range"):
        if output.shape != (x_start.shape[0], 2 * channels, *x_start.shape[2:]):
            raise ValueError(
                f"a learned-variance model must output {2 * channels} channels, got shape {tuple(output.shape)}."
            )
        output, var_values = torch.split(output, channels, dim=1)
        frozen = torch.cat([output.detach(), var_values], dim=1)
        terms["vb"] = vb_terms_bpd(diffusion, frozen, x_start, x_t, t)
        if rescale_vb:
            terms["vb"] = terms["vb"] * (diffusion.num_timesteps / 1000.0)
    if diffusion.model_mean_type == "epsilon":
        target = noise
    elif diffusion.model_mean_type == "start_x":
        target = x_start
    else:
        target = diffusion.q_posterior_mean_variance(x_start, x_t, t)[0]
    terms["mse"] = torch.square(target - output).flatten(1).mean(dim=1)
    terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
    return terms
