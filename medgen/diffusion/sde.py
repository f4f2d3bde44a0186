"""Stochastic differential equations of score-based diffusion (Song et al., ICLR 2021) in score_sde's shape.

An SDE ``dx = f(x, t) dt + g(t) dw`` on ``t`` in ``[0, T]`` (``T = 1``) is a small object with

- ``sde(x, t) -> (drift, diffusion)``, ``marginal_prob(x, t) -> (mean, std)`` of ``p_t(x_t | x_0)``,
- ``prior_sampling(shape, generator)``, ``discretize(x, t) -> (f, G)`` (one step ``x_{i+1} = x_i + f + G z``),
- ``reverse(score_fn, probability_flow=False)`` -> :class:`ReverseSDE` with the same ``sde``/``discretize`` methods,
- ``project(x)``: the linear map the noise enters through (identity, or HFS-SDE's high-frequency projector),
- ``langevin_alpha(t)``: the ``alpha`` of the Langevin corrector's step size (score_sde's convention).

Times ``t`` are continuous in ``[0, T]``, one per batch item (shape ``(B,)``; a float or 0-d tensor is broadcast).
Images are batches ``(B, C, *spatial)`` of any spatial rank; per-item quantities ``(B,)`` broadcast over the rest.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch

from medgen.physics.mri import channels_to_complex, complex_to_channels, fft2c, ifft2c

__all__ = ["SDE", "ReverseSDE", "VESDE", "VPSDE", "HFSSDE", "ScoreFn", "batch_broadcast", "as_time"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score_fn(x, t)``: the score ``grad_x log p_t(x)`` for a batch ``x`` at continuous times ``t`` of shape ``(B,)``."""


def batch_broadcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-item ``(B,)`` tensor to ``(B, 1, ..., 1)`` to broadcast against ``x`` (0-d passes through)."""
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def as_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Continuous times as a ``(B,)`` tensor on ``x``'s device (float or 0-d input is repeated ``B`` times).

    Raises:
        ValueError: ``t`` has a shape other than ``()`` or ``(B,)``.
    """
    t = torch.as_tensor(t, device=x.device)
    if not t.is_floating_point():
        t = t.to(x.dtype if x.is_floating_point() else torch.get_default_dtype())
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}.")
    return t


def _table_index(t: torch.Tensor, num_steps: int, T: float) -> torch.Tensor:
    """score_sde's discrete index ``(t * (N - 1) / T).long()`` (truncation, computed in ``t``'s dtype)."""
    return (t * (num_steps - 1) / T).long()


