"""TPDM: 3D sampling and inverse problems with two 2D score models on perpendicular planes (Lee et al., ICCV 2023).

One TPDM step is :func:`~medgen.diffusion.samplers.perpendicular_step`; :class:`PerpendicularSliceInferer` composes it
with a plane view, a prior per plane (NCSN++ score networks by default) and a data-consistency term (DPS by default)
of any linear operator of one primary slice.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor

from medgen.checks import check_choice, check_int, check_number, check_tensor, check_volume, check_volume_shape
from medgen.checks import check_bool, settings_with
from medgen.diffusion.consistency import (
    DPS, ConjugateGradientDenoised, DataConsistency, HardProjection, RePaint, StepContext,
)
from medgen.diffusion.priors import Prior, ScorePrior, as_noise_model, prior_pair
from medgen.diffusion.samplers import PCSettings, perpendicular_step
from medgen.diffusion.sde import VESDE
from medgen.diffusion.views import PLANE_PRESETS, PlaneView, plane_pair
from medgen.inferers.base import SamplingInferer
from medgen.networks.checkpoint import network_parameter
from medgen.physics.base import LinearOperator
from medgen.physics.mask import Inpainting
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.transforms.utils import refined_affine

__all__ = ["PerpendicularSliceInferer", "TPDMSettings", "TPDM_OFFICIAL", "PLANE_PRESETS",
           "TPDM_ZSR_DPS_WEIGHTS", "TASKS", "CONSISTENCIES"]

TASKS = ("uncond", "zsr", "csmri", "svct", "inverse", "inpaint")
CONSISTENCIES = ("dps", "projection", "repaint", "dds")

TPDM_ZSR_DPS_WEIGHTS: dict[int, float] = {5: 4.0, 4: 3.0, 3: 2.0, 2: 1.0}
"""hyn2028/tpdm's automatic MR-ZSR DPS weights by factor (tuned for its minibatch size 6 and BMR data)."""


@dataclass(frozen=True)
class TPDMSettings:
    """The sampler settings of :class:`PerpendicularSliceInferer` (TPDM's loop and the corrections of its quirks).

    Attributes:
        steps: PC steps ``N`` (TPDM: 2000) at ``t_i = linspace(1, eps, N)``.
        K, batch_size: the plane schedule and the slices per minibatch of :class:`~medgen.diffusion.views.PlaneView`
            (TPDM: ``K`` 2, SV-CT 2.7; ``batch_size`` 32 uncond, 6 otherwise).
        snr: Langevin signal-to-noise ratio (0.16).
        corrector_steps: Langevin corrector steps before each predictor (TPDM: 1; 0 halves the network calls).
        predictor: ``"reverse_diffusion"`` (TPDM) or ``"ddim"`` (:func:`~medgen.diffusion.samplers.ddim_predictor`:
            the same mean with the noise that keeps the state on the schedule, for few steps).
        eta: ``"ddim"``'s stochasticity in ``[0, 1]`` (1: ancestral, 0: deterministic).
        cg_iterations: CG steps of ``consistency="dds"`` per primary predictor step.
        norm_reduction: ``"batch_mean"`` (TPDM: one Langevin step size and one DPS norm per minibatch, so a slice's
            update depends on its minibatch) or ``"per_sample"`` (per slice; TPDM's weights then act roughly
            ``sqrt(batch_size)`` times stronger).
        sigma_min: smallest VE noise std (``None``: the network's, from its ``sigmas`` buffer, else TPDM's 0.01).
        sigma_max: largest VE noise std (``None``: the network's, else TPDM's 378).
        eps: last time of the grid (TPDM 1e-5).
        keep_predictor_noise: the next state is the predictor's noisy ``x`` (corrected), not its ``x_mean`` (TPDM).
        zsr_official_init: TPDM's MR-ZSR start, the prior noise masked in the image domain (:func:`_official_zsr_init`),
            instead of its projection onto ``{A x = y}``.
        zsr_noisy_target: TPDM's MR-ZSR DPS target, the measurement noised to ``sigma(t)``, instead of the clean one.
        (Each quirk is described in the bundle ``tpdm_brain_mri``, "The parity flag".)
    """

    steps: int = 2000
    K: int | float = 2
    batch_size: int = 6
    snr: float = 0.16
    corrector_steps: int = 1
    predictor: str = "reverse_diffusion"
    eta: float = 1.0
    cg_iterations: int = 5
    norm_reduction: str = "batch_mean"
    sigma_min: float | None = None
    sigma_max: float | None = None
    eps: float = 1e-5
    keep_predictor_noise: bool = True
    zsr_official_init: bool = False
    zsr_noisy_target: bool = False

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", 1)
        PlaneView(K=self.K, batch_size=self.batch_size)  # validates K and batch_size
        check_choice(self.predictor, "predictor", ("reverse_diffusion", "ddim"))
        self.pc  # validates snr, corrector_steps, eta and norm_reduction
        check_int(self.cg_iterations, "cg_iterations", 1)
        check_number(self.sigma_min, "sigma_min", 0.0, open_low=True, allow_none=True)
        check_number(self.sigma_max, "sigma_max", 0.0, open_low=True, allow_none=True)
        check_number(self.eps, "eps", 0.0, 1.0, open_low=True, open_high=True)
        for name in ("keep_predictor_noise", "zsr_official_init", "zsr_noisy_target"):
            check_bool(getattr(self, name), name)

    @property
    def pc(self) -> PCSettings:
        """The predictor-corrector settings: ``corrector_steps`` Langevin steps, then the predictor."""
        return PCSettings(self.snr, self.corrector_steps, self.predictor, self.norm_reduction, self.eta)


