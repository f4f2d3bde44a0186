"""Priors: one contract ``D(x, sigma)`` over every network kind medgen loads, with the score derived from it.

A :class:`Prior` is a thin adapter over a network. Its contract (EDM's ``D(x; sigma)``, Karras et al. 2022):

- :meth:`Prior.denoise` ``(x, sigma) -> x0_hat``, the estimate of ``E[x_0 | x]``;
- :meth:`Prior.score` ``(x, sigma) -> grad_x log p(x)``; priors whose network predicts one of the two derive the other
  (Tweedie: ``score = (m D - x) / sigma^2``).

``sigma`` is the noise standard deviation in the prior's :attr:`~Prior.noise_model`:

- ``"ve"``: ``x = x0 + sigma n`` (NCSN++/TPDM, EDM/PaDIS), ``m = 1``;
- ``"vp"``: ``x = sqrt(1 - sigma^2) x0 + sigma n`` (DDPM, HFS-SDE), ``m = sqrt(1 - sigma^2)``.

A sampler written for one noise model uses a prior of the other through :func:`as_noise_model` (the state is scaled
by ``m``), so e.g. a MONAI ``DiffusionModelUNet`` trained as a DDPM (:class:`EpsilonPrior`) drives TPDM's VE sampler.
``sigma`` is passed to the network as the sampler gives it (a float or a per-item ``(B,)`` tensor).

Adapters: :class:`ScorePrior` (score networks: NCSN++, HFS-SDE's DDPM U-Net), :class:`DenoiserPrior` (EDM-
preconditioned denoisers), :class:`EpsilonPrior` (epsilon-prediction U-Nets under a DDPM schedule: guided U-Net, SDM
U-Net, MONAI ``DiffusionModelUNet``), :class:`ClassifierFreeGuidance` (a wrapper), and :class:`PatchPrior` (PaDIS:
a whole-canvas denoiser from a patch network with positional channels and random patch offsets).

Example (the exact prior of ``N(0.5, 0.3^2)`` data stands in for a network)::

    import torch
    from medgen.diffusion.priors import ScorePrior, as_noise_model

    prior = ScorePrior(lambda x, sigma: -(x - 0.5) / (0.09 + sigma.view(-1, 1, 1, 1) ** 2))
    x = torch.randn(2, 1, 8, 8)
    x0 = prior.denoise(x, torch.tensor([1.0, 2.0]))          # Tweedie: x + sigma^2 score
    vp = as_noise_model(prior, "vp")                          # the same prior for a VP sampler
"""

from __future__ import annotations

import math
from abc import ABC
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medgen.checks import check_callable, check_choice, check_int
from medgen.diffusion.chunked import ChunkedNetwork, chunked_map
from medgen.diffusion.sde import batch_broadcast
from medgen.networks.checkpoint import unwrap_network
from medgen.networks.songunet import patch_position_channels

__all__ = [
    "NOISE_MODELS",
    "PATCH_MODES",
    "Prior",
    "ScorePrior",
    "DenoiserPrior",
    "EpsilonPrior",
    "ClassifierFreeGuidance",
    "GuidedNetwork",
    "PatchPrior",
    "as_noise_model",
    "as_prior",
    "prior_pair",
    "classifier_free_guidance",
    "mean_coefficient",
    "tweedie",
]

NOISE_MODELS = ("ve", "vp")
PATCH_MODES = ("random", "overlap")