class SDE(ABC):
    """Base class of a forward SDE ``dx = f(x, t) dt + g(t) project(dw)`` on ``t`` in ``[0, T]``.

    Args:
        N: number of discretisation steps of the sampler (the time grid has ``N`` points).
    """

    noise_model: str = "ve"
    """How ``x_t`` relates to ``x_0``: ``"ve"`` (``x0 + sigma n``) or ``"vp"`` (``sqrt(1 - sigma^2) x0 + sigma n``);
    a :class:`~medgen.diffusion.priors.Prior` of the other model is rescaled (:func:`~medgen.diffusion.priors.
    as_noise_model`)."""

    def __init__(self, N: int) -> None:
        if isinstance(N, bool) or not isinstance(N, int) or N < 1:
            raise ValueError(f"N must be an integer >= 1, got {N!r}.")
        self.N = N

    @property
    def T(self) -> float:
        """End time of the forward process."""
        return 1.0

    @abstractmethod
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``f(x, t)`` shaped like ``x`` and diffusion ``g(t)`` of shape ``(B,)``."""

    @abstractmethod
    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (shaped like ``x``) and standard deviation ``(B,)`` of ``p_t(x_t | x_0 = x)``."""

    @abstractmethod
    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """A sample of the prior ``p_T`` of the given shape."""

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """The marginal noise std at times ``t`` ``(B,)``: a prior's ``sigma`` (the score network's time input)."""
        return self.marginal_prob(torch.zeros(t.shape, device=t.device, dtype=t.dtype), t)[1]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The linear map the Brownian motion enters through; the identity except for :class:`HFSSDE`."""
        return x

    def perturb(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A sample of ``p_t(x_t | x_0 = x)``: ``mean + std * P(noise)`` with ``noise ~ N(0, I)`` shaped like ``x``."""
        mean, std = self.marginal_prob(x, t)
        return mean + batch_broadcast(std, x) * self.project(noise)

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha`` in the Langevin corrector's step ``2 alpha (snr |z| / |score|)^2``: 1 (VE), ``alpha_i`` (VP)."""
        return torch.ones_like(t)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler-Maruyama discretisation ``x_{i+1} = x_i + f + G z`` with ``f = drift / N`` and ``G = g / sqrt(N)``.

        Returns:
            ``f`` shaped like ``x`` and ``G`` of shape ``(B,)``.
        """
        dt = 1.0 / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or, with ``probability_flow``, the probability-flow ODE) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse-time SDE ``dx = [f - g^2 s(x, t)] dt + g dw_bar`` of a forward :class:`SDE` (Anderson, 1982).

    With ``probability_flow=True`` it is the ODE ``dx = [f - g^2 s / 2] dt`` (diffusion 0).

    Args:
        forward: the forward SDE.
        score_fn: ``score_fn(x, t)``, the score at continuous times ``t`` ``(B,)``.
        probability_flow: use the probability-flow ODE.
        project_score: apply ``forward.project`` to the score (the exact reverse when the noise is projected, as in
            :class:`HFSSDE`; a no-op for VE/VP).
    """

    def __init__(
        self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False, project_score: bool = False
    ) -> None:
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.project_score = project_score

    @property
    def N(self) -> int:
        """Number of discretisation steps (the forward SDE's)."""
        return self.forward.N

    @property
    def T(self) -> float:
        """End time (the forward SDE's)."""
        return self.forward.T

    def _score(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor | None) -> torch.Tensor:
        score = self.score_fn(x, t) if score is None else score
        return self.forward.project(score) if self.project_score else score

    def sde(
        self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse drift and diffusion ``(B,)``; ``score`` (already evaluated at ``(x, t)``) skips the score call."""
        t = as_time(t, x)
        drift, diffusion = self.forward.sde(x, t)
        weight = 0.5 if self.probability_flow else 1.0
        drift = drift - batch_broadcast(diffusion, x) ** 2 * self._score(x, t, score) * weight
        return drift, torch.zeros_like(diffusion) if self.probability_flow else diffusion

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse discretisation: ``x_{i-1} = x_i - rev_f + rev_G z`` with ``rev_f = f - G^2 s`` (``G^2 s / 2`` for
        the ODE) and ``rev_G = G`` (0 for the ODE)."""
        t = as_time(t, x)
        f, G = self.forward.discretize(x, t)
        weight = 0.5 if self.probability_flow else 1.0
        rev_f = f - batch_broadcast(G, x) ** 2 * self._score(x, t, score) * weight
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


def _normal(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """``randn(shape)`` from ``generator``, on the generator's device unless ``device`` is given."""
    if generator is not None and device is None:
        device = generator.device
    return torch.randn(*shape, generator=generator, device=device, dtype=dtype)


class VESDE(SDE):
    """Variance-exploding SDE ``dx = sigma(t) sqrt(2 ln(smax / smin)) dw``, ``sigma(t) = smin (smax / smin)^t``.

    ``marginal_prob`` is ``(x, sigma(t))``; the prior is ``N(0, sigma_max^2 I)``. :meth:`discretize` is SMLD's
    (score_sde's): with ``sigmas = exp(linspace(ln smin, ln smax, N))`` and ``i = floor(t (N - 1) / T)``,
    ``f = 0`` and ``G = sqrt(sigmas[i]^2 - sigmas[i-1]^2)`` (``sigmas[-1] := 0``). TPDM uses
    ``VESDE(0.01, 378, 2000)``; a score network for it takes ``sigma(t)`` (data units) as its noise input.

    Args:
        sigma_min: smallest noise standard deviation (data units).
        sigma_max: largest noise standard deviation (data units).
        N: number of discretisation steps.
        table_size: length of the ``discrete_sigmas`` table (default ``N``). HFS-SDE's accelerated VE baseline builds
            the table with 1000 entries and then samples with ``N=300`` steps (official ``sde.N = sampling.N``), so
            :meth:`discretize` reads only the smallest 300 sigmas: reproduce it with ``N=300, table_size=1000``.
    """

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000, table_size: int | None = None
    ) -> None:
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}.")
        table_size = N if table_size is None else table_size
        if isinstance(table_size, bool) or not isinstance(table_size, int) or table_size < N:
            raise ValueError(f"table_size must be an integer >= N = {N}, got {table_size!r}.")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.table_size = table_size
        self.discrete_sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), table_size))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise standard deviation ``sigma(t)`` (data units) at continuous times ``t``."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = as_time(t, x)
        diffusion = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return torch.zeros_like(x), diffusion

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.sigma(as_time(t, x))

    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """``sigma_max * z``, ``z ~ N(0, I)`` of ``shape`` (on the generator's device unless ``device`` is given)."""
        return _normal(shape, generator, device, dtype) * self.sigma_max

    def step_sigmas(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The table's noise std at ``t`` and the next smaller one: ``(sigmas[i], sigmas[i-1])`` with
        ``i = floor(t (N - 1) / T)`` and ``sigmas[-1] := 0`` (the levels one reverse step moves between)."""
        index = _table_index(t, self.N, self.T)
        sigmas = self.discrete_sigmas.to(t.device)
        sigma = sigmas[index]
        return sigma, torch.where(index == 0, torch.zeros_like(sigma), sigmas[(index - 1).clamp(min=0)])

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma, adjacent = self.step_sigmas(as_time(t, x))
        return torch.zeros_like(x), torch.sqrt(sigma**2 - adjacent**2)


class VPSDE(SDE):
    """Variance-preserving SDE ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw``, ``beta(t) = b_min + t (b_max - b_min)``.

    ``marginal_prob``: mean ``exp(c(t)) x`` and std ``sqrt(1 - exp(2 c(t)))`` with
    ``c(t) = -t^2 (b_max - b_min) / 4 - t b_min / 2``; prior ``N(0, I)``. :meth:`discretize` is DDPM's ancestral
    step with ``betas = linspace(b_min / n, b_max / n, n)`` (``n = table_size``), indexed by
    ``i = floor(t (N - 1) / T)``: ``f = (sqrt(1 - beta_i) - 1) x``, ``G = sqrt(beta_i)``.

    Args:
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        N: number of discretisation steps (sampler time grid).
        table_size: length of the discrete ``betas``/``alphas`` tables (default ``N``). HFS-SDE's
            ``accelerated_sampling`` keeps the 1000-long tables while sampling with ``N = 100``, so the corrector's
            ``alpha`` is read at index ``floor(t * 99)`` of the 1000-long table (about 1): reproduce it with
            ``N=100, table_size=1000``.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, table_size: int | None = None):
        super().__init__(N)
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"need 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}.")
        table_size = N if table_size is None else table_size
        if isinstance(table_size, bool) or not isinstance(table_size, int) or table_size < N:
            raise ValueError(f"table_size must be an integer >= N = {N}, got {table_size!r}.")
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)
        self.table_size = table_size
        self.discrete_betas = torch.linspace(beta_min / table_size, beta_max / table_size, table_size)
        self.alphas = 1.0 - self.discrete_betas

    noise_model = "vp"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """``c(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``, the log of the mean's scale."""
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = as_time(t, x)
        beta_t = self.beta(t)
        return -0.5 * batch_broadcast(beta_t, x) * x, torch.sqrt(beta_t)

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_mean = self.log_mean_coeff(as_time(t, x))
        return torch.exp(batch_broadcast(log_mean, x)) * x, torch.sqrt(1.0 - torch.exp(2.0 * log_mean))

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_mean_coeff(t)))

    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """``z ~ N(0, I)`` of ``shape`` (on the generator's device unless ``device`` is given)."""
        return _normal(shape, generator, device, dtype)

    def langevin_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas.to(t.device)[_table_index(t, self.N, self.T)]

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = as_time(t, x)
        index = _table_index(t, self.N, self.T)
        beta = self.discrete_betas.to(t.device)[index]
        alpha = self.alphas.to(t.device)[index]
        return (batch_broadcast(torch.sqrt(alpha), x) - 1.0) * x, torch.sqrt(beta)


