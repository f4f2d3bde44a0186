"""Guidance and data consistency: small pieces the inferers compose with the samplers.

- :func:`denoised_from_score` (Tweedie) and :func:`dps_gradient`: diffusion posterior sampling as TPDM and PaDIS do it
  (gradient of the UN-squared residual norm over the whole minibatch, through the network, constant weight).
- :func:`operator_residual`: ``x0 -> A(x0) - y`` for any :class:`~medgen.physics.base.LinearOperator`.
- :func:`hfs_data_consistency`: HFS-SDE's gradient ``A^H(A x - y)`` rescaled to the score's norm.
- :func:`kspace_replacement`: hard k-space data consistency (replace the sampled k-space of ``x`` by ``y``).
- :func:`zsr_decoupled_projection` / :func:`zsr_residual`: TPDM's orthogonal-decoupling pieces for MR-ZSR, on a
  :class:`~medgen.physics.zaxis.ZAxisAverage`.
- :func:`classifier_free_guidance`: ``eps_u + s (eps_c - eps_u)`` on the first channels (SDM).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medgen.diffusion.sde import batch_broadcast
from medgen.physics.base import LinearOperator
from medgen.physics.mri import fft2c, ifft2c
from medgen.physics.zaxis import ZAxisAverage

__all__ = [
    "denoised_from_score",
    "dps_gradient",
    "operator_residual",
    "hfs_data_consistency",
    "kspace_replacement",
    "zsr_decoupled_projection",
    "zsr_residual",
    "classifier_free_guidance",
]


def denoised_from_score(
    x: torch.Tensor, score: torch.Tensor, std: torch.Tensor | float, mean_scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Tweedie's estimate ``x0_hat = (x + std^2 * score) / mean_scale`` of ``E[x_0 | x_t = x]``.

    For the VE-SDE ``mean_scale = 1`` and ``std = sigma(t)`` (TPDM: ``x + sigma^2 s``); for the VP-SDE
    ``mean_scale = exp(c(t))``.

    Args:
        x: noisy sample ``(B, C, *spatial)``.
        score: the score at ``x``, same shape.
        std: marginal standard deviation, a float or ``(B,)``.
        mean_scale: scale of the marginal mean, a float or ``(B,)``.
    """
    std = torch.as_tensor(std, device=x.device, dtype=x.dtype)
    mean_scale = torch.as_tensor(mean_scale, device=x.device, dtype=x.dtype)
    return (x + batch_broadcast(std, x) ** 2 * score) / batch_broadcast(mean_scale, x)


def dps_gradient(
    x: torch.Tensor,
    x0_hat: torch.Tensor,
    residual: Callable[[torch.Tensor], torch.Tensor],
    weight: float = 1.0,
    retain_graph: bool = False,
) -> torch.Tensor:
    """``weight * grad_x || residual(x0_hat) ||_2``: the DPS data-consistency gradient (Chung et al., ICLR 2023).

    As in TPDM and PaDIS the norm is NOT squared and is taken over the whole minibatch (all items together, complex
    residuals by modulus), so the effective step depends on the minibatch; the gradient flows through ``x0_hat``,
    i.e. through the network that produced it. The caller subtracts the result from the sampler's ``x`` and
    ``x_mean``.

    Args:
        x: the sampler step's input, with ``requires_grad=True`` and ``x0_hat`` computed from it.
        x0_hat: the denoised estimate (e.g. :func:`denoised_from_score`).
        residual: maps ``x0_hat`` to the measurement residual (e.g. :func:`operator_residual`).
        weight: constant step weight (TPDM's ``dps_weight``, PaDIS's ``zeta``).
        retain_graph: keep the autograd graph (for a second gradient through the same graph).

    Returns:
        tensor shaped like ``x``, detached.

    Raises:
        ValueError: ``x`` does not require grad.
    """
    if not x.requires_grad:
        raise ValueError("x must require grad (call x.requires_grad_() before computing the score/x0_hat from it).")
    loss = torch.linalg.vector_norm(residual(x0_hat))
    (grad,) = torch.autograd.grad(loss, x, retain_graph=retain_graph)
    return grad * weight


