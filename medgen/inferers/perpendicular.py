"""TPDM: 3D sampling and inverse problems with two 2D score models on perpendicular planes (Lee et al., ICCV 2023).

A volume is treated as a stack of 2D slices along one axis (the *primary* plane) and, every ``K``-th step, along a
perpendicular axis (the *auxiliary* plane). Each step is one predictor-corrector step of the VE-SDE on all slices of
the current plane with that plane's 2D score network; the noise level advances every step. On primary steps a DPS
gradient pulls the slices towards a measurement (MR z-axis super-resolution, compressed-sensing MRI, sparse-view CT).

Example (runs as is; a random tiny network generates noise-like volumes)::

    import torch
    from medgen.inferers.perpendicular import PerpendicularSliceInferer
    from medgen.networks.ncsnpp import NCSNpp

    net = NCSNpp(image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).eval()
    inferer = PerpendicularSliceInferer(task="uncond", steps=4, K=2, batch_size=8, seed=0, progress=False)
    volume = inferer((16, 16, 16), net)  # MetaTensor (1, 1, 16, 16, 16)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from medgen.diffusion.guidance import (
    denoised_from_score,
    dps_gradient,
    zsr_decoupled_projection,
    zsr_residual,
)
from medgen.diffusion.samplers import NORM_REDUCTIONS, langevin_corrector, reverse_diffusion_predictor
from medgen.diffusion.sde import VESDE
from medgen.inferers.base import SamplingInferer, network_parameter
from medgen.checks import check_int, check_number
from medgen.physics.base import LinearOperator
from medgen.checks import check_choice
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage

__all__ = [
    "PerpendicularSliceInferer",
    "tpdm_pc_step",
    "Residual",
    "PLANE_PRESETS",
    "TPDM_ZSR_DPS_WEIGHTS",
    "TASKS",
]

TASKS = ("uncond", "zsr", "csmri", "svct")

Residual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``residual(x0_hat, sigma) -> r``: the measurement residual of denoised slices ``(n, 1, H, W)`` at noise level
``sigma`` ``(n,)``; DPS descends ``||r||_2``."""

PLANE_PRESETS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    # hyn2028/tpdm uncond and MR-ZSR: BMR volumes stored as [X, 1, Y, Z] (coronal slices), auxiliary
    # x.permute(3, 1, 0, 2) -> [Z, 1, X, Y] (axial slices)
    "tpdm_mri": ((0, 1, 2), (2, 0, 1)),
    # hyn2028/tpdm SV-CT: AAPM volumes stored as [Z, 1, X, Y] (axial slices), auxiliary
    # x.permute(2, 1, 3, 0) -> [X, 1, Y, Z]; the official CS-MRI applies this one to BMR data too (copy-paste)
    "tpdm_ct": ((0, 1, 2), (1, 2, 0)),
}
"""Named ``(primary_plane, auxiliary_plane)`` pairs; a plane is ``(slice_axis, row_axis, col_axis)`` of the volume's
spatial axes ``(D0, D1, D2)``, and the official 4D tensor ``[S, 1, H, W]`` is the volume ``(S, H, W)``."""

TPDM_ZSR_DPS_WEIGHTS: dict[int, float] = {5: 4.0, 4: 3.0, 3: 2.0, 2: 1.0}
"""hyn2028/tpdm's automatic MR-ZSR DPS weights by factor (tuned for its minibatch size 6 and BMR data)."""


# ----------------------------------------------------------------------------------------------- one TPDM step