TPDM_OFFICIAL = TPDMSettings(keep_predictor_noise=False, zsr_official_init=True, zsr_noisy_target=True)
"""hyn2028/tpdm's loop number for number, quirks included (see :class:`TPDMSettings`)."""

_QUIRKS = ("keep_predictor_noise", "zsr_official_init", "zsr_noisy_target", "norm_reduction")


def _official_zsr_init(prior_noise: torch.Tensor, dagger: torch.Tensor, op: ZAxisAverage) -> torch.Tensor:
    """TPDM's MR-ZSR start ``couple(decouple(A^+ y) m + decouple(noise (1 - m)))`` (the mask applied in image space)."""
    mask = op.measured_mask(prior_noise)
    return op.couple(op.decouple(dagger) * mask + op.decouple(prior_noise * (1 - mask)))


class PerpendicularSliceInferer(SamplingInferer):
    """TPDM (hyn2028/tpdm) as a MONAI inferer: 3D sampling with two 2D VE-SDE score priors on perpendicular planes.

    The volume ``(B, 1, D0, D1, D2)`` is sampled by ``steps`` predictor-corrector steps of
    ``VESDE(sigma_min, sigma_max, steps)`` (:func:`~medgen.diffusion.samplers.perpendicular_step`, a
    :func:`~medgen.diffusion.samplers.pc_step` on one plane's slices). Step ``i`` runs on all slices
    of the primary plane (primary prior, with data consistency) or of the auxiliary plane (auxiliary prior,
    unconditional), in minibatches of ``batch_size`` slices (:class:`~medgen.diffusion.views.PlaneView`).

    **Measurements.** Any :class:`~medgen.physics.base.LinearOperator` ``A`` of one primary slice ``(n, 1, R, C)``
    defines a task: the measurement volume is the primary slices' measurements put back in place
    (``from_stack(A(to_stack(x)))``, the slice axis kept, the in-plane axes replaced by the measurement's two
    trailing axes). Named tasks build the operator:

    - ``"uncond"``: no measurement; ``inputs`` is the output shape (``(D0, D1, D2)`` or ``(B, 1, D0, D1, D2)``) or a
      template volume.
    - ``"zsr"`` (MR z-axis super-resolution): ``A = ZAxisAverage(factor)`` along ``zsr_axis`` (an in-plane axis of
      the primary plane, default its columns); ``inputs`` is the low-resolution volume, the output has ``length``
      (default ``M * factor``) samples along ``zsr_axis`` and the affine refined there. Start: the prior noise
      projected onto ``{A x = y}``. The DPS weight is applied to ``sqrt(factor) ||A x0 - y||``, the norm of TPDM's
      residual in its decoupled basis (so TPDM's weights keep their meaning).
    - ``"csmri"``: ``A = CartesianMRI(mask, convention="tpdm", real_image=True)`` per slice; ``inputs`` is the complex
      k-space volume, ``mask`` ``(R, C)`` (shared) or broadcastable to the volume.
    - ``"svct"`` / ``"inverse"``: ``operator`` is the slice operator (e.g. ``ParallelBeamCT.tpdm(image_size, 5)``,
      ``Blur``); ``inputs`` the measurement volume. Start: prior noise.
    - ``"inpaint"``: ``A = Inpainting(mask)`` (:class:`~medgen.physics.mask.Inpainting`); ``inputs`` is the volume
      with its known voxels, ``mask`` (1 = known) broadcastable to it.

    ``consistency``: ``"dps"`` (TPDM: the un-squared residual norm's gradient through the network after the
    corrector and after the predictor, constant weight), ``"projection"`` (hard consistency ``x + A^+ (y - A x)``
    after each sub-step: k-space replacement for ``"csmri"``, as HFS-SDE and score-MRI do), ``"repaint"``
    (``"inpaint"`` only: the known voxels noised to the state's level after each sub-step, RePaint; the clean known
    voxels after the last step) or ``"dds"`` (``predictor="ddim"`` only, not TPDM's: ``cg_iterations`` CG steps on
    the normal equations correct each primary predictor step's denoised estimate,
    :class:`~medgen.diffusion.consistency.ConjugateGradientDenoised`; no gradient through the network).

    Example (a 3D deblurring with any operator, and CS-MRI with hard k-space consistency instead of DPS; random
    tiny network)::

        import torch
        from medgen.inferers.perpendicular import PerpendicularSliceInferer
        from medgen.networks.ncsnpp import NCSNpp
        from medgen.physics.blur import Blur
        from medgen.physics.mri import CartesianMRI

        net = NCSNpp(image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).eval()
        volume = torch.rand(1, 1, 16, 16, 16)
        blur = Blur.gaussian(5, 1.5)
        blurred = blur(volume[0].transpose(0, 1)).transpose(0, 1)[None]   # each primary slice blurred
        deblurred = PerpendicularSliceInferer("inverse", operator=blur, dps_weight=0.5, steps=4, seed=0,
                                              progress=False)(blurred, net)
        mask = (torch.rand(16, 16) < 0.4).float()
        kspace = CartesianMRI(mask, convention="tpdm", real_image=True)(volume[0].transpose(0, 1)).transpose(0, 1)[None]
        cs = PerpendicularSliceInferer("csmri", consistency="projection", steps=4, seed=0, progress=False)
        recon = cs(kspace, net, mask=mask)                                   # (1, 1, 16, 16, 16)

    **Planes.** ``primary_plane`` and ``auxiliary_plane``, or a preset ``planes`` (:func:`~medgen.diffusion.views.
    plane_pair`). Defaults: ``"tpdm_mri"`` for uncond, zsr and (corrected) csmri;
    ``"tpdm_ct"`` for svct and for csmri with ``parity=True`` (the official CS-MRI reuses SV-CT's permutation).

    **Faithfulness.** ``parity=True`` runs :data:`TPDM_OFFICIAL`; the default fixes TPDM's quirks, each a field of
    :class:`TPDMSettings` with a keyword here (``None`` = follow ``parity``): see the bundle ``tpdm_brain_mri``.

    ``B > 1``: volumes are sampled together step by step, minibatches never mix volumes; with one generator the
    draws interleave, so a volume of a batch differs from the same volume sampled alone.

    Args:
        task: ``"uncond"``, ``"zsr"``, ``"csmri"``, ``"svct"``, ``"inverse"`` or ``"inpaint"`` (see above).
        dps_weight: DPS weight (zsr default :data:`TPDM_ZSR_DPS_WEIGHTS`; required for csmri/svct/inverse with DPS).
        factor: zsr factor.
        zsr_axis: zsr's averaged spatial axis (default: the primary plane's column axis).
        mask: csmri sampling mask / inpaint known-voxel mask (or a ``__call__`` argument).
        operator: slice operator for ``"svct"``/``"inverse"``.
        consistency: ``"dps"``, ``"projection"``, ``"repaint"`` or ``"dds"`` (default: ``"repaint"`` for inpaint,
            else DPS).
        primary_plane, auxiliary_plane, planes: see above.
        parity: start from :data:`TPDM_OFFICIAL` instead of the corrected defaults (quirk settings that contradict
            it are refused).
        settings: fields of :class:`TPDMSettings` and the keywords of :class:`~medgen.inferers.base.SamplingInferer`.
            ``warm_start`` here: a classical method name (solved per primary slice with the slice operator) or a
            volume ``(B, 1, D0, D1, D2)`` (e.g. a 3D-TV reconstruction), not for ``"uncond"``; the noised estimate is
            treated as the prior sample is (zsr: projected onto ``{A x = y}``), the level is ``sigma(t_i)``.

    Raises:
        ValueError / TypeError: on any invalid argument, naming it.
    """

    warm_starts = True

    def __init__(
        self,
        task: str = "uncond",
        *,
        dps_weight: float | None = None,
        factor: int | None = None,
        zsr_axis: int | None = None,
        mask: torch.Tensor | None = None,
        operator: LinearOperator | None = None,
        consistency: str | None = None,
        primary_plane: int | Sequence[int] | None = None,
        auxiliary_plane: int | Sequence[int] | None = None,
        planes: str | None = None,
        parity: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__(**self.options(settings))
        check_choice(task, "task", TASKS)
        consistency = ("repaint" if task == "inpaint" else "dps") if consistency is None else consistency
        check_choice(consistency, "consistency", CONSISTENCIES)
        if consistency == "repaint" and task != "inpaint":
            raise ValueError(f"consistency='repaint' is inpainting's; it needs task='inpaint', got task={task!r}.")
        if consistency == "dds" and task == "uncond":
            raise ValueError("consistency='dds' needs a measurement; task='uncond' has none.")
        check_bool(parity, "parity")
        settings = {k: v for k, v in settings.items() if not (k in _QUIRKS and v is None)}
        if parity:
            for name in _QUIRKS:
                if name in settings and settings[name] != getattr(TPDM_OFFICIAL, name):
                    raise ValueError(
                        f"{name}={settings[name]!r} contradicts parity=True (official: {getattr(TPDM_OFFICIAL, name)!r})."
                    )
        self.settings = settings_with(TPDM_OFFICIAL if parity else TPDMSettings(), settings, type(self).__name__)
        if consistency == "dds" and self.settings.predictor != "ddim":
            raise ValueError(
                f"consistency='dds' corrects the denoised estimate of the ddim predictor; it needs predictor='ddim', "
                f"got predictor={self.settings.predictor!r}."
            )
        default = "tpdm_ct" if task == "svct" or (task == "csmri" and parity) else "tpdm_mri"
        planes = plane_pair(planes, primary_plane, auxiliary_plane, default)
        self.view = PlaneView(*planes, self.settings.K, self.settings.batch_size)
        self.task, self.parity, self.consistency = task, parity, consistency
        self.factor, self.zsr_axis, self.mask, self.operator = None, None, None, None
        self.dps_weight = self._task_arguments(task, consistency, dps_weight, factor, zsr_axis, mask, operator)
        if task == "uncond" and self.warm_start.active:
            raise ValueError("warm_start needs a measurement; task='uncond' has none.")

    # --------------------------------------------------------------------------------------------- arguments
    def _task_arguments(self, task, consistency, dps_weight, factor, zsr_axis, mask, operator) -> float:
        """Validate the task's arguments, set them and return the DPS weight."""
        if task == "zsr":
            check_int(factor, "factor", 1)
            zsr_axis = self.view.primary[2] if zsr_axis is None else zsr_axis
            if isinstance(zsr_axis, bool) or not isinstance(zsr_axis, int) or not -3 <= zsr_axis <= 2:
                raise ValueError(f"zsr_axis must be a spatial axis in [-3, 2], got {zsr_axis!r}.")
            if zsr_axis % 3 == self.view.primary[0]:
                raise ValueError(
                    f"zsr_axis {zsr_axis} is the primary slice axis; it must lie in the primary plane "
                    f"{self.view.primary} (one of axes {self.view.primary[1:]}), since DPS acts per primary slice."
                )
            self.factor, self.zsr_axis = factor, zsr_axis % 3
            if dps_weight is None:
                if factor not in TPDM_ZSR_DPS_WEIGHTS:
                    raise ValueError(
                        f"dps_weight is required for factor {factor} (TPDM's automatic weights exist for factors "
                        f"{sorted(TPDM_ZSR_DPS_WEIGHTS)})."
                    )
                dps_weight = TPDM_ZSR_DPS_WEIGHTS[factor]
        elif factor is not None or zsr_axis is not None:
            raise ValueError(f"factor and zsr_axis are arguments of task='zsr', got them with task={task!r}.")
        if task in ("csmri", "svct", "inverse", "inpaint") and dps_weight is None and consistency == "dps":
            raise ValueError(f"dps_weight is required for task={task!r} (TPDM: CS-MRI 0.002-0.01, SV-CT 0.025).")
        if task == "uncond":
            if dps_weight not in (None, 0, 0.0):
                raise ValueError(f"dps_weight is meaningless for task='uncond', got {dps_weight!r}.")
            dps_weight = 0.0
        dps_weight = 0.0 if dps_weight is None else dps_weight
        check_number(dps_weight, "dps_weight", finite=True)
        if mask is not None:
            if task not in ("csmri", "inpaint"):
                raise ValueError(f"mask is an argument of task='csmri'/'inpaint', got it with task={task!r}.")
            check_tensor(mask, "mask")
        self.mask = mask
        if task in ("svct", "inverse"):
            if not isinstance(operator, LinearOperator):
                raise TypeError(
                    f"operator must be a medgen LinearOperator mapping slices (n, 1, H, W) to measurements for "
                    f"task={task!r} (e.g. ParallelBeamCT.tpdm(image_size, sparsity)), got {type(operator).__name__}."
                )
        elif operator is not None:
            raise ValueError(f"operator is an argument of task='svct'/'inverse', got it with task={task!r}.")
        self.operator = operator
        return float(dps_weight)

    @property
    def steps(self) -> int:
        return self.settings.steps

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "task": self.task,
            "view": self.view,
            "consistency": self.consistency,
            "dps_weight": self.dps_weight,
            "factor": self.factor,
            "zsr_axis": self.zsr_axis,
            "operator": None if self.operator is None else repr(self.operator),
        }

    # ----------------------------------------------------------------------------------------- networks
    @staticmethod
    def _priors(network: Any) -> tuple[Prior, Prior]:
        """The ``(primary, auxiliary)`` score priors (:func:`~medgen.diffusion.priors.prior_pair`)."""
        return prior_pair(network, ScorePrior)

    def sde(self, prior: Prior) -> VESDE:
        """The VE-SDE: the settings' noise range, else the prior's (from its weights), else TPDM's 0.01 / 378."""
        low, high = as_noise_model(prior, "ve").sigma_range or (0.01, 378.0)
        sigma_min = low if self.settings.sigma_min is None else self.settings.sigma_min
        sigma_max = high if self.settings.sigma_max is None else self.settings.sigma_max
        return VESDE(sigma_min, sigma_max, self.settings.steps)

    # ------------------------------------------------------------------------------------------- inputs
    def _operators(self, measured: torch.Tensor, kwargs: dict[str, Any]) -> list[LinearOperator]:
        """The operator of the primary slices of each volume for this call (zsr ``length``, csmri masks)."""
        plane, batch = self.view.primary, measured.shape[0]
        if self.task == "zsr":
            m = measured.shape[2 + self.zsr_axis]
            length = kwargs.get("length")
            length = m * self.factor if length is None else length
            if isinstance(length, bool) or not isinstance(length, int) or length // self.factor != m:
                raise ValueError(
                    f"length must be an int L with L // factor == {m} (the low-resolution size along zsr_axis "
                    f"{self.zsr_axis}) for factor {self.factor}, i.e. in [{m * self.factor}, "
                    f"{(m + 1) * self.factor - 1}], got {length!r}."
                )
            axis = 2 + plane[1:].index(self.zsr_axis)
            return [ZAxisAverage(self.factor, axis=axis, remainder="crop", length=length)] * batch
        if self.task not in ("csmri", "inpaint"):
            return [self.operator.to(measured.device)] * batch
        if self.task == "csmri" and not measured.is_complex():
            raise TypeError(f"inputs must be complex k-space for task='csmri', got {measured.dtype}.")
        mask = kwargs.get("mask", self.mask)
        if mask is None:
            raise ValueError(f"mask is required for task={self.task!r} (constructor or __call__ argument).")
        check_tensor(mask, "mask")
        mask = (mask.real if mask.is_complex() else mask).detach().to(measured.device, measured.real.dtype)
        masks = self.view.slice_masks(mask, batch, measured.shape[2:])
        if self.task == "inpaint":
            return [Inpainting(m) for m in masks]
        return [CartesianMRI(m, convention="tpdm", real_image=True) for m in masks]

    def _prepare(self, inputs: Any, network_device: torch.device | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate the call; returns shapes, device, dtype and (inverse problems) the per-volume consistency terms."""
        unknown = set(kwargs) - {"mask", "length", "device"}
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; accepted: mask, length, device.")
        if self.task == "uncond":
            shape = check_volume_shape(inputs, "inputs", channels=1, allow_spatial=True)
            if isinstance(inputs, torch.Tensor):
                device, dtype = inputs.device, inputs.dtype
            else:
                device, dtype = torch.device(kwargs.get("device") or network_device or "cpu"), torch.get_default_dtype()
            return {"batch": shape[0], "spatial": shape[2:], "device": device, "dtype": dtype, "terms": None}

        x = check_volume(inputs, "inputs", channels=1, allow_complex=self.task == "csmri")
        measured = self.plain(x)
        operators = self._operators(measured, kwargs)
        plane = self.view.primary
        ys = [self.view.to_stack(measured[b, 0], plane) for b in range(x.shape[0])]
        slice_shape = operators[0].image_shape(ys[0], "inputs (as primary slices)")
        spatial = self.view.spatial_shape(slice_shape, plane)
        return {"batch": x.shape[0], "spatial": spatial, "device": x.device, "dtype": measured.real.dtype,
                "terms": [self._term(op, y) for op, y in zip(operators, ys)], "operators": operators, "ys": ys}

    def _term(self, operator: LinearOperator, y: torch.Tensor) -> DataConsistency:
        """The consistency term of one volume's primary slices."""
        if self.consistency == "projection":
            return HardProjection(operator, y)
        if self.consistency == "repaint":
            return RePaint(operator.mask.expand_as(y), y)
        if self.consistency == "dds":
            return ConjugateGradientDenoised(operator, y, self.settings.cg_iterations)
        weight = self.dps_weight * (math.sqrt(self.factor) if self.task == "zsr" else 1.0)
        norm = "batch" if self.settings.pc.norm_reduction == "batch_mean" else "item"
        return DPS(operator, y, weight, norm=norm, noisy_target=self.task == "zsr" and self.settings.zsr_noisy_target)

    def _initial_stack(
        self, info: dict[str, Any], b: int, sde: VESDE, generator: torch.Generator | None, sigma: float | None = None
    ) -> torch.Tensor:
        """Volume ``b``'s primary stack at the start: the prior sample, or (``sigma`` given) the warm-start estimate
        plus noise of std ``sigma``; zsr projects either onto ``{A x = y}``."""
        shape = self.view.stack_shape(info["spatial"], self.view.primary)
        op, y = (info["operators"][b], info["ys"][b]) if info["terms"] is not None else (None, None)
        if sigma is None:
            prior = sde.prior_sampling(shape, generator=generator, device=info["device"], dtype=info["dtype"])
        else:
            prior = self._warm_estimate(info, b, shape) + sigma * torch.randn(
                shape, generator=generator, device=info["device"], dtype=info["dtype"]
            )
        if self.task != "zsr":
            return prior
        if self.settings.zsr_official_init:
            return _official_zsr_init(prior, op.pseudo_inverse(y), op)
        return HardProjection(op, y).project(prior)

    def _warm_estimate(self, info: dict[str, Any], b: int, shape: Sequence[int]) -> torch.Tensor:
        """Volume ``b``'s warm-start estimate as a primary stack of ``shape``."""
        estimate = self.warm_start.estimate
        if isinstance(estimate, torch.Tensor):
            expected = (info["batch"], 1, *info["spatial"])
            if tuple(estimate.shape) != expected:
                raise ValueError(f"warm_start must be a volume shaped {expected}, got {tuple(estimate.shape)}.")
            volume = self.plain(estimate).to(device=info["device"], dtype=info["dtype"])
            return self.view.to_stack(volume[b, 0], self.view.primary)
        stack = self.warm_start.reconstruct(info["operators"][b], info["ys"][b])
        return (stack.real if stack.is_complex() else stack).to(info["dtype"]).reshape(shape)

    # ---------------------------------------------------------------------------------------------- call
    def sample(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> MetaTensor:
        """Sample (or reconstruct) volumes.

        Args:
            inputs: see the class docstring for each task; tensors ``(B, 1, D0, D1, D2)`` on the device to compute
                on.
            network: a score network ``net(x, sigma) -> score`` (or a :class:`~medgen.diffusion.priors.Prior`) for
                both planes, or a ``(primary, auxiliary)`` pair (:func:`~medgen.diffusion.priors.prior_pair`).
            args: unused (MONAI's ``Inferer`` signature).
            kwargs: ``mask`` (csmri), ``length`` (zsr: full-resolution size along ``zsr_axis``), ``device`` (uncond
                from a shape; default the network's).

        Returns:
            MetaTensor ``(B, 1, D0, D1, D2)`` with the meta (affine) of ``inputs`` (zsr: refined along ``zsr_axis``).
        """
        priors = self._priors(network)
        parameter = network_parameter(network)
        info = self._prepare(inputs, None if parameter is None else parameter.device, dict(kwargs))
        sde = self.sde(priors[0])
        generator = self.generator(info["device"])
        batch, view, settings = info["batch"], self.view, self.settings
        timesteps = torch.linspace(1.0, settings.eps, settings.steps, dtype=info["dtype"])
        last = settings.steps - 1

        def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            keep_noise = settings.keep_predictor_noise and i != last
            t = timesteps[i].to(info["device"])
            return {"x": perpendicular_step(priors, view, state["x"], i, t, sde, settings.pc, info["terms"], keep_noise,
                                            generator)}

        # the initial state is drawn before the loop; a resumed run replaces it (and the generator state)
        start = self.warm_start.first_step(sde.sigma(timesteps).tolist())
        sigma = float(sde.sigma(timesteps[start])) if start else None
        initial = view.assemble(
            [view.from_stack(self._initial_stack(info, b, sde, generator, sigma), view.primary) for b in range(batch)]
        )
        loop = self.sampling_loop(
            settings.steps,
            (batch, 1, *info["spatial"]),
            extra={
                "sde": [sde.sigma_min, sde.sigma_max],
                "input_shape_measured": list(getattr(inputs, "shape", inputs)),
                "measurement": inputs if isinstance(inputs, torch.Tensor) and self.task != "uncond" else None,
                "mask": kwargs.get("mask", self.mask) if self.task == "csmri" else None,
            },
        )
        volumes = loop.run({"x": initial}, step, generator=generator, start_step=start)["x"]
        if self.consistency == "repaint":  # the clean known voxels after the last step
            pasted = []
            for b in range(batch):
                stack = view.to_stack(volumes[b], view.primary)
                (stack,) = info["terms"][b].apply(StepContext(x_in=stack), stack)
                pasted.append(view.from_stack(stack, view.primary))
            volumes = view.assemble(pasted)
        like = inputs if isinstance(inputs, torch.Tensor) else None
        output = self.wrap_output(volumes.unsqueeze(1), like)
        if self.task == "zsr" and isinstance(like, MetaTensor):
            output.affine = refined_affine(like.affine, {self.zsr_axis: self.factor})
        return output

