"""Discrete-time Gaussian diffusion (DDPM, Ho et al. 2020; improved DDPM, Nichol & Dhariwal 2021; DDIM).

:class:`GaussianDiffusion` follows guided-diffusion's ``GaussianDiffusion``/``SpacedDiffusion`` numerically: every
coefficient is computed in float64 from ``betas`` and cast to the sample's dtype when it is read at the integer
timesteps ``t`` (``(B,)`` long, ``0 = least noise``). The network is called as ``model(x_t, model_t, **model_kwargs)``
where ``model_t`` is the ORIGINAL process's timestep (``timestep_map[t]`` after respacing; times ``1000 / T`` with
``rescale_timesteps``). WDM (x0-prediction, fixed-large variance, linear 1000 steps) and SDM/CTCA (epsilon,
learned-range variance, cosine) are both instances.

Example (WDM's sampler over 10 of its 1000 steps, with WDM's image-space clipping as ``denoised_fn``; the stand-in
network predicts ``x0 = 0``)::

    import torch
    from medgen.diffusion.gaussian import GaussianDiffusion
    from medgen.diffusion.schedules import linear_beta_schedule
    from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d

    diffusion = GaussianDiffusion(linear_beta_schedule(1000), "start_x", "fixed_large").respace(range(0, 1000, 100))

    def model(x, t):  # x: (B, 8, d, h, w) wavelet coefficients, t: (B,) timesteps of the 1000-step process
        return torch.zeros_like(x)

    def clip(x0):  # clamp the predicted image, not its coefficients
        return haar_dwt3d(haar_idwt3d(x0, lll_scale=3.0).clamp(-1, 1), lll_scale=3.0)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 4, 4, 4, generator=g)
    for i in reversed(range(diffusion.num_timesteps)):
        t = torch.full((1,), i, dtype=torch.long)
        x = diffusion.p_sample(model, x, t, denoised_fn=clip, generator=g)["sample"]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from medgen.diffusion.schedules import cosine_beta_schedule, linear_beta_schedule

__all__ = [
    "GaussianDiffusion",
    "space_timesteps",
    "respace_diffusion",
    "diffusion_fingerprint",
    "wdm_diffusion",
    "sdm_diffusion",
    "MODEL_MEAN_TYPES",
    "MODEL_VAR_TYPES",
]

MODEL_MEAN_TYPES = ("epsilon", "start_x", "previous_x")
MODEL_VAR_TYPES = ("fixed_large", "fixed_small", "learned", "learned_range")

Model = Callable[..., torch.Tensor]


def space_timesteps(num_timesteps: int, section_counts: str | Sequence[int]) -> list[int]:
    """guided-diffusion's ``space_timesteps``: which of ``num_timesteps`` steps to keep for a shorter sampler.

    ``section_counts`` is a list (or comma-separated string) of step counts for equal-length sections of the process,
    e.g. ``[10, 15, 20]`` over 300 steps strides the first 100 steps to 10, the next to 15, the last to 20; or
    ``"ddimN"`` for DDIM's fixed integer stride giving exactly ``N`` steps.

    Returns:
        sorted list of the kept timesteps.

    Raises:
        ValueError: a section cannot hold its count, or no integer stride gives ``N`` steps.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps out of {num_timesteps} with an integer stride.")
        section_counts = [int(c) for c in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}.")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += size
    return sorted(set(steps))


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}.")
    return value