def _normal_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.randn_like(x)`` drawn from ``generator``.

    ``randn_like`` keeps ``x``'s memory layout and fills it in memory order (and, on the CPU, a non-contiguous
    tensor goes through a different sampling kernel than a contiguous one), so on a permuted slice stack its
    values differ from ``randn(x.shape)``; TPDM draws its noise this way on permuted volumes.
    """
    return torch.empty_like(x).normal_(generator=generator)


def _dps_step_gradient(
    x: torch.Tensor,
    score: torch.Tensor,
    sde: VESDE,
    t: torch.Tensor,
    residual: Residual,
    weight: float,
    norm_reduction: str,
) -> torch.Tensor:
    sigma = sde.sigma(t)
    x0_hat = denoised_from_score(x, score, sigma)
    if norm_reduction == "batch_mean":
        return dps_gradient(x, x0_hat, lambda x0: residual(x0, sigma), weight)
    r = residual(x0_hat, sigma)
    loss = torch.linalg.vector_norm(r.reshape(r.shape[0], -1), dim=1).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return grad * weight


def tpdm_pc_step(
    x: torch.Tensor,
    t: torch.Tensor | float,
    sde: VESDE,
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    snr: float = 0.16,
    residual: Residual | None = None,
    dps_weight: float = 0.0,
    norm_reduction: str = "batch_mean",
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One TPDM minibatch step: Langevin corrector, then reverse-diffusion predictor, at the same time ``t``.

    With a ``residual`` and a non-zero ``dps_weight`` each of the two sub-steps is followed by a DPS update (TPDM's
    ``get_tpdm_*_update_fn``): ``x0_hat = x + sigma(t)^2 s(x)`` from the score at the sub-step's input ``x``,
    ``g = grad_x ||residual(x0_hat, sigma)||`` through the network, and ``g * dps_weight`` is subtracted from the
    sub-step's ``x`` and ``x_mean``. The residual is called after the sub-step's own noise draw (TPDM's MR-ZSR draws
    its measurement noise there). Without DPS the step runs under ``torch.no_grad``; with it, under
    ``torch.enable_grad`` (so it also works inside a no-grad evaluator).

    Args:
        x: slices ``(n, 1, H, W)`` at noise level ``sigma(t)``.
        t: continuous time in ``(0, 1]`` (``sigma(t) = sigma_min (sigma_max / sigma_min)^t``), scalar or ``(n,)``.
        sde: the VE-SDE.
        score_fn: ``score_fn(x, t) -> score``.
        snr: Langevin signal-to-noise ratio.
        residual: measurement residual for DPS, or ``None``.
        dps_weight: constant DPS step weight (``0`` disables DPS).
        norm_reduction: ``"batch_mean"`` (TPDM: Langevin norms averaged over the minibatch, DPS norm over the whole
            minibatch) or ``"per_sample"`` (per-slice Langevin step sizes; DPS descends the sum of per-slice norms).
        noise: ``(corrector_noise, predictor_noise)`` standard normal draws shaped like ``x``; drawn from
            ``generator`` if ``None``, as ``torch.randn_like`` of each sub-step's input (layout-preserving, as
            TPDM), the predictor's after the corrector and its DPS.
        generator: random generator on ``x``'s device.

    Returns:
        ``(x, x_mean)`` of the predictor (after DPS), detached.
    """
    if norm_reduction not in NORM_REDUCTIONS:
        raise ValueError(f"norm_reduction must be one of {NORM_REDUCTIONS}, got {norm_reduction!r}.")
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    t = t.expand(x.shape[0]) if t.ndim == 0 else t
    use_dps = residual is not None and dps_weight != 0
    x = x.detach()
    for k, sub_step in enumerate(("corrector", "predictor")):
        z = _normal_like(x, generator) if noise is None else noise[k]
        kwargs: dict[str, Any] = {"noise": z, "return_score": True}
        if not use_dps:
            with torch.no_grad():
                if sub_step == "corrector":
                    x, x_mean, _ = langevin_corrector(x, t, sde, score_fn, snr, norm_reduction=norm_reduction, **kwargs)
                else:
                    x, x_mean, _ = reverse_diffusion_predictor(x, t, sde, score_fn, **kwargs)
            continue
        with torch.enable_grad():
            x_in = x.detach().requires_grad_()
            if sub_step == "corrector":
                x, x_mean, score = langevin_corrector(
                    x_in, t, sde, score_fn, snr, norm_reduction=norm_reduction, **kwargs
                )
            else:
                x, x_mean, score = reverse_diffusion_predictor(x_in, t, sde, score_fn, **kwargs)
            grad = _dps_step_gradient(x_in, score, sde, t, residual, dps_weight, norm_reduction)
        x = (x - grad).detach()
        x_mean = (x_mean - grad).detach()
    return x, x_mean


# ------------------------------------------------------------------------------------------------- planes