def operator_residual(operator: LinearOperator, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x0 -> operator(x0) - y`` (the DPS residual of a linear measurement ``y = A x``)."""
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a medgen LinearOperator, got {type(operator).__name__}.")
    return lambda x0: operator(x0) - y


def hfs_data_consistency(
    x: torch.Tensor, score: torch.Tensor, operator: LinearOperator, y: torch.Tensor, weight: float
) -> torch.Tensor:
    """HFS-SDE's data-consistency term ``g * ||score|| / ||g|| * weight`` with ``g = A^H (A x - y)``.

    The norms are over the whole batch tensor (the official code couples batch items). Subtract the result from the
    score (pass ``guidance=lambda x, s: -hfs_data_consistency(x, s, A, y, lam)`` to the samplers): the corrector
    uses ``weight = corrector_mse`` with the projected score, the predictor ``weight = mse`` with the raw score.
    Where the official code divides 0 by 0 (``g = 0``, data already consistent) this returns zeros.

    Args:
        x: current sample, e.g. ``(B, 2, H, W)`` real ``[real, imag]``.
        score: the score the term is matched to, same shape.
        operator: ``A`` (e.g. ``CartesianMRI.from_hfs(mask, csm)``), acting on ``x``'s layout.
        y: measurement in ``A``'s output layout.
        weight: ``lam``.

    Returns:
        tensor shaped like ``x``.
    """
    g = operator.adjoint(operator(x) - y)
    g_norm = torch.linalg.vector_norm(g)
    scale = torch.where(g_norm > 0, torch.linalg.vector_norm(score) / g_norm, torch.zeros_like(g_norm))
    return g * scale * weight


def kspace_replacement(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sensitivity_maps: torch.Tensor | None = None
) -> torch.Tensor:
    """Hard data consistency: replace the sampled k-space of ``x`` by the measurement ``y`` (centred orthonormal FFT).

    Single coil: ``F^H((1 - M) F x + M y)``. Multi-coil: each coil image ``S_c x`` gets its k-space replaced and the
    coils are recombined with ``sum_c conj(S_c) (.)``, which returns ``x`` unchanged where ``M y = M F S x`` when
    ``sum_c |S_c|^2 = 1`` (ESPIRiT-normalised maps).

    Args:
        x: complex image ``(B, 1, ..., H, W)``.
        y: complex k-space ``(B, Nc, ..., H, W)`` (``Nc = 1`` without maps), zero-filled outside ``mask``.
        mask: sampling mask broadcastable to ``y``, 0/1.
        sensitivity_maps: complex coil maps ``(B, Nc, ..., H, W)`` or ``None``.

    Returns:
        complex image shaped like ``x``.
    """
    if not x.is_complex() or not y.is_complex():
        raise TypeError(f"x and y must be complex tensors, got {x.dtype} and {y.dtype}.")
    mask = mask.to(device=y.device, dtype=y.real.dtype)
    coils = x if sensitivity_maps is None else sensitivity_maps * x
    kspace = fft2c(coils)
    coils = ifft2c((1 - mask) * kspace + mask * y)
    if sensitivity_maps is None:
        return coils
    return torch.sum(sensitivity_maps.conj() * coils, dim=1, keepdim=True)


def zsr_decoupled_projection(
    x: torch.Tensor, measurement_dagger: torch.Tensor, operator: ZAxisAverage
) -> torch.Tensor:
    """TPDM's MR-ZSR projection: keep ``x``'s decoupled coefficients that ``A`` does not see, take the measured ones
    from ``A^+ y``: ``couple(decouple(A^+ y) * m + decouple(x) * (1 - m))``.

    ``A(result) == A(A^+ y)``. medgen's corrected TPDM initialisation is this projection of the prior noise. The
    official TPDM code instead masks the noise in IMAGE space before decoupling,
    ``couple(decouple(A^+ y) * m + decouple(noise * (1 - m)))``, which is not consistent with the measurement; the
    perpendicular-slice inferer reproduces that with ``zsr_official_init=True``.

    Args:
        x: full-resolution tensor (e.g. ``(N, 1, Y, Z)`` coronal slices, z along ``operator.axis``).
        measurement_dagger: ``operator.pseudo_inverse(y)``, shaped like ``x``.
        operator: the :class:`~medgen.physics.zaxis.ZAxisAverage` of the measurement.
    """
    mask = operator.measured_mask(x)
    return operator.couple(operator.decouple(measurement_dagger) * mask + operator.decouple(x) * (1 - mask))


def zsr_residual(
    x0_hat: torch.Tensor,
    measurement_dagger: torch.Tensor,
    operator: ZAxisAverage,
    noise_std: torch.Tensor | float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """TPDM's MR-ZSR DPS residual ``couple(decouple(x0_hat) m - (decouple(A^+ y) + std * noise) m)``.

    TPDM compares the DENOISED ``x0_hat`` with the measurement noised to the current level (``std = sigma(t)``,
    ``noise`` a fresh standard normal draw made after the sampler step); ``noise_std=0`` gives the plain residual.

    Args:
        x0_hat: denoised estimate, full resolution.
        measurement_dagger: ``operator.pseudo_inverse(y)``, shaped like ``x0_hat``.
        operator: the :class:`~medgen.physics.zaxis.ZAxisAverage`.
        noise_std: float or ``(B,)``.
        noise: standard normal tensor shaped like ``x0_hat`` (required when ``noise_std`` is not 0).
    """
    mask = operator.measured_mask(x0_hat)
    target = operator.decouple(measurement_dagger)
    std = torch.as_tensor(noise_std, device=x0_hat.device, dtype=x0_hat.dtype)
    if noise is not None:
        target = target + noise * batch_broadcast(std, x0_hat)
    elif bool(torch.any(std != 0)):
        raise ValueError("noise must be given when noise_std is not 0.")
    return operator.couple(operator.decouple(x0_hat) * mask - target * mask)


def classifier_free_guidance(
    conditional: torch.Tensor, unconditional: torch.Tensor, scale: float, channels: int | None = None
) -> torch.Tensor:
    """Classifier-free guidance ``eps_u + s (eps_c - eps_u)`` on the first ``channels`` output channels.

    SDM (and the CTCA model) guide only the noise prediction ``[:, :channels]`` and keep the rest of the conditional
    output (the learned-variance channels) as is; ``scale = 1`` returns the conditional output.

    Args:
        conditional: network output with the condition ``(B, C_out, *spatial)``.
        unconditional: network output with the null condition, same shape.
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