class GaussianDiffusion(nn.Module):
    """DDPM forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` and its learned reverse process.

    Args:
        betas: 1-D noise schedule ``(T,)`` in ``(0, 1]``, converted to float64 (e.g.
            :func:`~medgen.diffusion.schedules.linear_beta_schedule`).
        model_mean_type: what the network predicts: ``"epsilon"`` (the noise), ``"start_x"`` (``x_0``) or
            ``"previous_x"`` (``x_{t-1}``'s mean).
        model_var_type: ``"fixed_large"`` (``[posterior_var_1, betas_1..]``, DDPM's ``sigma^2 = beta``),
            ``"fixed_small"`` (the posterior variance), ``"learned"`` (the network's extra channels are
            ``log sigma^2``) or ``"learned_range"`` (extra channels ``v`` in ``[-1, 1]`` interpolate
            ``log sigma^2 = (v+1)/2 log beta_t + (1-v)/2 log posterior_var_t``; the network has ``2 C`` outputs).
        rescale_timesteps: pass ``model_t * 1000 / original_num_steps`` (float) to the network.
        timestep_map: the original process's timestep of each step (set by :meth:`respace`); default identity.
        original_num_steps: length of the original process (set by :meth:`respace`); default ``T``.

    Raises:
        ValueError: bad ``betas`` or an unknown type.
    """

    def __init__(
        self,
        betas: torch.Tensor | Sequence[float],
        model_mean_type: str = "epsilon",
        model_var_type: str = "fixed_large",
        rescale_timesteps: bool = False,
        timestep_map: Sequence[int] | torch.Tensor | None = None,
        original_num_steps: int | None = None,
    ) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}.")
        if not bool(torch.all((betas > 0) & (betas <= 1))):
            raise ValueError("betas must lie in (0, 1].")
        self.model_mean_type = _choice("model_mean_type", model_mean_type, MODEL_MEAN_TYPES)
        self.model_var_type = _choice("model_var_type", model_var_type, MODEL_VAR_TYPES)
        self.rescale_timesteps = rescale_timesteps
        num = betas.shape[0]
        self.original_num_steps = num if original_num_steps is None else int(original_num_steps)
        timestep_map = torch.arange(num) if timestep_map is None else torch.as_tensor(timestep_map, dtype=torch.long)
        if timestep_map.shape != (num,):
            raise ValueError(f"timestep_map must have {num} entries, got shape {tuple(timestep_map.shape)}.")

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        alphas_cumprod_next = torch.cat([alphas_cumprod[1:], alphas_cumprod.new_zeros(1)])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # the posterior variance is 0 at t = 0: log-clip it with the value at t = 1 (as guided-diffusion)
        first = posterior_variance[1:2] if num > 1 else betas[:1]
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "alphas_cumprod_next": alphas_cumprod_next,
            "sqrt_alphas_cumprod": torch.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - alphas_cumprod),
            "log_one_minus_alphas_cumprod": torch.log(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / alphas_cumprod - 1),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": torch.log(torch.cat([first, posterior_variance[1:]])),
            "posterior_mean_coef1": betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * torch.sqrt(alphas) / (1.0 - alphas_cumprod),
            "fixed_large_variance": torch.cat([first, betas[1:]]),
            "fixed_large_log_variance": torch.log(torch.cat([first, betas[1:]])),
            "log_betas": torch.log(betas),
        }
        for name, value in tables.items():
            self.register_buffer(name, value)
        self.register_buffer("timestep_map", timestep_map)

    @property
    def num_timesteps(self) -> int:
        """Number of steps ``T`` of this (possibly respaced) process."""
        return int(self.betas.shape[0])

    def extra_repr(self) -> str:
        return (
            f"num_timesteps={self.num_timesteps}, model_mean_type={self.model_mean_type!r}, "
            f"model_var_type={self.model_var_type!r}, original_num_steps={self.original_num_steps}"
        )

    # ------------------------------------------------------------------ helpers
    def _extract(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``table[t]`` (float64) cast to ``x``'s dtype and shaped ``(B, 1, ..., 1)``."""
        values = table.to(t.device)[t].to(x.dtype)
        return values.reshape(t.shape[0], *([1] * (x.ndim - 1)))

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32) or t.shape != (x.shape[0],):
            raise ValueError(
                f"t must be an integer tensor of shape (B,) = ({x.shape[0]},), got "
                f"{type(t).__name__} {getattr(t, 'dtype', '')} {tuple(getattr(t, 'shape', ()))}."
            )
        return t.long()

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The time input the network was trained with: ``timestep_map[t]`` (times ``1000 / T_orig`` if rescaled)."""
        mapped = self.timestep_map.to(t.device)[t]
        if self.rescale_timesteps:
            return mapped.float() * (1000.0 / self.original_num_steps)
        return mapped

    def respace(self, use_timesteps: Iterable[int]) -> GaussianDiffusion:
        """A process over a subset of the timesteps (guided-diffusion's ``SpacedDiffusion``), e.g. for fewer steps.

        The new ``betas`` are ``1 - abar_{k_i} / abar_{k_{i-1}}`` over the kept steps ``k_i``, so the marginals at the
        kept steps are unchanged; the network keeps receiving the original timesteps. ``respace(range(T))`` gives
        back the same process (betas recomputed from ``alphas_cumprod``, as WDM's ``SpacedDiffusion`` does).

        Args:
            use_timesteps: timesteps of THIS process to keep (e.g. :func:`space_timesteps`).
        """
        keep = sorted({int(k) for k in use_timesteps})
        if not keep or keep[0] < 0 or keep[-1] >= self.num_timesteps:
            raise ValueError(f"use_timesteps must be a non-empty subset of range({self.num_timesteps}).")
        last, betas = 1.0, []
        for k in keep:
            abar = self.alphas_cumprod[k].item()
            betas.append(1.0 - abar / last)
            last = abar
        return GaussianDiffusion(
            torch.tensor(betas, dtype=torch.float64),
            self.model_mean_type,
            self.model_var_type,
            self.rescale_timesteps,
            timestep_map=self.timestep_map.cpu()[keep],
            original_num_steps=self.original_num_steps,
        ).to(self.betas.device)

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(
        self, x_start: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of ``q(x_t | x_0)``."""
        t = self._check_t(t, x_start)
        mean = self._extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
        variance = self._extract(1.0 - self.alphas_cumprod, t, x_start)
        return mean, variance, self._extract(self.log_one_minus_alphas_cumprod, t, x_start)

    def q_sample(
        self,
        x_start: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``.

        Args:
            x_start: clean data ``(B, C, *spatial)``.
            t: integer timesteps ``(B,)``.
            noise: the standard normal draw (shaped like ``x_start``); drawn from ``generator`` if ``None``.
            generator: random generator on ``x_start``'s device.
        """
        t = self._check_t(t, x_start)
        if noise is None:
            noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
        return (
            self._extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
            + self._extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise
        )

    def q_step(self, x: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One forward step ``x_{t+1} ~ q(x_{t+1} | x_t) = N(sqrt(1 - beta_{t+1}) x_t, beta_{t+1} I)`` (RePaint's
        resampling jump); ``t = -1`` noises a clean ``x_0`` to ``x_0`` of the process."""
        beta = float(self.betas[t + 1])
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return math.sqrt(1.0 - beta) * x + math.sqrt(beta) * noise

    def q_posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of the posterior ``q(x_{t-1} | x_t, x_0)``."""
        t = self._check_t(t, x_t)
        mean = (
            self._extract(self.posterior_mean_coef1, t, x_t) * x_start
            + self._extract(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return (
            mean,
            self._extract(self.posterior_variance, t, x_t),
            self._extract(self.posterior_log_variance_clipped, t, x_t),
        )

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x_0 = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps``."""
        return (
            self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`predict_xstart_from_eps`."""
        return (
            self._extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart
        ) / self._extract(self.sqrt_recipm1_alphas_cumprod, t, x_t)

    def predict_xstart_from_xprev(self, x_t: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor) -> torch.Tensor:
        """``x_0`` whose posterior mean is ``xprev``."""
        return (
            self._extract(1.0 / self.posterior_mean_coef1, t, x_t) * xprev
            - self._extract(self.posterior_mean_coef2 / self.posterior_mean_coef1, t, x_t) * x_t
        )

    # ------------------------------------------------------------------ reverse process
    def p_mean_variance(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = False,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The network's ``p(x_{t-1} | x_t)``: mean, variance, log-variance and the ``x_0`` prediction.

        Args:
            model: ``model(x_t, model_t, **model_kwargs)`` returning ``C`` channels (``2 C`` for learned variances).
            x: ``x_t`` of shape ``(B, C, *spatial)``.
            t: integer timesteps ``(B,)``.
            clip_denoised: clamp the ``x_0`` prediction to ``[-1, 1]`` (after ``denoised_fn``). Note the default
                is ``False`` (guided-diffusion's is ``True``).
            denoised_fn: applied to the ``x_0`` prediction before the posterior mean, e.g. WDM's image-space
                clipping ``lambda c: haar_dwt3d(haar_idwt3d(c, 3.0).clamp(-1, 1), 3.0)``.
            model_kwargs: extra network inputs (class labels, condition maps, ...).

        Returns:
            dict with ``mean``, ``variance``, ``log_variance``, ``pred_xstart`` and ``model_output`` (the network's
            first ``C`` channels).
        """
        t = self._check_t(t, x)
        output = model(x, self.model_timesteps(t), **(model_kwargs or {}))
        channels = x.shape[1]
        if self.model_var_type in ("learned", "learned_range"):
            if output.shape != (x.shape[0], 2 * channels, *x.shape[2:]):
                raise ValueError(
                    f"a learned-variance model must output {2 * channels} channels shaped like x, got "
                    f"{tuple(output.shape)}."
                )
            output, var_values = torch.split(output, channels, dim=1)
            if self.model_var_type == "learned":
                log_variance = var_values
            else:
                min_log = self._extract(self.posterior_log_variance_clipped, t, x)
                max_log = self._extract(self.log_betas, t, x)
                fraction = (var_values + 1) / 2
                log_variance = fraction * max_log + (1 - fraction) * min_log
            variance = torch.exp(log_variance)
        else:
            if output.shape != x.shape:
                raise ValueError(f"model output must be shaped like x {tuple(x.shape)}, got {tuple(output.shape)}.")
            if self.model_var_type == "fixed_large":
                variance = self._extract(self.fixed_large_variance, t, x).expand_as(x)
                log_variance = self._extract(self.fixed_large_log_variance, t, x).expand_as(x)
            else:
                variance = self._extract(self.posterior_variance, t, x).expand_as(x)
                log_variance = self._extract(self.posterior_log_variance_clipped, t, x).expand_as(x)

        def process_xstart(x0: torch.Tensor) -> torch.Tensor:
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-1, 1) if clip_denoised else x0

        if self.model_mean_type == "previous_x":
            pred_xstart = process_xstart(self.predict_xstart_from_xprev(x, t, output))
            mean = output
        else:
            raw = output if self.model_mean_type == "start_x" else self.predict_xstart_from_eps(x, t, output)
            pred_xstart = process_xstart(raw)
            mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "model_output": output,
        }

    def p_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = False,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One ancestral step ``x_{t-1} = mean + exp(log_var / 2) z`` (no noise where ``t == 0``).

        The network is called first, then ``z`` is drawn (guided-diffusion's order, so a generator seeded like the
        official global RNG gives the same draws).

        Args:
            model, x, t, clip_denoised, denoised_fn, model_kwargs: as :meth:`p_mean_variance`.
            noise: the standard normal draw (shaped like ``x``); drawn from ``generator`` if ``None``.
            generator: random generator on ``x``'s device.

        Returns:
            dict with ``sample`` and ``pred_xstart``.
        """
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        eta: float = 0.0,
        clip_denoised: bool = False,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al., ICLR 2021) from ``t`` to ``t - 1`` of this (usually respaced) process.

        ``sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)``;
        ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z`` (no noise at ``t == 0``);
        ``eta = 0`` is deterministic, ``eta = 1`` matches DDPM's variance.

        Returns:
            dict with ``sample`` and ``pred_xstart``.
        """
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}.")
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = self._extract(self.alphas_cumprod, t, x)
        alpha_bar_prev = self._extract(self.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        mean = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return {"sample": mean + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}


def wdm_diffusion(num_timesteps: int = 1000) -> GaussianDiffusion:
    """WDM/cWDM's diffusion: linear betas over ``num_timesteps`` (1000), ``x0`` prediction, fixed-large variance.

    Returns:
        the process as the official ``create_gaussian_diffusion`` builds it (a ``SpacedDiffusion`` over all steps,
        i.e. betas recomputed from the cumulative products).
    """
    diffusion = GaussianDiffusion(linear_beta_schedule(num_timesteps), "start_x", "fixed_large")
    return diffusion.respace(range(num_timesteps))


def sdm_diffusion(num_timesteps: int = 1000) -> GaussianDiffusion:
    """The CTCA SDM diffusion: cosine betas over ``num_timesteps`` (1000), epsilon prediction, learned-range variance.

    Returns:
        the process as the official ``create_gaussian_diffusion`` builds it (a ``SpacedDiffusion`` over all steps,
        i.e. betas recomputed from the cumulative products).
    """
    diffusion = GaussianDiffusion(cosine_beta_schedule(num_timesteps), "epsilon", "learned_range")
    return diffusion.respace(range(num_timesteps))


def respace_diffusion(
    diffusion: GaussianDiffusion, timestep_respacing: int | str | Sequence[int] | None
) -> GaussianDiffusion:
    """``diffusion`` over the steps ``timestep_respacing`` selects (guided-diffusion's ``SpacedDiffusion``).

    Args:
        diffusion: the original process.
        timestep_respacing: ``None`` or ``""`` (all steps), an int ``N`` (``N`` evenly spaced steps), a section
            string (``"ddim50"``, ``"10,15,20"``) or a list of section counts
            (:func:`~medgen.diffusion.gaussian.space_timesteps`).

    Raises:
        ValueError: an int outside ``[1, num_timesteps]`` or sections that do not fit.
        TypeError: any other type.
    """
    if timestep_respacing is None or timestep_respacing == "":
        return diffusion.respace(range(diffusion.num_timesteps))
    if isinstance(timestep_respacing, int) and not isinstance(timestep_respacing, bool):
        if not 1 <= timestep_respacing <= diffusion.num_timesteps:
            raise ValueError(f"timestep_respacing must be in [1, {diffusion.num_timesteps}], got {timestep_respacing}.")
        return diffusion.respace(space_timesteps(diffusion.num_timesteps, [timestep_respacing]))
    if isinstance(timestep_respacing, (str, Sequence)):
        return diffusion.respace(space_timesteps(diffusion.num_timesteps, timestep_respacing))
    raise TypeError(
        "timestep_respacing must be None, an int, a section string or a list of ints, got "
        f"{type(timestep_respacing).__name__}."
    )


def diffusion_fingerprint(diffusion: GaussianDiffusion) -> dict[str, Any]:
    """JSON-serialisable identity of a (respaced) process: betas hash, timestep map, mean/variance types."""
    return {
        "betas_sha1": hashlib.sha1(diffusion.betas.cpu().numpy().tobytes()).hexdigest(),
        "timestep_map": diffusion.timestep_map.tolist(),
        "model_mean_type": diffusion.model_mean_type,
        "model_var_type": diffusion.model_var_type,
        "rescale_timesteps": diffusion.rescale_timesteps,
    }