class HFSSDE(VPSDE):
    """HFS-SDE (Cao et al., TMI 2024): a VP-SDE restricted to high-frequency k-space.

    With ``P = Mhat`` the orthogonal projector onto the k-space outside the low-frequency mask ``M``,
    ``P x = c2r(ifft2c((1 - M) * fft2c(r2c(x))))`` on real ``(B, 2, H, W)`` ``[real, imag]`` images, the forward SDE
    is ``dx = -beta(t) P x / 2 dt + sqrt(beta(t)) P dw``: the low frequencies ``(I - P) x`` stay fixed and the high
    frequencies follow the VP-SDE. Hence

    - ``marginal_prob``: mean ``x + (exp(c(t)) - 1) P x = (I - P) x + exp(c(t)) P x``, std the VP std, and a sample
      is ``mean + std * P z`` (:meth:`perturb`);
    - ``sde``: drift ``-beta P x / 2``, diffusion ``sqrt(beta)`` ``(B,)`` with the noise entering through
      :meth:`project` (``P``); the samplers in :mod:`medgen.diffusion.samplers` project their noise with it;
    - ``discretize`` (derived here; the official class raises): on ``range(P)`` the process is the VP-SDE, on its
      complement the identity, so DDPM's ancestral step restricted to ``range(P)`` is
      ``f = (sqrt(alpha_i) - 1) P x`` and ``G = sqrt(beta_i)`` with noise ``P z``;
    - ``reverse``: since ``G G^T = beta P``, the exact reverse drift is ``-beta P x / 2 - beta P s``. The official
      Euler-Maruyama predictor uses the UN-projected score (``-beta P x / 2 - beta s``); that is the default here
      (``project_reverse_score=False``), ``project_reverse_score=True`` gives the exact one;
    - ``prior_sampling`` is the official ``N(0, I)`` draw; the prior the sampler really starts from is
      ``A_low^H y + P z`` (:meth:`conditional_prior_sampling` with the measured low-frequency image).

    ``langevin_alpha`` is the VP one (``1 - beta_i``; see ``table_size`` for the accelerated-sampling quirk).

    Args:
        low_frequency_mask: k-space mask ``M`` (1 = low frequency, kept fixed), shape ``(H, W)`` or broadcastable to
            ``(B, 1, H, W)`` (e.g. HFS-SDE's ``(1, 1, H, W)``); real, bool or complex (real part used); DC at index
            ``n // 2`` (centred k-space, :func:`medgen.physics.mri.fft2c`).
        beta_min: ``beta(0)``.
        beta_max: ``beta(1)``.
        N: number of discretisation steps.
        table_size: see :class:`VPSDE`.
        project_reverse_score: default of :meth:`reverse`'s ``project_score`` (``False``: official predictor).
    """

    def __init__(
        self,
        low_frequency_mask: torch.Tensor,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        N: int = 1000,
        table_size: int | None = None,
        project_reverse_score: bool = False,
    ) -> None:
        super().__init__(beta_min, beta_max, N, table_size)
        self.project_reverse_score = project_reverse_score
        if not isinstance(low_frequency_mask, torch.Tensor):
            raise TypeError(f"low_frequency_mask must be a torch.Tensor, got {type(low_frequency_mask).__name__}.")
        if low_frequency_mask.ndim < 2:
            raise ValueError(
                f"low_frequency_mask must be shaped (..., H, W), got shape {tuple(low_frequency_mask.shape)}."
            )
        mask = low_frequency_mask.real if low_frequency_mask.is_complex() else low_frequency_mask
        self.low_frequency_mask = mask.to(torch.float32)

    def to(self, device: torch.device | str) -> HFSSDE:
        """Move the mask to ``device`` (it is otherwise moved on every call); returns ``self``."""
        self.low_frequency_mask = self.low_frequency_mask.to(device)
        return self

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``P x = c2r(ifft2c((1 - M) fft2c(r2c(x))))``: keep the high-frequency part of a ``(B, 2, H, W)`` image."""
        if x.shape[1] % 2 or tuple(x.shape[-2:]) != tuple(self.low_frequency_mask.shape[-2:]):
            raise ValueError(
                "x must be shaped (B, 2, H, W) ([real, imag] channels) with (H, W) = "
                f"{tuple(self.low_frequency_mask.shape[-2:])}, got {tuple(x.shape)}."
            )
        keep = 1.0 - self.low_frequency_mask.to(device=x.device, dtype=x.dtype)
        return complex_to_channels(ifft2c(keep * fft2c(channels_to_complex(x)))).to(x.dtype)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = as_time(t, x)
        beta_t = self.beta(t)
        return -0.5 * batch_broadcast(beta_t, x) * self.project(x), torch.sqrt(beta_t)

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_mean = self.log_mean_coeff(as_time(t, x))
        mean = (torch.exp(batch_broadcast(log_mean, x)) - 1.0) * self.project(x) + x
        return mean, torch.sqrt(1.0 - torch.exp(2.0 * log_mean))

    def conditional_prior_sampling(
        self, low_frequency_image: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """HFS-SDE's starting point ``x_T = A_low^H y + P z``, ``z ~ N(0, I)``.

        Args:
            low_frequency_image: ``(B, 2, H, W)`` image of the measured low frequencies, e.g. the coil-combined
                ``sum_c conj(S_c) ifft2c(M y_c)`` in ``[real, imag]`` channels.
            generator: source of ``z`` (on the image's device).
        """
        z = torch.randn(
            low_frequency_image.shape,
            generator=generator,
            device=low_frequency_image.device,
            dtype=low_frequency_image.dtype,
        )
        return low_frequency_image + self.project(z)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = as_time(t, x)
        index = _table_index(t, self.N, self.T)
        beta = self.discrete_betas.to(t.device)[index]
        alpha = self.alphas.to(t.device)[index]
        return (batch_broadcast(torch.sqrt(alpha), x) - 1.0) * self.project(x), torch.sqrt(beta)

    def reverse(
        self, score_fn: ScoreFn, probability_flow: bool = False, project_score: bool | None = None
    ) -> ReverseSDE:
        """Reverse-time SDE; ``project_score=False`` is the official (un-projected score) drift, see the class doc.

        ``project_score=None`` uses the constructor's ``project_reverse_score``.
        """
        if project_score is None:
            project_score = self.project_reverse_score
        return ReverseSDE(self, score_fn, probability_flow, project_score=project_score)