def _as_plane(plane: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """``(slice_axis, row_axis, col_axis)`` from an axis (other two in increasing order) or a permutation."""
    if isinstance(plane, int) and not isinstance(plane, bool):
        if not -3 <= plane <= 2:
            raise ValueError(f"{name} must be a spatial axis in [-3, 2] or a permutation of (0, 1, 2), got {plane}.")
        axis = plane % 3
        rest = [a for a in range(3) if a != axis]
        return axis, rest[0], rest[1]
    if isinstance(plane, Sequence) and not isinstance(plane, str) and len(plane) == 3:
        if all(isinstance(a, int) and not isinstance(a, bool) and -3 <= a <= 2 for a in plane):
            axes = tuple(a % 3 for a in plane)
            if sorted(axes) == [0, 1, 2]:
                return axes  # type: ignore[return-value]
    raise ValueError(
        f"{name} must be a spatial axis (int in [-3, 2]) or a permutation (slice_axis, row_axis, col_axis) of "
        f"(0, 1, 2), got {plane!r}."
    )


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _to_stack(volume: torch.Tensor, plane: tuple[int, int, int]) -> torch.Tensor:
    """``(D0, D1, D2)`` -> slices ``(S, 1, R, C)`` of ``plane``."""
    return volume.permute(plane).unsqueeze(1)


def _from_stack(stack: torch.Tensor, plane: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`_to_stack`."""
    return stack.squeeze(1).permute(_inverse(plane))


def _split(stack: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """TPDM's minibatches: ``torch.tensor_split`` into ``ceil(S / batch_size)`` near-equal chunks."""
    return torch.tensor_split(stack, math.ceil(stack.shape[0] / batch_size))


# ---------------------------------------------------------------------------------------------- the inferer


class PerpendicularSliceInferer(SamplingInferer):
    """TPDM (hyn2028/tpdm) as a MONAI inferer: 3D sampling with two 2D VE-SDE score models on perpendicular planes.

    The volume ``(B, 1, D0, D1, D2)`` is sampled by ``steps`` predictor-corrector steps of
    ``VESDE(sigma_min, sigma_max, steps)`` at times ``t_i = linspace(1, eps, steps)[i]``. Step ``i`` is a *primary*
    step (all slices of ``primary_plane``, primary network, DPS towards the measurement) or an *auxiliary* step (all
    slices of ``auxiliary_plane``, auxiliary network, unconditional, under ``no_grad``):

    - ``K`` int ``>= 2``: ``K - 1`` primary steps then one auxiliary step (``i % K != K - 1`` is primary);
    - ``K`` float ``> 0``: auxiliary with probability ``1 / K`` (``rand(1) > 1 / K`` is primary, one draw per step
      from the seeded generator, before the step's other draws).

    Slices are processed in ``ceil(S / batch_size)`` minibatches (``torch.tensor_split``: near-equal sizes). Each
    minibatch step is :func:`tpdm_pc_step`; the networks are called as ``network(x, sigma)`` with slices
    ``(n, 1, H, W)`` and ``sigma = sigma(t)`` ``(n,)`` in data units, returning the score (as
    :class:`~medgen.networks.ncsnpp.NCSNpp`; put them in eval mode).

    Tasks and ``__call__`` inputs (all ``(B, 1, D0, D1, D2)`` MetaTensors/tensors, output volume likewise):

    - ``"uncond"``: ``inputs`` is the output shape (``(D0, D1, D2)`` or ``(B, 1, D0, D1, D2)``) or a template volume
      (its shape, device, dtype and meta are used). Prior ``N(0, sigma_max^2)``.
    - ``"zsr"`` (MR z-axis super-resolution): ``inputs`` is the low-resolution volume whose ``zsr_axis`` holds
      ``M`` means of ``factor`` consecutive samples (:class:`~medgen.physics.zaxis.ZAxisAverage`); the output has
      ``length`` (default ``M * factor``) samples there, the trailing ``length % factor`` unmeasured (cropped, as
      TPDM). ``zsr_axis`` must lie in the primary plane (TPDM: the columns of the coronal slices). Init: TPDM's
      decoupled projection of prior noise onto the measured block means; DPS residual in the decoupled basis.
      The output affine is the input's refined along ``zsr_axis`` (spacing / factor, first voxel centre moved by
      ``-(factor - 1) / 2`` new voxels so that each block is centred on its low-resolution voxel).
    - ``"csmri"``: ``inputs`` is the complex k-space volume, the 2D transform ``fftshift(fft2(.))`` (TPDM's,
      un-normalised; :class:`~medgen.physics.mri.CartesianMRI` ``convention="tpdm"``) of each primary slice, with its
      sampling ``mask`` (``mask=`` argument): ``(R, C)`` in the primary plane's row/col order, shared by all slices,
      or broadcastable to the volume. Init: prior noise.
    - ``"svct"``: ``inputs`` is the sinogram volume as :class:`~medgen.physics.ct.ParallelBeamCT` gives it for the
      primary slice axis: the slice axis kept, the two in-plane axes (in increasing order) replaced by
      ``(num_detectors, num_angles)``. ``operator`` (e.g. ``ParallelBeamCT.tpdm(image_size=256, sparsity=5)``) maps
      slices ``(n, 1, H, W)`` (``(H, W) = operator.image_size``, axes in increasing volume order) to sinograms. Init:
      prior noise.

    Planes: ``primary_plane``/``auxiliary_plane`` are spatial axes of ``(D0, D1, D2)`` holding the slices (the other
    two axes, in increasing order, are the image rows and columns) or full ``(slice_axis, row_axis, col_axis)``
    permutations when the in-plane orientation the network was trained on matters; ``planes`` names a preset of
    :data:`PLANE_PRESETS`. Defaults: ``"tpdm_mri"`` (primary ``(0, 1, 2)``, auxiliary ``(2, 0, 1)``) for uncond,
    zsr and (corrected) csmri; ``"tpdm_ct"`` (auxiliary ``(1, 2, 0)``) for svct and for csmri with ``parity=True``.

    ``parity=True`` reproduces hyn2028/tpdm's loop number for number (float32, seeded CPU generator equals the official
    ``torch.manual_seed``), including its quirks. The default mode fixes them; every difference, with its flag
    (``None`` = follow ``parity``):

    1. ``keep_predictor_noise`` (official: False). TPDM stores the predictor's ``x_mean`` as the next state, so the
       predictor noise ``G z`` is drawn but dropped every step (only the corrector injects noise). Fixed: the next
       state is the predictor's noisy ``x``, except after the last step, whose ``x_mean`` is the output (as TPDM's
       ``denoise=True``).
    2. ``norm_reduction`` (default ``"batch_mean"`` in both modes, as the DPS weights are tuned for it):
       ``"per_sample"`` gives each slice its own Langevin step size and makes DPS descend the sum of per-slice
       residual norms, so a slice's update no longer depends on which slices share its minibatch (``batch_size``
       then only trades memory for speed). With ``"per_sample"`` a weight ``w`` acts roughly like ``w * sqrt(n)``
       with ``"batch_mean"`` (``n`` slices per minibatch). Not allowed with ``parity=True``.
    3. CS-MRI auxiliary plane: the official CS-MRI reuses SV-CT's permutation on MRI data (a different auxiliary plane
       than its MR-ZSR/uncond, whose comments it copies); fixed by the default ``planes`` above.
    4. ``zsr_official_init`` (official: True). TPDM masks the prior noise in the IMAGE domain before decoupling
       (``couple(decouple(A^+ y) m + decouple(noise (1 - m)))``), so noise leaks into the measured block means and the
       initial volume is not consistent with ``y``. Fixed: :func:`~medgen.diffusion.guidance.zsr_decoupled_projection`
       (``A(x_init) = y`` exactly).
    5. ``zsr_noisy_target`` (official: True). TPDM's ZSR residual compares the DENOISED ``x0_hat`` with the measurement
       noised to level ``sigma(t)`` (an extra normal draw after each sub-step). Fixed: compared with the clean
       measurement (no extra draws).

    Kept in both modes (TPDM's method, not bugs): DPS only on primary steps, after the corrector AND after the
    predictor, gradient of the UN-squared residual norm through the network, constant weight; the output is the last
    step's ``x_mean``; all four tasks use the same loop.

    ``B > 1``: the ``B`` volumes are sampled together step by step (each step visits volume 0's minibatches, then
    volume 1's, ...; minibatches never mix volumes; one float-``K`` draw per step is shared). With one generator the
    draws interleave, so volume ``b`` of a batch differs from the same volume sampled alone.

    Args:
        task: ``"uncond"``, ``"zsr"``, ``"csmri"`` or ``"svct"``.
        steps: number of PC steps ``N`` (TPDM: 2000).
        K: primary/auxiliary schedule (TPDM: 2; SV-CT 2.7).
        batch_size: slices per minibatch (TPDM: 32 uncond, 6 otherwise); changes results under ``"batch_mean"``.
        snr: Langevin signal-to-noise ratio.
        dps_weight: constant DPS weight; default: :data:`TPDM_ZSR_DPS_WEIGHTS` for zsr, required for csmri/svct.
        factor: z-axis factor of zsr.
        zsr_axis: spatial axis averaged by zsr (default: the primary plane's column axis).
        mask: csmri sampling mask (may instead be given to ``__call__``).
        operator: svct forward operator of one slice (required for svct).
        primary_plane: primary plane (see above).
        auxiliary_plane: auxiliary plane.
        planes: preset name of :data:`PLANE_PRESETS` (instead of the two planes).
        sigma_min: smallest VE noise std (TPDM 0.01).
        sigma_max: largest VE noise std (TPDM 378).
        eps: last time of the grid (TPDM 1e-5).
        parity: reproduce the official loop with its quirks (see above).
        keep_predictor_noise: quirk 1 override.
        norm_reduction: ``"batch_mean"`` or ``"per_sample"``.
        zsr_official_init: quirk 4 override.
        zsr_noisy_target: quirk 5 override.
        seed: generator seed (``None``: global RNG).
        progress: progress bar.
        checkpoint_dir: folder to save/resume the sampling state.
        checkpoint_every: save every this many steps.

    Raises:
        ValueError / TypeError: on any invalid argument, naming it.
    """

    def __init__(
        self,
        task: str = "uncond",
        *,
        steps: int = 2000,
        K: int | float = 2,
        batch_size: int = 6,
        snr: float = 0.16,
        dps_weight: float | None = None,
        factor: int | None = None,
        zsr_axis: int | None = None,
        mask: torch.Tensor | None = None,
        operator: LinearOperator | None = None,
        primary_plane: int | Sequence[int] | None = None,
        auxiliary_plane: int | Sequence[int] | None = None,
        planes: str | None = None,
        sigma_min: float = 0.01,
        sigma_max: float = 378.0,
        eps: float = 1e-5,
        parity: bool = False,
        keep_predictor_noise: bool | None = None,
        norm_reduction: str | None = None,
        zsr_official_init: bool | None = None,
        zsr_noisy_target: bool | None = None,
        seed: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        super().__init__(seed=seed, progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
        check_choice(task, "task", TASKS)
        check_int(steps, "steps", 1)
        if isinstance(K, bool) or not isinstance(K, (int, float)):
            raise TypeError(f"K must be an int (deterministic schedule) or a float (random), got {type(K).__name__}.")
        if isinstance(K, int) and K < 2:
            raise ValueError(f"K must be >= 2 when it is an int (K - 1 primary steps, then 1 auxiliary), got {K}.")
        if isinstance(K, float) and not (K > 0 and math.isfinite(K)):
            raise ValueError(f"K must be a finite float > 0 (auxiliary with probability 1 / K), got {K}.")
        check_int(batch_size, "batch_size", 1)
        check_number(snr, "snr", 0.0, open_low=True)
        check_number(eps, "eps", 0.0, 1.0, open_low=True, open_high=True)
        if not isinstance(parity, bool):
            raise TypeError(f"parity must be a bool, got {type(parity).__name__}.")
        self.task = task
        self.steps = steps
        self.K = K
        self.batch_size = batch_size
        self.snr = float(snr)
        self.eps = float(eps)
        self.parity = parity
        self.sde = VESDE(sigma_min, sigma_max, steps)

        # planes
        if planes is not None:
            if primary_plane is not None or auxiliary_plane is not None:
                raise ValueError("give either planes (a preset name) or primary_plane/auxiliary_plane, not both.")
            if planes not in PLANE_PRESETS:
                raise ValueError(f"planes must be one of {tuple(PLANE_PRESETS)}, got {planes!r}.")
            primary, auxiliary = PLANE_PRESETS[planes]
        else:
            default = "tpdm_ct" if task == "svct" or (task == "csmri" and parity) else "tpdm_mri"
            primary = PLANE_PRESETS[default][0] if primary_plane is None else _as_plane(primary_plane, "primary_plane")
            if auxiliary_plane is None:
                if primary_plane is not None:
                    raise ValueError("auxiliary_plane is required when primary_plane is given.")
                auxiliary = PLANE_PRESETS[default][1]
            else:
                auxiliary = _as_plane(auxiliary_plane, "auxiliary_plane")
        if primary[0] == auxiliary[0]:
            raise ValueError(
                f"primary_plane {primary} and auxiliary_plane {auxiliary} slice along the same axis {primary[0]}; "
                "they must be perpendicular."
            )
        self.primary_plane: tuple[int, int, int] = tuple(primary)  # type: ignore[assignment]
        self.auxiliary_plane: tuple[int, int, int] = tuple(auxiliary)  # type: ignore[assignment]

        # quirk flags
        def flag(value: bool | None, official: bool, name: str) -> bool:
            if value is None:
                return official if parity else not official
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool or None, got {type(value).__name__}.")
            if parity and value != official:
                raise ValueError(f"{name}={value} contradicts parity=True (the official behaviour is {official}).")
            return value

        self.keep_predictor_noise = flag(keep_predictor_noise, False, "keep_predictor_noise")
        self.zsr_official_init = flag(zsr_official_init, True, "zsr_official_init")
        self.zsr_noisy_target = flag(zsr_noisy_target, True, "zsr_noisy_target")
        norm_reduction = "batch_mean" if norm_reduction is None else norm_reduction
        check_choice(norm_reduction, "norm_reduction", NORM_REDUCTIONS)
        if parity and norm_reduction != "batch_mean":
            raise ValueError(f"norm_reduction={norm_reduction!r} contradicts parity=True (official: 'batch_mean').")
        self.norm_reduction = norm_reduction

        # task arguments
        self.factor = None
        self.zsr_axis = None
        if task == "zsr":
            check_int(factor, "factor", 1)
            zsr_axis = self.primary_plane[2] if zsr_axis is None else zsr_axis
            if isinstance(zsr_axis, bool) or not isinstance(zsr_axis, int) or not -3 <= zsr_axis <= 2:
                raise ValueError(f"zsr_axis must be a spatial axis in [-3, 2], got {zsr_axis!r}.")
            if zsr_axis % 3 == self.primary_plane[0]:
                raise ValueError(
                    f"zsr_axis {zsr_axis} is the primary slice axis; it must lie in the primary plane "
                    f"{self.primary_plane} (one of axes {self.primary_plane[1:]}), since DPS acts per primary slice."
                )
            self.factor = factor
            self.zsr_axis = zsr_axis % 3
            if dps_weight is None:
                if factor not in TPDM_ZSR_DPS_WEIGHTS:
                    raise ValueError(
                        f"dps_weight is required for factor {factor} (TPDM's automatic weights exist for factors "
                        f"{sorted(TPDM_ZSR_DPS_WEIGHTS)})."
                    )
                dps_weight = TPDM_ZSR_DPS_WEIGHTS[factor]
        elif factor is not None or zsr_axis is not None:
            raise ValueError(f"factor and zsr_axis are arguments of task='zsr', got them with task={task!r}.")
        if task in ("csmri", "svct") and dps_weight is None:
            raise ValueError(f"dps_weight is required for task={task!r} (TPDM: CS-MRI 0.002-0.01, SV-CT 0.025).")
        if task == "uncond":
            if dps_weight not in (None, 0, 0.0):
                raise ValueError(f"dps_weight is meaningless for task='uncond', got {dps_weight!r}.")
            dps_weight = 0.0
        if isinstance(dps_weight, bool) or not isinstance(dps_weight, (int, float)) or not math.isfinite(dps_weight):
            raise ValueError(f"dps_weight must be a finite number, got {dps_weight!r}.")
        self.dps_weight = float(dps_weight)
        if mask is not None and task != "csmri":
            raise ValueError(f"mask is an argument of task='csmri', got it with task={task!r}.")
        if mask is not None and not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}.")
        self.mask = mask
        if task == "svct":
            if not isinstance(operator, LinearOperator):
                raise TypeError(
                    "operator must be a medgen LinearOperator mapping slices (n, 1, H, W) to sinograms for "
                    f"task='svct' (e.g. ParallelBeamCT.tpdm(image_size, sparsity)), got {type(operator).__name__}."
                )
            size = getattr(operator, "image_size", None)
            if not (isinstance(size, Sequence) and len(size) == 2):
                raise TypeError(f"operator must have an image_size (H, W) attribute, got {size!r}.")
        elif operator is not None:
            raise ValueError(f"operator is an argument of task='svct', got it with task={task!r}.")
        self.operator = operator

    # ------------------------------------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """The settings that change the result (part of the resume fingerprint)."""
        return {
            **super().config(),
            "task": self.task,
            "steps": self.steps,
            "K": self.K,
            "batch_size": self.batch_size,
            "snr": self.snr,
            "dps_weight": self.dps_weight,
            "factor": self.factor,
            "zsr_axis": self.zsr_axis,
            "primary_plane": list(self.primary_plane),
            "auxiliary_plane": list(self.auxiliary_plane),
            "sigma_min": self.sde.sigma_min,
            "sigma_max": self.sde.sigma_max,
            "eps": self.eps,
            "parity": self.parity,
            "keep_predictor_noise": self.keep_predictor_noise,
            "norm_reduction": self.norm_reduction,
            "zsr_official_init": self.zsr_official_init,
            "zsr_noisy_target": self.zsr_noisy_target,
            "operator": None
            if self.operator is None
            else f"{type(self.operator).__name__}({self.operator.extra_repr()})",
        }

    # ----------------------------------------------------------------------------------------- networks
    @staticmethod
    def _networks(network: Any) -> tuple[Callable, Callable]:
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
        for name, net in zip(("primary", "auxiliary"), pair):
            if not callable(net):
                raise TypeError(f"the {name} network must be callable as net(x, sigma), got {type(net).__name__}.")
        return pair[0], pair[1]

    def _score_fn(self, net: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        sde = self.sde
        return lambda x, t: net(x, sde.sigma(t))

    # ------------------------------------------------------------------------------------------- inputs
    def _is_primary(self, i: int, generator: torch.Generator | None, device: torch.device) -> bool:
        if isinstance(self.K, int):
            return i % self.K != self.K - 1
        draw = torch.rand(1, generator=generator, device=device if generator is None else generator.device)
        return bool((draw > 1 / self.K).item())

    @staticmethod
    def _check_volume(x: Any, name: str, complex_ok: bool = False) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a tensor (B, 1, D0, D1, D2), got {type(x).__name__}.")
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, C=1, D0, D1, D2), got {tuple(x.shape)}.")
        if x.is_complex() and not complex_ok:
            raise TypeError(f"{name} must be real, got {x.dtype}.")
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"{name} must be floating point, got {x.dtype}.")
        if min(x.shape) < 1:
            raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}.")
        return x

    def _prepare(self, inputs: Any, network: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate everything and return the per-call data (measurement stacks, shapes, device, dtype)."""
        unknown = set(kwargs) - {"mask", "length", "device"}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; accepted: mask, length, device.")
        info: dict[str, Any] = {"like": inputs if isinstance(inputs, torch.Tensor) else None}
        if self.task == "uncond":
            if isinstance(inputs, torch.Tensor):
                self._check_volume(inputs, "inputs")
                shape = tuple(inputs.shape)
                device, dtype = inputs.device, inputs.dtype
            else:
                if not (isinstance(inputs, Sequence) and all(isinstance(s, int) and s >= 1 for s in inputs)):
                    raise TypeError(
                        f"inputs must be a shape (D0, D1, D2) / (B, 1, D0, D1, D2) or a volume, got {inputs!r}."
                    )
                shape = tuple(inputs)
                if len(shape) == 3:
                    shape = (1, 1, *shape)
                if len(shape) != 5 or shape[1] != 1:
                    raise ValueError(f"inputs shape must be (D0, D1, D2) or (B, 1, D0, D1, D2), got {tuple(inputs)}.")
                parameter = network_parameter(network)
                device = torch.device(kwargs.get("device") or (parameter.device if parameter is not None else "cpu"))
                dtype = torch.get_default_dtype()
            info.update(batch=shape[0], spatial=shape[2:], device=device, dtype=dtype)
            return info

        x = self._check_volume(inputs, "inputs", complex_ok=self.task == "csmri")
        batch, device = x.shape[0], x.device
        measured = (x.as_tensor() if isinstance(x, MetaTensor) else x).detach().clone()
        if self.task == "zsr":
            a = self.zsr_axis
            assert a is not None and self.factor is not None
            m = x.shape[2 + a]
            length = kwargs.get("length")
            length = m * self.factor if length is None else length
            if isinstance(length, bool) or not isinstance(length, int) or length // self.factor != m:
                raise ValueError(
                    f"length must be an int L with L // factor == {m} (the low-resolution size along zsr_axis "
                    f"{a}) for factor {self.factor}, i.e. in [{m * self.factor}, {(m + 1) * self.factor - 1}], "
                    f"got {length!r}."
                )
            spatial = list(x.shape[2:])
            spatial[a] = length
            op = ZAxisAverage(self.factor, axis=2 + self.primary_plane[1:].index(a), remainder="crop")
            dagger = [
                op.pseudo_inverse(_to_stack(measured[b, 0], self.primary_plane), length=length) for b in range(batch)
            ]
            info.update(zsr_operator=op, measurement=dagger, length=length)
        elif self.task == "csmri":
            if not measured.is_complex():
                raise TypeError(f"inputs must be complex k-space for task='csmri', got {measured.dtype}.")
            spatial = list(x.shape[2:])
            mask = kwargs.get("mask", self.mask)
            if mask is None:
                raise ValueError("mask is required for task='csmri' (constructor or __call__ argument).")
            if not isinstance(mask, torch.Tensor):
                raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}.")
            mask = mask.detach().to(device)
            mask = mask.real if mask.is_complex() else mask
            mask = mask.to(measured.real.dtype)
            rows, cols = (spatial[a] for a in self.primary_plane[1:])
            if mask.ndim == 2:
                if tuple(mask.shape) != (rows, cols):
                    raise ValueError(
                        f"a 2D mask must have the primary slices' shape (rows, cols) = {(rows, cols)} of plane "
                        f"{self.primary_plane}, got {tuple(mask.shape)}."
                    )
                mask_stack = mask.expand(spatial[self.primary_plane[0]], 1, rows, cols)
                masks = [mask_stack] * batch
            else:
                try:
                    full = mask.expand(batch, 1, *spatial) if mask.ndim <= 5 else None
                except RuntimeError:
                    full = None
                if full is None:
                    raise ValueError(
                        f"mask must be (rows, cols) = {(rows, cols)} or broadcastable to {(batch, 1, *spatial)}, "
                        f"got {tuple(mask.shape)}."
                    )
                masks = [_to_stack(full[b, 0], self.primary_plane) for b in range(batch)]
            kspace = [_to_stack(measured[b, 0], self.primary_plane) for b in range(batch)]
            info.update(measurement=kspace, masks=masks)
        else:  # svct
            op = self.operator
            assert op is not None
            s_axis = self.primary_plane[0]
            detectors, angles = op.sinogram_size if hasattr(op, "sinogram_size") else (None, None)
            in_plane = [a for a in range(3) if a != s_axis]
            sino_shape = tuple(x.shape[2 + a] for a in in_plane)
            if detectors is not None and sino_shape != (detectors, angles):
                raise ValueError(
                    f"inputs must be sinograms with (num_detectors, num_angles) = {(detectors, angles)} on the "
                    f"in-plane axes {tuple(in_plane)} of primary slice axis {s_axis}, got shape {tuple(x.shape)}."
                )
            spatial = [0, 0, 0]
            spatial[s_axis] = x.shape[2 + s_axis]
            spatial[in_plane[0]], spatial[in_plane[1]] = (int(v) for v in op.image_size)
            sinograms = [measured[b, 0].movedim(s_axis, 0).unsqueeze(1) for b in range(batch)]
            info.update(measurement=sinograms, transpose=self.primary_plane[1] > self.primary_plane[2])
        info.update(batch=batch, spatial=tuple(spatial), device=device, dtype=measured.real.dtype)
        if self.dps_weight != 0 and torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"task={self.task!r} with DPS needs autograd, but torch.inference_mode is enabled; call the inferer "
                "outside inference_mode (torch.no_grad is fine) or set dps_weight=0."
            )
        return info

    # ------------------------------------------------------------------------------------------- residuals
    def _residual(self, info: dict[str, Any], b: int, chunk: int, generator: torch.Generator | None):
        """The DPS residual of minibatch ``chunk`` of volume ``b`` (primary plane)."""
        if self.task == "zsr":
            op = info["zsr_operator"]
            dagger = _split(info["measurement"][b], self.batch_size)[chunk]
            if not self.zsr_noisy_target:
                return lambda x0, sigma: zsr_residual(x0, dagger, op)

            def noisy(x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                z = _normal_like(x0, generator)
                return zsr_residual(x0, dagger, op, noise_std=sigma, noise=z)

            return noisy
        if self.task == "csmri":
            kspace = _split(info["measurement"][b], self.batch_size)[chunk]
            mask = _split(info["masks"][b], self.batch_size)[chunk]
            op = CartesianMRI(mask, convention="tpdm", real_image=True)
            return lambda x0, sigma: op(x0) - kspace
        sinogram = _split(info["measurement"][b], self.batch_size)[chunk]
        op = self.operator
        if info["transpose"]:
            return lambda x0, sigma: op(x0.transpose(-1, -2)) - sinogram
        return lambda x0, sigma: op(x0) - sinogram

    def _initial_stack(self, info: dict[str, Any], b: int, generator: torch.Generator | None) -> torch.Tensor:
        spatial = info["spatial"]
        shape = (spatial[self.primary_plane[0]], 1, *(spatial[a] for a in self.primary_plane[1:]))
        prior = self.sde.prior_sampling(shape, generator=generator, device=info["device"], dtype=info["dtype"])
        if self.task != "zsr":
            return prior
        op, dagger = info["zsr_operator"], info["measurement"][b]
        if not self.zsr_official_init:
            return zsr_decoupled_projection(prior, dagger, op)
        mask = op.measured_mask(prior)
        return op.couple(op.decouple(dagger) * mask + op.decouple(prior * (1 - mask)))

    # ---------------------------------------------------------------------------------------------- call
    def __call__(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> MetaTensor:  # type: ignore[override]
        """Sample (or reconstruct) volumes.

        Args:
            inputs: see the class docstring for each task: the output shape or a template volume (uncond), the
                low-resolution volume (zsr), the complex k-space volume (csmri), the sinogram volume (svct); tensors
                ``(B, 1, D0, D1, D2)``, on the device to compute on.
            network: a score network ``net(x, sigma) -> score`` used for both planes, or a ``(primary, auxiliary)``
                pair (tuple, list, ``nn.ModuleList``, or ``nn.ModuleDict`` with keys ``primary``/``auxiliary``).
            args: unused (MONAI's ``Inferer`` signature).
            kwargs: ``mask`` (csmri; overrides the constructor's), ``length`` (zsr: full-resolution size along
                ``zsr_axis``, default ``M * factor``), ``device`` (uncond from a shape; default the network's).

        Returns:
            MetaTensor ``(B, 1, D0, D1, D2)`` with the meta (affine) of ``inputs`` (zsr: refined along ``zsr_axis``).
        """
        primary_net, auxiliary_net = self._networks(network)
        info = self._prepare(inputs, network, kwargs)
        generator = self.generator(info["device"])
        batch, spatial = info["batch"], info["spatial"]
        scores = {True: self._score_fn(primary_net), False: self._score_fn(auxiliary_net)}
        timesteps = torch.linspace(1.0, self.eps, self.steps, dtype=info["dtype"])
        last = self.steps - 1

        def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            volumes = state["x"]
            primary = self._is_primary(i, generator, info["device"])
            plane = self.primary_plane if primary else self.auxiliary_plane
            t = timesteps[i].to(info["device"])
            use_dps = primary and self.dps_weight != 0
            out = []
            for b in range(batch):
                chunks = _split(_to_stack(volumes[b], plane), self.batch_size)
                new = []
                for c, chunk in enumerate(chunks):
                    x, x_mean = tpdm_pc_step(
                        chunk,
                        t,
                        self.sde,
                        scores[primary],
                        snr=self.snr,
                        residual=self._residual(info, b, c, generator) if use_dps else None,
                        dps_weight=self.dps_weight if use_dps else 0.0,
                        norm_reduction=self.norm_reduction,
                        generator=generator,
                    )
                    new.append(x if self.keep_predictor_noise and i != last else x_mean)
                out.append(_from_stack(torch.cat(new, dim=0), plane))
            # a view for B = 1 keeps the (permuted) memory layout TPDM's noise draws depend on
            return {"x": out[0].unsqueeze(0) if batch == 1 else torch.stack(out)}

        # the initial state is drawn before the loop; a resumed run replaces it (and the generator state)
        initial = torch.stack(
            [_from_stack(self._initial_stack(info, b, generator), self.primary_plane) for b in range(batch)]
        )
        measured = inputs if isinstance(inputs, torch.Tensor) and self.task != "uncond" else None
        loop = self.sampling_loop(
            self.steps,
            (batch, 1, *spatial),
            extra={
                "input_shape_measured": list(getattr(inputs, "shape", inputs)),
                "measurement": measured,
                "mask": kwargs.get("mask", self.mask) if self.task == "csmri" else None,
            },
        )
        state = loop.run({"x": initial}, step, generator=generator)
        result = state["x"].unsqueeze(1)
        like = info["like"]
        output = self.wrap_output(result, like)
        if self.task == "zsr" and isinstance(like, MetaTensor):
            output.affine = self._refined_affine(like.affine, self.zsr_axis, self.factor)  # type: ignore[arg-type]
        return output

    @staticmethod
    def _refined_affine(affine: torch.Tensor, axis: int, factor: int) -> torch.Tensor:
        """Affine of the ``factor``-times finer grid whose blocks of ``factor`` voxels average to the coarse voxels."""
        refine = torch.eye(affine.shape[-1], dtype=torch.float64)
        refine[axis, axis] = 1.0 / factor
        refine[axis, -1] = -(factor - 1) / (2.0 * factor)
        return (affine.to(torch.float64) @ refine).to(affine.dtype)
