"""Noise schedules: DDPM beta schedules (guided-diffusion), VE geometric sigmas (score_sde) and Karras/EDM sigmas."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "betas_for_alpha_bar",
    "named_beta_schedule",
    "geometric_sigmas",
    "karras_sigmas",
]


def _check_count(n: int, name: str = "n", minimum: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}.")


def linear_beta_schedule(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """guided-diffusion's linear schedule, rescaled so every ``num_timesteps`` covers the same noise range as 1000.

    ``betas = linspace(beta_start * 1000 / T, beta_end * 1000 / T, T)`` in float64 (DDPM, Ho et al. 2020).

    Args:
        num_timesteps: number of diffusion steps ``T``.
        beta_start: first beta of the 1000-step schedule.
        beta_end: last beta of the 1000-step schedule.

    Returns:
        float64 tensor of shape ``(T,)``.
    """
    _check_count(num_timesteps, "num_timesteps")
    scale = 1000.0 / num_timesteps
    # numpy's linspace, as the official code uses: torch's differs in the last bit for some entries
    return torch.from_numpy(np.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=np.float64))


def betas_for_alpha_bar(
    num_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> torch.Tensor:
    """Betas that discretise a cumulative ``alpha_bar(t)`` on ``t`` in ``[0, 1]``: ``1 - alpha_bar(t2)/alpha_bar(t1)``.

    Args:
        num_timesteps: number of diffusion steps ``T``.
        alpha_bar: function of the continuous time ``t`` in ``[0, 1]`` giving the cumulative product of ``1 - beta``.
        max_beta: upper clip of each beta (avoids a singular last step).

    Returns:
        float64 tensor of shape ``(T,)``.
    """
    _check_count(num_timesteps, "num_timesteps")
    betas = []
    for i in range(num_timesteps):
        t1, t2 = i / num_timesteps, (i + 1) / num_timesteps
        betas.append(min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return torch.tensor(betas, dtype=torch.float64)


def cosine_beta_schedule(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021): ``alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2)^2``.

    Args:
        num_timesteps: number of diffusion steps ``T``.
        s: small offset that keeps beta from being tiny near ``t = 0``.

    Returns:
        float64 tensor of shape ``(T,)``.
    """
    return betas_for_alpha_bar(num_timesteps, lambda t: math.cos((t + s) / (1 + s) * math.pi / 2) ** 2)


def named_beta_schedule(name: str, num_timesteps: int) -> torch.Tensor:
    """guided-diffusion's ``get_named_beta_schedule``: ``"linear"`` or ``"cosine"``.

    Raises:
        ValueError: unknown ``name``.
    """
    if name == "linear":
        return linear_beta_schedule(num_timesteps)
    if name == "cosine":
        return cosine_beta_schedule(num_timesteps)
    raise ValueError(f"schedule name must be 'linear' or 'cosine', got {name!r}.")


def geometric_sigmas(
    n: int, sigma_min: float, sigma_max: float, descending: bool = False, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """VE-SDE discrete noise levels ``exp(linspace(log sigma_min, log sigma_max, n))`` (score_sde ``discrete_sigmas``).

    Args:
        n: number of noise levels.
        sigma_min: smallest standard deviation (data units).
        sigma_max: largest standard deviation (data units).
        descending: return them from ``sigma_max`` down (NCSN's order) instead of ascending (score_sde's order).
        dtype: output dtype (score_sde computes them in float32).

    Returns:
        tensor of shape ``(n,)``.
    """
    _check_count(n)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}.")
    sigmas = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n, dtype=dtype))
    return sigmas.flip(0) if descending else sigmas


def karras_sigmas(
    n: int,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
    append_zero: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Karras et al. (EDM) noise levels ``(smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``, descending.

    As in EDM's and PaDIS's samplers the grid is computed in float64 and a final ``0`` is appended.

    Args:
        n: number of noise levels (``>= 2``), not counting the appended zero.
        sigma_min: last (smallest) sigma.
        sigma_max: first (largest) sigma.
        rho: the schedule exponent (7 in EDM and PaDIS).
        append_zero: append a final ``0`` (the sampler's end point).
        dtype: output dtype.

    Returns:
        tensor of shape ``(n + 1,)`` (or ``(n,)`` without ``append_zero``), sigmas in data units.
    """
    _check_count(n, minimum=2)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}.")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}.")
    i = torch.arange(n, dtype=torch.float64)
    max_inv, min_inv = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv + i / (n - 1) * (min_inv - max_inv)) ** rho
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(dtype)
