"""PaDIS: whole-image diffusion priors from a patch denoiser, and the inverse solvers built on them.

Hu et al., "Learning Image Priors through Patch-based Diffusion Models for Solving Inverse Problems" (NeurIPS 2024,
public code jasonhu4/PaDIS). :class:`PatchDiffusionInferer` composes the shared parts (listed in its docstring) with a
data-consistency term of ANY :class:`~medgen.physics.base.LinearOperator` composed with the canvas crop: sparse-view
CT (:class:`~medgen.physics.ct.ParallelBeamCT`), deblurring (:class:`~medgen.physics.blur.Blur`), super-resolution
(:class:`~medgen.physics.blur.Downsample`), multi-coil MRI (``CartesianMRI(..., channels=True)``: the complex image as
two real channels), on 2D images or slice by slice on volumes.

Example (a few lines, random tiny network, so the picture is noise; shapes and the API are the point)::

    import torch
    from medgen.inferers.patch import PatchDiffusionInferer
    from medgen.networks.songunet import PatchEDMPrecond
    from medgen.physics.blur import Blur

    network = PatchEDMPrecond(img_resolution=16, model_channels=16, channel_mult=[1, 2], num_blocks=1).eval()
    blur = Blur.gaussian(5, 1.0)
    measurement = blur(torch.rand(1, 1, 16, 16))
    inferer = PatchDiffusionInferer(blur, patch_size=8, pad=8, num_steps=3, inner_iterations=2, seed=0,
                                    progress=False)
    image = inferer(measurement, network)  # MetaTensor (1, 1, 16, 16), values in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor
from monai.utils import convert_to_tensor

from medgen.checks import check_box, check_choice, check_int, check_no_arguments, check_number, settings_with
from medgen.diffusion.consistency import (
    DPS, ConjugateGradientDenoised, DataConsistency, NormalizedGradient, RangeNullSpace,
)
from medgen.diffusion.priors import PATCH_MODES, PatchPrior, Prior, check_patch_settings
from medgen.diffusion.samplers import PADIS_DATA_STEP_CAP, PADIS_DATA_STEP_RATE, ddim_step, langevin_step, padis_pc_step
from medgen.diffusion.schedules import karras_sigmas
from medgen.diffusion.views import CanvasView
from medgen.inferers.base import SamplingInferer
from medgen.networks.checkpoint import check_network_attribute
from medgen.physics.base import ComposedOperator, LinearOperator
from medgen.physics.blur import Downsample
from medgen.transforms.sinogram import GEOMETRY_KEY
from medgen.transforms.utils import refined_affine

__all__ = ["PATCH_MODES", "SOLVERS", "INITS", "RESIDUAL_NORMS", "PaDISSettings", "PatchDiffusionInferer"]

SOLVERS = ("dps", "langevin", "pc", "ddim")
INITS = ("pseudo_inverse", "noise")
RESIDUAL_NORMS = ("per_image", "per_item", "batch")


@dataclass(frozen=True)
class PaDISSettings:
    """The solver settings of :class:`PatchDiffusionInferer`.

    Attributes:
        num_steps: noise levels ``n >= 2`` (PaDIS README: 100; click default 18).
        sigma_min: smallest noise level, image units (PaDIS README: 0.003).
        sigma_max: largest noise level, image units (PaDIS README: 10).
        rho: Karras schedule exponent (7).
        zeta: data-consistency step weight (PaDIS README: 0.3).
        inner_iterations: denoiser evaluations per noise level for dps and langevin (``None``: PaDIS' 10); ddim
            makes one (``None`` or 1).
        solver: ``"dps"``, ``"langevin"``, ``"pc"`` or ``"ddim"`` (not PaDIS': one DDIM step per level with the dps
            solver's data term, :func:`~medgen.diffusion.samplers.ddim_step`).
        init: ``"pseudo_inverse"``, ``"noise"`` or ``None`` (the solver's official choice).
        clamp: ``(low, high)`` range of the initial pseudo-inverse and of the result, or ``None``.
        residual_norm: ``"per_image"``, ``"per_item"`` or ``"batch"``.
        ddnm: ``solver="langevin"`` only: PaDIS' range-null-space variant.
        snr: ``solver="pc"`` corrector signal-to-noise ratio (PaDIS: 0.16).
        eta: ``solver="ddim"`` stochasticity in ``[0, 1]`` (1: ancestral, 0: deterministic).
        cg_iterations: ``solver="ddim"`` only: ``0`` uses dps' data term (``zeta``); ``n > 0`` DDS's instead
            (:class:`~medgen.diffusion.consistency.ConjugateGradientDenoised`: ``n`` CG steps on the normal equations
            from each denoised estimate, no gradient through the network, ``zeta`` unused).
    """

    num_steps: int = 100
    sigma_min: float = 0.003
    sigma_max: float = 10.0
    rho: float = 7.0
    zeta: float = 0.3
    inner_iterations: int | None = None
    solver: str = "dps"
    init: str | None = None
    clamp: tuple[float, float] | None = (0.0, 1.0)
    residual_norm: str = "per_image"
    ddnm: bool = False
    snr: float = 0.16
    eta: float = 1.0
    cg_iterations: int = 0

    def __post_init__(self) -> None:
        check_choice(self.solver, "solver", SOLVERS)
        check_choice(self.init, "init", (*INITS, None))
        check_choice(self.residual_norm, "residual_norm", RESIDUAL_NORMS)
        check_int(self.num_steps, "num_steps", 2)
        if self.inner_iterations is None:
            object.__setattr__(self, "inner_iterations", 1 if self.solver == "ddim" else 10)
        check_int(self.inner_iterations, "inner_iterations", 1)
        karras_sigmas(2, self.sigma_min, self.sigma_max, self.rho)  # validates the schedule arguments
        check_number(self.zeta, "zeta", 0.0)
        check_number(self.snr, "snr", 0.0)
        check_number(self.eta, "eta", 0.0, 1.0)
        check_int(self.cg_iterations, "cg_iterations", 0)
        if self.cg_iterations and self.solver != "ddim":
            raise ValueError(f"cg_iterations is the data term of solver='ddim'; got it with solver={self.solver!r}.")
        if self.solver == "ddim" and self.inner_iterations != 1:
            raise ValueError(
                f"solver='ddim' makes one denoiser call per noise level; it needs inner_iterations=1, "
                f"got {self.inner_iterations}."
            )
        object.__setattr__(self, "clamp", check_box(self.clamp, "clamp"))
        if self.ddnm and self.solver != "langevin":
            raise ValueError(f"ddnm=True is PaDIS' Langevin variant; it needs solver='langevin', got {self.solver!r}.")

    @property
    def initialisation(self) -> str:
        """``init``, or the solver's official choice: ``"pseudo_inverse"`` for dps (and ddim), ``"noise"`` otherwise."""
        return self.init or ("pseudo_inverse" if self.solver in ("dps", "ddim") else "noise")

    def sigmas(self) -> list[float]:
        """The noise levels ``(num_steps + 1,)``, descending, ending with 0 (Karras et al.)."""
        return karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho).tolist()


class PatchDiffusionInferer(SamplingInferer):
    """PaDIS inverse solver: posterior sampling for ``y = A x`` with a patch-diffusion prior.

    The state is the padded canvas ``x`` (:class:`~medgen.diffusion.views.CanvasView`) of every image, ``D`` the
    :class:`~medgen.diffusion.priors.PatchPrior` (border zero, a fresh patch offset per call), ``score =
    (D - x) / sigma^2``; the noise levels are Karras et al.'s (:meth:`PaDISSettings.sigmas`, then 0). Per level
    ``sigma`` (``inner_iterations`` times for dps and langevin), with the official formulas:

    - ``solver="dps"`` (what the official ``main`` runs): :func:`~medgen.diffusion.samplers.langevin_step` with
      ``alpha = sigma^2 / 2`` and :class:`~medgen.diffusion.consistency.DPS` (``zeta``, the un-squared residual
      norm's gradient through the denoiser); no noise at the last level.
    - ``solver="langevin"``: ``alpha = sigma^2`` and the data step ``zeta min(40, 200 sigma) A^T r / ||r||``
      (:class:`~medgen.diffusion.consistency.NormalizedGradient`), or with ``ddnm=True`` DDNM's range-null estimate
      (:class:`~medgen.diffusion.consistency.RangeNullSpace`).
    - ``solver="pc"``: :func:`~medgen.diffusion.samplers.padis_pc_step` over all levels but the last pair.
    - ``solver="ddim"`` (medgen's, for few network calls): one :func:`~medgen.diffusion.samplers.ddim_step` per
      level with dps' data term or (``cg_iterations``) DDS's, from ``init + sigma_max z``.

    ``init``: ``"pseudo_inverse"`` (``pad(clamp(A^+ y))``, the clamped FBP for CT; dps's official choice) or
    ``"noise"`` (``sigma_max z``; langevin's and pc's). The result is ``clamp(x_c)``. ``residual_norm``: PaDIS solves
    one image at a time, so ``"per_image"`` (default) gives every 2D image and every slice of a volume its own norm
    (it needs an operator acting slice by slice along ``slice_axis``); ``"per_item"`` one norm per batch item;
    ``"batch"`` one norm over everything (TPDM's convention). All offsets and noises come from the seeded generator
    (a run repeats and resumes bit-identically). Differences from the official code: see the bundle ``padis_ct``.

    Args:
        operator: the forward model ``A`` (``forward``, ``adjoint``, ``pseudo_inverse``), moved to the measurement's
            device at call time.
        patch_size: patch side in pixels (PaDIS: 56).
        pad: canvas padding in pixels (PaDIS: 24); see :class:`~medgen.diffusion.priors.PatchPrior` for the
            constraint with ``patch_size``.
        patch_mode: ``"random"`` (PaDIS) or ``"overlap"`` (:class:`~medgen.diffusion.priors.PatchPrior`).
        overlap: patch overlap in pixels for ``patch_mode="overlap"``.
        max_batch: patches per network call (``None``: one call).
        slice_axis: for volumes ``(B, C, D1, D2, D3)``, the axis (2, 3, 4 or -3, -2, -1) along which the volume is cut
            into 2D images; all slices are denoised in one batch. The two other axes must be equal (square slices).
        settings: fields of :class:`PaDISSettings` and the keywords of :class:`~medgen.inferers.base.SamplingInferer`.
            ``warm_start`` here: images shaped like ``A^H y`` (e.g. a SIRT or TV reconstruction) or a method name,
            clamped to ``clamp``, plus noise of the start level (the whole canvas; the image area only for ``pc``, as
            its cold start).

    Raises:
        ValueError/TypeError: on invalid settings (before any computation).
    """

    warm_starts = True

    def __init__(
        self,
        operator: LinearOperator,
        patch_size: int = 56,
        pad: int = 24,
        *,
        patch_mode: str = "random",
        overlap: int = 8,
        max_batch: int | None = None,
        slice_axis: int = -1,
        **settings: Any,
    ) -> None:
        super().__init__(**self.options(settings))
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a medgen LinearOperator, got {type(operator).__name__}.")
        check_patch_settings(patch_size, pad, patch_mode, overlap, max_batch)
        self.operator = operator
        self.settings = settings_with(PaDISSettings(), settings, type(self).__name__)
        self.view = CanvasView(pad, slice_axis)
        self.patch_size, self.patch_mode, self.overlap, self.max_batch = patch_size, patch_mode, overlap, max_batch

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "operator": repr(self.operator),
            "view": self.view,
            "patches": [self.patch_size, self.patch_mode, self.overlap],
        }

    def prior(self, network: Any) -> PatchPrior:
        """The whole-canvas prior of a patch network (or of a :class:`~medgen.diffusion.priors.Prior` of patches, or
        a ready :class:`~medgen.diffusion.priors.PatchPrior`)."""
        if isinstance(network, PatchPrior):
            return network
        return PatchPrior(network, self.patch_size, self.view.pad, self.patch_mode, self.overlap, self.max_batch)

    def _norm(self, y: torch.Tensor) -> str | int:
        """The measurement norm groups of ``residual_norm`` (one slice along ``slice_axis`` of a volume: an axis)."""
        rule = self.settings.residual_norm
        if rule == "batch":
            return "batch"
        return self.view.slice_axis % 5 if rule == "per_image" and y.ndim == 5 else "item"

    def consistency(self, operator: LinearOperator, y: torch.Tensor, image_shape: torch.Size) -> DataConsistency:
        """The solver's data-consistency term on the canvas: ``A`` composed with the canvas crop."""
        settings = self.settings
        on_canvas = ComposedOperator(operator, self.view.crop(image_shape))
        if settings.cg_iterations:
            return ConjugateGradientDenoised(on_canvas, y, settings.cg_iterations)
        if settings.solver in ("dps", "ddim"):
            return DPS(on_canvas, y, settings.zeta, norm=self._norm(y))
        if settings.ddnm:
            return RangeNullSpace(on_canvas, y)
        return NormalizedGradient(on_canvas, y, settings.zeta, reference="residual", norm=self._norm(y))

    # ------------------------------------------------------------- checking
    def _check_inputs(self, y: torch.Tensor, prior: PatchPrior, operator: LinearOperator) -> tuple[torch.Size, int]:
        """Validate the call; returns the image shape and its in-plane size ``w``."""
        if not y.is_floating_point():
            raise TypeError(
                f"inputs must be a real floating-point measurement, got dtype {y.dtype} (complex MRI data: use "
                "CartesianMRI(..., channels=True), whose measurements are real [real, imag] channels)."
            )
        if y.ndim not in (4, 5):
            raise ValueError(
                "inputs must be a batched measurement (B, C, ...) with 2 or 3 spatial dims, "
                f"got shape {tuple(y.shape)}."
            )
        image_shape = operator.image_shape(y)
        if len(image_shape) != y.ndim:
            raise ValueError(
                f"operator images {tuple(image_shape)} and measurement {tuple(y.shape)} differ in dimensions."
            )
        slice_axis = self.view.slice_axis
        if len(image_shape) == 5 and self.settings.residual_norm == "per_image" and (
            y.shape[slice_axis] != image_shape[slice_axis]
        ):
            raise ValueError(
                f"residual_norm='per_image' needs an operator acting slice by slice along slice_axis="
                f"{slice_axis}, but the measurement {tuple(y.shape)} and the volume {tuple(image_shape)} "
                "differ along it; use residual_norm='per_item' or the operator's slice axis."
            )
        size = self.view.image_size(image_shape, "the operator's images")
        check_network_attribute(prior.network, "img_channels", image_shape[1], " (the operator's image channels)")
        prior.patch_starts(size)
        return image_shape, size

    # ----------------------------------------------------------------- call
    def sample(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any
    ) -> MetaTensor:
        """Reconstruct images from the measurement ``inputs``.

        Args:
            inputs: measurement ``y = A x`` (+ noise), batched: e.g. sinograms ``(B, C, detectors, angles)`` for CT,
                ``(B, C, H, W)`` for deblurring, ``(B, C, H / f, W / f)`` for super-resolution, ``(B, 2 Nc, H, W)``
                for multi-coil MRI in channels, or the operator's volume layout ``(B, C, ...)`` with 3 spatial dims.
                A MetaTensor's meta is carried to the output.
            network: the patch denoiser ``network(patches, sigma, positions)`` (e.g.
                :class:`~medgen.networks.songunet.PatchEDMPrecond`), sigma in image units; or a
                :class:`~medgen.diffusion.priors.Prior` of patches, or a :class:`~medgen.diffusion.priors.PatchPrior`.
            args: unused (``Inferer`` signature).
            kwargs: unused.

        Returns:
            the reconstruction ``(B, C, H, W)`` (or the volume ``(B, C, D1, D2, D3)``) as a MetaTensor, clamped to
            ``clamp``. Meta: the input's meta is copied (a sinogram MetaTensor from
            :class:`~medgen.transforms.sinogram.ParallelBeamProject` carries the source image's affine, which is thus
            the reconstruction's; its ``"ct_geometry"`` entry is dropped). For a
            :class:`~medgen.physics.blur.Downsample` operator the affine is refined to the ``factor`` times finer
            grid (block means sit at the centres of their blocks).

        Raises:
            ValueError: the measurement does not fit the operator, or the sizes do not fit ``patch_size``/``pad``.
            TypeError: non-callable network or non-float measurement.
        """
        check_no_arguments(args, kwargs)
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor measurement, got {type(inputs).__name__}.")
        y = self.plain(convert_to_tensor(inputs, track_meta=False))
        operator = self.operator.to(device=y.device)
        prior = self.prior(network)
        image_shape, _ = self._check_inputs(y, prior, operator)
        result = self._sample(y, prior, operator, image_shape)
        return self._wrap(result, inputs, operator)

    def _start_canvas(self, y, operator, image_shape, generator, sigma: float | None = None) -> torch.Tensor:
        """The start: cold (``sigma=None``) ``pad(clamp(A^+ y))`` or ``sigma_max z``, warm ``pad(clamp(estimate)) +
        sigma z``; ``z`` on the whole canvas, on the image area only for ``pc`` (as official)."""
        settings, view = self.settings, self.view
        if sigma is None and settings.initialisation == "noise":
            x0, sigma = torch.zeros(image_shape, device=y.device, dtype=y.dtype), settings.sigma_max
        else:
            x0 = operator.pseudo_inverse(y) if sigma is None else self.warm_start.reconstruct(operator, y)
            if sigma is not None and tuple(x0.shape) != tuple(image_shape):
                raise ValueError(f"warm_start must be shaped like A^H y {tuple(image_shape)}, got {tuple(x0.shape)}.")
            x0 = x0 if settings.clamp is None else x0.clamp(*settings.clamp)
        if sigma is None and settings.solver != "ddim":
            return view.canvas(x0)
        sigma = settings.sigma_max if sigma is None else sigma  # ddim starts on the schedule: A^+ y + sigma_max z
        if settings.solver == "pc":
            return view.canvas(x0 + sigma * torch.randn(x0.shape, generator=generator, device=y.device, dtype=y.dtype))
        canvas = view.canvas(x0)
        return canvas + sigma * torch.randn(canvas.shape, generator=generator, device=y.device, dtype=y.dtype)

    def _sample(
        self, y: torch.Tensor, prior: Prior, operator: LinearOperator, image_shape: torch.Size
    ) -> torch.Tensor:
        settings, view = self.settings, self.view
        generator = self.generator(y.device)
        sigmas = settings.sigmas()
        term = self.consistency(operator, y, image_shape)
        num_loop_steps = settings.num_steps - 1 if settings.solver == "pc" else settings.num_steps
        start = self.warm_start.first_step(sigmas[:num_loop_steps])
        with torch.no_grad():
            x = self._start_canvas(y, operator, image_shape, generator, sigmas[start] if start else None)
        if settings.solver == "pc":
            group = {"per_image": 1, "per_item": x.shape[0] // y.shape[0], "batch": x.shape[0]}[settings.residual_norm]

            def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
                x = padis_pc_step(prior, state["x"], sigmas[i], sigmas[i + 1], settings.snr, consistency=term,
                                  group_size=group, generator=generator)
                return {"x": x}
        elif settings.solver == "ddim":

            def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
                return {"x": ddim_step(prior, state["x"], sigmas[i], sigmas[i + 1], settings.eta, consistency=term,
                                       generator=generator)}
        else:
            dps = settings.solver == "dps"

            def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
                sigma, x = sigmas[i], state["x"]
                alpha = sigma**2 / 2 if dps else sigma**2
                size = 1.0 if dps else min(PADIS_DATA_STEP_CAP, sigma * PADIS_DATA_STEP_RATE)
                for _ in range(settings.inner_iterations):
                    x = langevin_step(prior, x, sigma, alpha, consistency=term, step_size=size,
                                      add_noise=i != settings.num_steps - 1, generator=generator)
                return {"x": x}

        loop = self.sampling_loop(num_loop_steps, y.shape, extra={"measurement": y})
        x = loop.run({"x": x}, step, generator=generator, start_step=start)["x"]
        result = view.centre(x, image_shape)
        return result if settings.clamp is None else result.clamp(*settings.clamp)

    def _wrap(self, result: torch.Tensor, inputs: torch.Tensor, operator: LinearOperator) -> MetaTensor:
        out = self.wrap_output(result, inputs)
        if not isinstance(inputs, MetaTensor):
            return out
        out.meta.pop(GEOMETRY_KEY, None)
        if isinstance(operator, Downsample) and "affine" in out.meta:
            axes = range(result.ndim - operator.spatial_dims - 2, result.ndim - 2)
            out.affine = refined_affine(out.affine, {axis: operator.factor for axis in axes})
        return out