def _per_item(sigma: Any, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a tensor on ``x``'s device and dtype, broadcastable to ``x`` (a float stays 0-d)."""
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    return batch_broadcast(sigma, x)


def mean_coefficient(sigma: torch.Tensor, noise_model: str) -> torch.Tensor:
    """``m(sigma)`` of ``x = m x0 + sigma n``: 1 (VE) or ``sqrt(1 - sigma^2)`` (VP)."""
    return torch.ones_like(sigma) if noise_model == "ve" else torch.sqrt(1.0 - sigma**2)


def tweedie(x: torch.Tensor, score: torch.Tensor, sigma: Any, noise_model: str = "ve") -> torch.Tensor:
    """Tweedie's estimate ``x0_hat = (x + sigma^2 score) / m(sigma)`` of ``E[x_0 | x]`` (TPDM: ``x + sigma^2 s``)."""
    s = _per_item(sigma, x)
    return (x + s**2 * score) / mean_coefficient(s, noise_model)


class Prior(ABC):
    """The denoiser contract ``D(x, sigma)`` of a diffusion prior; subclasses override :meth:`denoise` or :meth:`score`.

    Attributes:
        noise_model: ``"ve"`` or ``"vp"`` (see the module docstring).
        network: the wrapped network (``None`` for priors without one); read for device, dtype and noise range.
    """

    noise_model: str = "ve"
    network: Any = None

    def denoise(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x0_hat = (x + sigma^2 score) / m``: Tweedie's estimate from :meth:`score`.

        Args:
            x: noisy batch ``(B, C, *spatial)``.
            sigma: noise std in :attr:`noise_model` units, a float or ``(B,)``.
            generator: randomness of stochastic priors (e.g. :class:`PatchPrior`'s offsets).
        """
        if type(self).score is Prior.score:
            raise TypeError(f"{type(self).__name__} must override denoise() or score().")
        return tweedie(x, self.score(x, sigma, generator=generator), sigma, self.noise_model)

    def score(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(m D(x, sigma) - x) / sigma^2`` from :meth:`denoise`."""
        if type(self).denoise is Prior.denoise:
            raise TypeError(f"{type(self).__name__} must override denoise() or score().")
        s = _per_item(sigma, x)
        return (mean_coefficient(s, self.noise_model) * self.denoise(x, sigma, generator=generator) - x) / s**2

    @property
    def sigma_range(self) -> tuple[float, float] | None:
        """``(sigma_min, sigma_max)`` the network was trained on, from its weights when it has a ``sigmas`` buffer
        (score_sde's NCSN++/DDPM checkpoints carry one), else from its ``sigma_min``/``sigma_max`` attributes
        (``None`` when unknown or unbounded)."""
        module = unwrap_network(self.network) if self.network is not None else None
        sigmas = getattr(module, "sigmas", None)
        if isinstance(sigmas, torch.Tensor) and sigmas.ndim == 1 and sigmas.numel() > 1:
            # the buffer is exp(linspace(log min, log max)): round away its last-digit error (378.0000000000001)
            return float(f"{float(sigmas.min()):.12g}"), float(f"{float(sigmas.max()):.12g}")
        low, high = getattr(module, "sigma_min", None), getattr(module, "sigma_max", None)
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and math.isfinite(high) and high > low:
            return float(low), float(high)
        return None

    def __repr__(self) -> str:
        name = type(unwrap_network(self.network)).__name__ if self.network is not None else None
        return f"{type(self).__name__}(network={name}, noise_model={self.noise_model!r})"


class _NetworkPrior(Prior):
    """A prior that calls ``network(x, sigma)`` (shared constructor of :class:`ScorePrior` and :class:`DenoiserPrior`)."""

    def __init__(self, network: Callable[..., torch.Tensor], noise_model: str = "ve") -> None:
        if not callable(network):
            raise TypeError(f"network must be callable as network(x, sigma), got {type(network).__name__}.")
        check_choice(noise_model, "noise_model", NOISE_MODELS)
        self.network = network
        self.noise_model = noise_model


class ScorePrior(_NetworkPrior):
    """A score network ``network(x, sigma) -> grad log p_sigma(x)`` (NCSN++ under the VE-SDE, HFS-SDE's DDPM U-Net).

    Args:
        network: the score network, called as ``network(x, sigma)``.
        noise_model: ``"ve"`` (``sigma`` = VE std, NCSN++) or ``"vp"`` (``sigma`` = VP marginal std, HFS-SDE).
    """

    def score(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.network(x, sigma)


class DenoiserPrior(_NetworkPrior):
    """A denoiser ``network(x, sigma) -> x0_hat`` (EDM's preconditioned networks).

    Args:
        network: the denoiser.
        noise_model: ``"ve"`` (EDM) or ``"vp"``.
    """

    def denoise(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.network(x, sigma)


class EpsilonPrior(Prior):
    """An epsilon-prediction network under a discrete DDPM schedule, as a VP prior.

    ``D(x, sigma) = (x - sigma eps(x, t)) / sqrt(1 - sigma^2)`` with ``t`` the timestep whose
    ``sqrt(1 - alphabar_t)`` is closest to ``sigma`` (``timesteps="nearest"``, for networks trained on integer
    timesteps) or the log-linear interpolation between the two neighbours (``"continuous"``, a float timestep).
    ``t`` is the network's time input: for a respaced :class:`~medgen.diffusion.gaussian.GaussianDiffusion` the
    ORIGINAL process's timestep (and ``1000 / T`` times it with ``rescale_timesteps``), as its samplers pass it.
    Extra output channels (learned variance) are dropped.

    Example (a user's MONAI network trained as a DDPM, as the prior of TPDM's VE sampler: see
    ``tests/inferers/test_compositions.py`` for trained weights)::

        import torch
        from monai.networks.nets import DiffusionModelUNet
        from monai.networks.schedulers import DDPMScheduler
        from medgen.diffusion.priors import EpsilonPrior, as_noise_model
        from medgen.inferers.perpendicular import PerpendicularSliceInferer

        unet = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8),
                                  attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8).eval()
        prior = EpsilonPrior(unet, DDPMScheduler(num_train_timesteps=1000))
        x0_hat = as_noise_model(prior, "ve").denoise(torch.randn(2, 1, 16, 16) * 5, 5.0)   # VE units
        inferer = PerpendicularSliceInferer("uncond", steps=4, batch_size=16, seed=0, progress=False)
        volume = inferer((16, 16, 16), prior)    # the VE range of the DDPM schedule: sigma in [0.01, 157]

        from medgen.inferers.patch import PatchDiffusionInferer   # the same prior in PaDIS' solver: one "patch"
        from medgen.physics.blur import Blur                      # covering the image (mode="overlap", pad 1)
        blur = Blur.gaussian(5, 1.0)
        padis = PatchDiffusionInferer(blur, patch_size=16, pad=1, patch_mode="overlap", num_steps=3, inner_iterations=1,
                                      solver="langevin", seed=0, progress=False)
        image = padis(blur(torch.rand(1, 1, 16, 16)), as_noise_model(prior, "ve"))    # (1, 1, 16, 16)

    Args:
        network: ``network(x, t, *args, **kwargs)`` predicting the noise in its first ``C`` channels (guided/SDM
            U-Nets, MONAI ``DiffusionModelUNet``).
        alphas_cumprod: ``alphabar_t`` ``(T,)``, or an object holding it (a medgen
            :class:`~medgen.diffusion.gaussian.GaussianDiffusion`, respaced or not, or a MONAI scheduler).
        timesteps: ``"nearest"`` or ``"continuous"``.
        network_args: further positional network inputs (e.g. a condition); ``network_kwargs`` likewise.
    """

    noise_model = "vp"

    def __init__(
        self,
        network: Callable[..., torch.Tensor],
        alphas_cumprod: torch.Tensor | Any,
        timesteps: str = "nearest",
        network_args: Sequence[Any] = (),
        network_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not callable(network):
            raise TypeError(f"network must be callable as network(x, t), got {type(network).__name__}.")
        check_choice(timesteps, "timesteps", ("nearest", "continuous"))
        table = getattr(alphas_cumprod, "alphas_cumprod", alphas_cumprod)
        if not isinstance(table, torch.Tensor) or table.ndim != 1 or table.numel() < 2:
            raise TypeError(
                "alphas_cumprod must be a 1-D tensor (T,) or a GaussianDiffusion / MONAI scheduler holding one, got "
                f"{type(alphas_cumprod).__name__}."
            )
        self.network = network
        self.timesteps = timesteps
        self.network_args = tuple(network_args)
        self.network_kwargs = dict(network_kwargs or {})
        self.stds = torch.sqrt(1.0 - table.detach().double().cpu())  # increasing with t
        # the network's time input at each table entry (a respaced process's original timesteps)
        model_timesteps = getattr(alphas_cumprod, "model_timesteps", None)
        positions = torch.arange(table.numel())
        times = model_timesteps(positions) if callable(model_timesteps) else positions
        self.network_times = times.detach().double().cpu()
        self._integer_times = not times.is_floating_point()

    @property
    def sigma_range(self) -> tuple[float, float]:
        return float(self.stds[0]), float(self.stds[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's time input (float64, fractional for ``"continuous"``) for each noise std ``sigma`` ``(B,)``."""
        log_std = torch.log(self.stds.to(sigma.device))
        log_sigma = torch.log(sigma.double().clamp(float(self.stds[0]), float(self.stds[-1])))
        upper = torch.searchsorted(log_std, log_sigma).clamp(1, len(log_std) - 1)
        lower = upper - 1
        frac = (log_sigma - log_std[lower]) / (log_std[upper] - log_std[lower])
        times = self.network_times.to(sigma.device)
        if self.timesteps == "nearest":
            return times[torch.where(frac < 0.5, lower, upper)]
        return times[lower] + frac * (times[upper] - times[lower])

    def denoise(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        s = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).expand(x.shape[0])
        t = self.timestep(s)
        t = t.to(torch.long) if self.timesteps == "nearest" and self._integer_times else t.to(x.dtype)
        eps = self.network(x, t, *self.network_args, **self.network_kwargs)[:, : x.shape[1]]
        s = batch_broadcast(s, x)
        return (x - s * eps) / torch.sqrt(1.0 - s**2)


def classifier_free_guidance(
    conditional: torch.Tensor, unconditional: torch.Tensor, scale: float, channels: int | None = None
) -> torch.Tensor:
    """Classifier-free guidance ``u + s (c - u)`` on the first ``channels`` channels (the rest stays conditional).

    SDM (and the CTCA model) guide only the noise prediction ``[:, :channels]`` and keep the learned-variance channels
    of the conditional output; ``scale = 1`` returns the conditional output.

    Args:
        conditional: output with the condition ``(B, C_out, *spatial)``.
        unconditional: output with the null condition, same shape.
        scale: guidance scale ``s``.
        channels: number of leading channels to guide (``None``: all).

    Returns:
        a new tensor shaped like ``conditional``.
    """
    if conditional.shape != unconditional.shape:
        raise ValueError(
            f"conditional and unconditional must have the same shape, got {tuple(conditional.shape)} and "
            f"{tuple(unconditional.shape)}."
        )
    channels = conditional.shape[1] if channels is None else channels
    if not 1 <= channels <= conditional.shape[1]:
        raise ValueError(f"channels must be in [1, {conditional.shape[1]}], got {channels}.")
    out = conditional.clone()
    c, u = conditional[:, :channels], unconditional[:, :channels]
    out[:, :channels] = u + scale * (c - u)
    return out


class ClassifierFreeGuidance(Prior):
    """``D = D_u + s (D_c - D_u)`` of a conditional and an unconditional prior (both of one noise model).

    Args:
        conditional: the prior with the condition.
        unconditional: the prior with the null condition.
        scale: guidance scale ``s`` (1: the conditional prior).
    """

    def __init__(self, conditional: Prior, unconditional: Prior, scale: float) -> None:
        if not isinstance(conditional, Prior) or not isinstance(unconditional, Prior):
            raise TypeError("conditional and unconditional must be Priors.")
        if conditional.noise_model != unconditional.noise_model:
            raise ValueError(
                f"conditional ({conditional.noise_model}) and unconditional ({unconditional.noise_model}) priors must "
                "share a noise model."
            )
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}.")
        self.conditional, self.unconditional, self.scale = conditional, unconditional, float(scale)
        self.noise_model = conditional.noise_model
        self.network = conditional.network

    def denoise(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.conditional.denoise(x, sigma, generator=generator)
        if self.scale == 1.0:
            return c
        return classifier_free_guidance(c, self.unconditional.denoise(x, sigma, generator=generator), self.scale)


class GuidedNetwork:
    """Classifier-free guidance as a wrapper of a conditional network's raw output (SDM, the CTCA model).

    ``guided(x, t, *conditions) = u + s (c - u)`` on the first ``channels`` output channels (the learned-variance
    channels stay conditional), with ``c = network(x, t, *conditions)`` and ``u`` the same call with the conditions
    zeroed, except those ``keep`` marks; ``scale = 1`` makes one call.

    Args:
        network: ``network(x, t, *conditions)``.
        scale: guidance scale ``s``.
        keep: per condition, keep it in the unconditional pass (CTCA: the reference is dropped too, so all False).
        channels: guided leading channels (``None``: the channels of ``x``).
    """

    def __init__(
        self, network: Callable[..., torch.Tensor], scale: float, keep: Sequence[bool] = (), channels: int | None = None
    ) -> None:
        check_callable(network, "network")
        self.network, self.scale, self.keep, self.channels = network, float(scale), tuple(keep), channels

    def __call__(self, x: torch.Tensor, t: torch.Tensor, *conditions: torch.Tensor) -> torch.Tensor:
        conditional = self.network(x, t, *conditions)
        if self.scale == 1.0:
            return conditional
        keep = self.keep + (False,) * (len(conditions) - len(self.keep))
        null = [c if k else torch.zeros_like(c) for c, k in zip(conditions, keep)]
        channels = x.shape[1] if self.channels is None else self.channels
        return classifier_free_guidance(conditional, self.network(x, t, *null), self.scale, channels)


class _NoiseModelAdapter(Prior):
    """``prior`` seen by a sampler of the other noise model: the state is rescaled by ``m`` (see module docstring)."""

    def __init__(self, prior: Prior, noise_model: str) -> None:
        self.prior, self.noise_model, self.network = prior, noise_model, prior.network

    def _inner(self, x: torch.Tensor, sigma: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x', sigma', scale)`` in the inner prior's model, with ``score = scale * inner score``."""
        s = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if self.noise_model == "ve":  # VE state, VP prior: x_vp = x / sqrt(1 + sigma^2)
            a = torch.rsqrt(1.0 + s**2)
            inner_sigma = s * a
        else:  # VP state, VE prior: x_ve = x / sqrt(1 - sigma^2)
            a = 1.0 / torch.sqrt(1.0 - s**2)
            inner_sigma = s * a
        a_x = batch_broadcast(a, x)
        return x * a_x, inner_sigma, a_x

    def denoise(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        inner_x, inner_sigma, _ = self._inner(x, sigma)
        return self.prior.denoise(inner_x, inner_sigma, generator=generator)

    def score(self, x: torch.Tensor, sigma: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
        inner_x, inner_sigma, scale = self._inner(x, sigma)
        return scale * self.prior.score(inner_x, inner_sigma, generator=generator)

    @property
    def sigma_range(self) -> tuple[float, float] | None:
        """The inner prior's range in this noise model's units (VE ``s / sqrt(1 - s^2)`` of a VP ``s``, and back)."""
        inner = self.prior.sigma_range
        if inner is None or (self.noise_model == "ve" and inner[1] >= 1.0):  # a VP std of 1 is an infinite VE one
            return None
        if self.noise_model == "ve":
            return inner[0] / math.sqrt(1.0 - inner[0] ** 2), inner[1] / math.sqrt(1.0 - inner[1] ** 2)
        return inner[0] / math.sqrt(1.0 + inner[0] ** 2), inner[1] / math.sqrt(1.0 + inner[1] ** 2)


def as_noise_model(prior: Prior, noise_model: str) -> Prior:
    """``prior`` for a sampler of ``noise_model`` (itself when it already is one)."""
    check_choice(noise_model, "noise_model", NOISE_MODELS)
    if prior.noise_model == noise_model:
        return prior
    if isinstance(prior, _NoiseModelAdapter):
        return prior.prior
    return _NoiseModelAdapter(prior, noise_model)


def as_prior(network: Any, default: Callable[[Any], Prior]) -> Prior:
    """``network`` if it is a :class:`Prior`, else ``default(network)`` (an inferer's adapter for its method)."""
    if isinstance(network, Prior):
        return network
    if not callable(network):
        raise TypeError(f"network must be a callable network or a medgen Prior, got {type(network).__name__}.")
    return default(network)


def prior_pair(network: Any, default: Callable[[Any], Prior]) -> tuple[Prior, Prior]:
    """``(primary, auxiliary)`` priors (each through :func:`as_prior`) from one network or prior for both, a pair
    (tuple, list, ``nn.ModuleList``), or an ``nn.ModuleDict`` with keys ``primary`` and ``auxiliary`` (TPDM's planes).

    Raises:
        ValueError: a pair of another length, or a ``ModuleDict`` with other keys.
    """
    if isinstance(network, nn.ModuleDict):
        if set(network.keys()) != {"primary", "auxiliary"}:
            raise ValueError(f"a ModuleDict network needs keys 'primary' and 'auxiliary', got {list(network)}.")
        pair: Any = (network["primary"], network["auxiliary"])
    elif isinstance(network, (tuple, list, nn.ModuleList)):
        if len(network) != 2:
            raise ValueError(f"network must be one network or a (primary, auxiliary) pair, got {len(network)}.")
        pair = tuple(network)
    else:
        pair = (network, network)
    return as_prior(pair[0], default), as_prior(pair[1], default)


# ------------------------------------------------------------------------------------------------ patch prior


class PatchPrior(Prior):
    """PaDIS' whole-canvas prior from a patch denoiser with positional channels (Hu et al., NeurIPS 2024).

    The state is a padded canvas ``(B, C, N, N)`` (an image padded by ``pad`` on each side:
    :class:`~medgen.diffusion.views.CanvasView`). Positional channels are the canvas coordinates normalised by
    ``N - 1`` (PaDIS' inference ``latents_pos``). All patches go through ONE batched network call (``max_batch``
    splits it, also for gradients: one chunk's graph at a time, :mod:`medgen.diffusion.chunked`).

    - ``mode="random"`` (PaDIS ``denoisedFromPatches``): ``P = w // patch_size + 1`` non-overlapping patches per side,
      shifted by an offset ``(a, b)`` in ``[0, pad - 1]^2`` drawn per call and per item (row then column) from the
      generator; inside the covered square the result is ``x + (D_patch - x_patch)`` in that order (as official).
      Requires ``w + pad <= P patch_size <= w + pad + 1``.
    - ``mode="overlap"`` (PaDIS ``denoisedOverlap``): a fixed grid from ``pad`` with stride ``patch_size - overlap``
      until the image is covered, overlapping outputs averaged (:class:`~medgen.diffusion.views.OverlapMerger`).

    The output is the image area ``[pad, pad + w)^2`` and zero on the border (so the score drives the border to 0).

    Example (the patch prior solving multi-coil CS-MRI, the complex image as two real channels ``[real, imag]``; a
    random tiny network, so the picture is noise: ``tests/inferers/test_compositions.py`` runs trained weights)::

        import torch
        from medgen.inferers.patch import PatchDiffusionInferer
        from medgen.networks.songunet import PatchEDMPrecond
        from medgen.physics.mri import CartesianMRI

        net = PatchEDMPrecond(img_resolution=32, img_channels=2, model_channels=16, channel_mult=[1, 2],
                              num_blocks=1).eval()
        maps = torch.randn(1, 4, 16, 16, dtype=torch.complex64)
        maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()        # sum_c |S_c|^2 = 1
        mri = CartesianMRI((torch.rand(16, 16) < 0.4).float(), maps, channels=True)
        kspace = mri(torch.rand(1, 2, 16, 16))                              # (1, 8, 16, 16): [re coils.., im coils..]
        inferer = PatchDiffusionInferer(mri, patch_size=8, pad=8, solver="langevin", clamp=None, num_steps=3,
                                        inner_iterations=1, seed=0, progress=False)
        image = inferer(kspace, net)                                        # (1, 2, 16, 16) [real, imag]

    Args:
        network: ``network(patches (P, C, p, p), sigma, positions (P, 2, p, p))`` (e.g.
            :class:`~medgen.networks.songunet.PatchEDMPrecond`) or a :class:`Prior` of patches (positions then
            unused: any whole-image denoiser applied patch-wise).
        patch_size: patch side in pixels (PaDIS inference: 56).
        pad: canvas padding in pixels (PaDIS: 24); random offsets lie in ``[0, pad - 1]``.
        mode: ``"random"`` or ``"overlap"``.
        overlap: overlap of neighbouring patches in ``mode="overlap"`` (PaDIS 8), ``< patch_size``.
        max_batch: patches per network call, and per recomputed graph when a gradient flows through the prior (DPS):
            the memory of a gradient is then one chunk's graph whatever the canvas (``None``: one call, one graph).
    """

    def __init__(
        self,
        network: Any,
        patch_size: int,
        pad: int,
        mode: str = "random",
        overlap: int = 8,
        max_batch: int | None = None,
    ) -> None:
        if not (callable(network) or isinstance(network, Prior)):
            raise TypeError(
                f"network must be callable as network(patches, sigma, positions), got {type(network).__name__}."
            )
        check_patch_settings(patch_size, pad, mode, overlap, max_batch)
        self.patch_network = network
        self.network = network.network if isinstance(network, Prior) else network
        if isinstance(network, Prior):
            self.noise_model = network.noise_model
        self.patch_size, self.pad, self.mode, self.overlap, self.max_batch = patch_size, pad, mode, overlap, max_batch

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self.patch_size}, pad={self.pad}, mode={self.mode!r}, "
            f"overlap={self.overlap}, max_batch={self.max_batch})"
        )

    def canvas_size(self, image_size: int) -> int:
        """``image_size + 2 pad``."""
        return image_size + 2 * self.pad

    def patch_starts(self, image_size: int) -> list[int]:
        """Patch starts along one canvas axis: the offset-free grid (random) or the absolute overlap grid.

        Raises:
            ValueError: patch size, padding and image size do not fit together.
        """
        check_int(image_size, "image_size", 1)
        ps, pad = self.patch_size, self.pad
        if self.mode == "random":
            count = image_size // ps + 1
            covered = count * ps
            if not image_size + pad <= covered <= image_size + pad + 1:
                raise ValueError(
                    f"patch_size={ps} and pad={pad} do not fit a {image_size}-pixel image: the {count} patches per "
                    f"side cover {covered} pixels, which must lie in [image_size + pad, image_size + pad + 1] = "
                    f"[{image_size + pad}, {image_size + pad + 1}] so that every random offset covers the image and "
                    f"stays on the canvas; use pad={covered - image_size}."
                )
            return [p * ps for p in range(count)]
        stride = ps - self.overlap
        canvas = self.canvas_size(image_size)
        starts = [pad]
        while starts[-1] < canvas - pad - ps:
            starts.append(starts[-1] + stride)
        if starts[-1] + ps > canvas:
            raise ValueError(
                f"mode='overlap' with patch_size={ps}, overlap={self.overlap} and pad={pad}: the last patch of a "
                f"{image_size}-pixel image ends at {starts[-1] + ps}, beyond the {canvas}-pixel canvas; increase pad."
            )
        return starts

    def draw_offsets(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor | None:
        """Random grid offsets ``(batch, 2)`` in ``[0, pad - 1]`` (``None`` in ``mode="overlap"``)."""
        if self.mode != "random":
            return None
        return torch.randint(0, self.pad, (batch, 2), generator=generator, device=device)

    def patch_indices(self, offset: Sequence[int] | torch.Tensor, image_size: int) -> list[list[int]]:
        """The official ``getIndices`` list ``[[row0, row1, col0, col1], ...]`` (row-major) for offset ``(a, b)``."""
        a, b = (int(v) for v in offset) if self.mode == "random" else (0, 0)
        ps = self.patch_size
        starts = self.patch_starts(image_size)
        return [[r + a, r + a + ps, c + b, c + b + ps] for r in starts for c in starts]

    def _image_size(self, x: torch.Tensor) -> int:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}.")
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x must be a square padded canvas (B, C, N, N), got shape {tuple(x.shape)}.")
        image_size = x.shape[-1] - 2 * self.pad
        if image_size < 1:
            raise ValueError(f"x is {x.shape[-1]} pixels wide, which leaves no image inside pad={self.pad}.")
        return image_size

    def _patch_denoise(self, patches: torch.Tensor, sigma: Any, positions: torch.Tensor) -> torch.Tensor:
        """The network over all patches, ``max_batch`` per call: with a graph, as a chunked vector-Jacobian product
        (one chunk's graph at a time, :func:`~medgen.diffusion.chunked.chunked_map`); a
        :class:`~medgen.diffusion.chunked.ChunkedNetwork` patch network lends its sharding (and its chunk size when
        ``max_batch`` is ``None``) to this one map."""
        network, chunk_size, sharding = self.patch_network, self.max_batch, None
        if isinstance(network, ChunkedNetwork):
            network, chunk_size, sharding = network.module, chunk_size or network.chunk_size, network.sharding
        if isinstance(network, Prior):
            out = chunked_map(lambda p: network.denoise(p, sigma), patches, chunk_size=chunk_size, sharding=sharding)
        else:
            out = chunked_map(
                lambda p, pos: network(p, sigma, pos), patches, positions, chunk_size=chunk_size, sharding=sharding
            )
        if out.shape != patches.shape:
            raise ValueError(f"network returned shape {tuple(out.shape)} for patches {tuple(patches.shape)}.")
        return out.to(patches.dtype)

    def denoise(
        self,
        x: torch.Tensor,
        sigma: Any,
        *,
        generator: torch.Generator | None = None,
        offsets: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Denoise the canvas ``x`` ``(B, C, N, N)`` at ``sigma`` (passed to the network unchanged).

        Args:
            x: padded canvas, image units.
            sigma: noise std.
            generator: source of the random offsets (``mode="random"``, drawn when ``offsets`` is ``None``).
            offsets: ``mode="random"``: grid offsets ``(B, 2)`` or ``(2,)`` in ``[0, pad - 1]``.

        Returns:
            the denoised canvas, zero outside ``[pad, pad + w)^2``.
        """
        image_size = self._image_size(x)
        starts = self.patch_starts(image_size)
        if self.mode == "overlap":
            if offsets is not None:
                raise ValueError("offsets are only used by mode='random'; mode='overlap' has a fixed grid.")
            denoised = self._denoise_overlap(x, sigma, starts)
        else:
            batch = x.shape[0]
            if offsets is None:
                offsets = self.draw_offsets(batch, generator, x.device)
            offsets = torch.as_tensor(offsets, device=x.device)
            if offsets.dtype.is_floating_point or offsets.shape not in ((2,), (batch, 2)):
                raise ValueError(
                    f"offsets must be integers of shape (2,) or ({batch}, 2), got {offsets.dtype} {tuple(offsets.shape)}."
                )
            if offsets.min() < 0 or offsets.max() >= self.pad:
                raise ValueError(f"offsets must lie in [0, pad - 1 = {self.pad - 1}], got {offsets.tolist()}.")
            denoised = self._denoise_random(x, sigma, offsets.long().expand(batch, 2), len(starts))
        return F.pad(denoised, (self.pad,) * 4)

    def _denoise_random(self, x: torch.Tensor, sigma: Any, offsets: torch.Tensor, count: int) -> torch.Tensor:
        """Image area ``(B, C, w, w)`` of ``x + sum_patches (D_patch - x_patch)`` for per-item grid offsets."""
        batch, channels, canvas = x.shape[0], x.shape[1], x.shape[-1]
        ps, pad = self.patch_size, self.pad
        side = count * ps
        image_size = canvas - 2 * pad
        items = torch.arange(batch, device=x.device)[:, None, None]
        span = torch.arange(side, device=x.device)
        rows, cols = offsets[:, :1] + span, offsets[:, 1:] + span  # (B, side) canvas coordinates of the square
        square = x[items, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, side, side)
        patches = square.reshape(batch, channels, count, ps, count, ps).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(-1, channels, ps, ps)  # row-major patch order, as getIndices
        grid = torch.arange(count, device=x.device) * ps
        patch_rows = (offsets[:, 0, None, None] + grid[None, :, None]).expand(batch, count, count).reshape(-1)
        patch_cols = (offsets[:, 1, None, None] + grid[None, None, :]).expand(batch, count, count).reshape(-1)
        positions = patch_position_channels(patch_rows, patch_cols, ps, ps, canvas, device=x.device, dtype=x.dtype)
        out = self._patch_denoise(patches, sigma, positions)
        out = out.reshape(batch, count, count, channels, ps, ps).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(batch, channels, side, side)
        assembled = square + (out - square)
        inner = torch.arange(image_size, device=x.device)
        rows, cols = pad - offsets[:, :1] + inner, pad - offsets[:, 1:] + inner  # image area inside the square
        return assembled[items, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _denoise_overlap(self, x: torch.Tensor, sigma: Any, starts: list[int]) -> torch.Tensor:
        """Image area ``(B, C, w, w)`` of the averaged denoised patches of the fixed overlapping grid."""
        from medgen.diffusion.views import OverlapMerger

        batch, channels, canvas = x.shape[0], x.shape[1], x.shape[-1]
        ps, pad = self.patch_size, self.pad
        count = len(starts)
        tiles = [(r, c) for r in starts for c in starts]
        patches = torch.stack([x[..., r : r + ps, c : c + ps] for r, c in tiles], dim=1).flatten(0, 1)
        grid = torch.tensor(starts, device=x.device)
        patch_rows = grid[:, None].expand(count, count).reshape(-1).repeat(batch)
        patch_cols = grid[None, :].expand(count, count).reshape(-1).repeat(batch)
        positions = patch_position_channels(patch_rows, patch_cols, ps, ps, canvas, device=x.device, dtype=x.dtype)
        out = self._patch_denoise(patches, sigma, positions).reshape(batch, count * count, channels, ps, ps)
        merger = OverlapMerger([starts, starts], (ps, ps), blend="constant")
        merged = merger.merge([out[:, k] for k in range(count * count)], (canvas, canvas))
        image_size = canvas - 2 * pad
        return merged[..., pad : pad + image_size, pad : pad + image_size]


def check_patch_settings(patch_size: int, pad: int, mode: str, overlap: int, max_batch: int | None) -> None:
    """Validate :class:`PatchPrior`'s geometry arguments (shared with the PaDIS inferer)."""
    check_int(patch_size, "patch_size", 1)
    check_int(pad, "pad", 1)
    check_choice(mode, "mode", PATCH_MODES)
    check_int(overlap, "overlap", 0)
    if mode == "overlap" and overlap >= patch_size:
        raise ValueError(f"overlap must be smaller than patch_size={patch_size} in mode='overlap', got {overlap}.")
    check_int(max_batch, "max_batch", 1, allow_none=True)
