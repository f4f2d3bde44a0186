"""Data consistency: terms built from any :class:`~medgen.physics.base.LinearOperator` ``A`` and a measurement ``y``.

A step rule (:mod:`medgen.diffusion.samplers`) calls the hooks of its term at three places, so any term works with any
step rule:

- :meth:`DataConsistency.guidance` ``(x, score) -> term``: added to the score inside a sub-step's update (HFS-SDE's
  normalised gradient, :class:`NormalizedGradient` with ``reference="score"``);
- :meth:`DataConsistency.denoised` ``(x0_hat) -> x0_hat'``: replaces the denoised estimate the step uses
  (:class:`RangeNullSpace`, DDNM);
- :meth:`DataConsistency.apply` ``(ctx, *states) -> states``: after a sub-step (:class:`DPS`,
  :class:`NormalizedGradient` with ``reference="residual"``, :class:`HardProjection`, :class:`RePaint`). The
  :class:`StepContext` carries the sub-step's input, denoised estimate, noise level, step size and generator.

A term that does not use a hook leaves it a no-op. Terms with ``requires_graph`` (DPS) need the step to compute the
denoised estimate from an input that requires grad; step rules do that under ``torch.enable_grad()``, so DPS also
works inside MONAI's ``no_grad`` evaluators (one rule for every inferer; ``torch.inference_mode`` tensors are
refused with a clear error since autograd cannot record them).

Norm groups (``norm``): ``"batch"`` (one norm over everything: TPDM, HFS-SDE), ``"item"`` (one per batch item) or an
int axis (one per item and index along that measurement axis: PaDIS' per-image norm of a volume's slices).
Complex residuals are measured by modulus.

Example (DPS for z-axis super-resolution with the exact Gaussian prior standing in for a network)::

    import torch
    from medgen.diffusion.consistency import DPS, StepContext
    from medgen.physics.zaxis import ZAxisAverage

    A = ZAxisAverage(4, axis=-1)
    y = A(torch.rand(2, 1, 16, 16))
    dps = DPS(A, y, weight=1.0)
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    x0_hat = x / 2                                       # any differentiable denoiser of x
    (x_new,) = dps.apply(StepContext(x_in=x, x0_hat=x0_hat), x.detach())
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_choice, check_int
from medgen.physics.base import LinearOperator
from medgen.physics.mri import CartesianMRI, check_multicoil_kspace, complex_to_channels
from medgen.solvers.cg import cg_iterate

__all__ = [
    "StepContext",
    "DataConsistency",
    "DPS",
    "NormalizedGradient",
    "HardProjection",
    "RangeNullSpace",
    "ConjugateGradientDenoised",
    "RePaint",
    "KSpaceMeasurement",
    "group_norms",
]

NORM_GROUPS = ("batch", "item")


def group_norms(t: torch.Tensor, norm: str | int) -> torch.Tensor:
    """L2 norms of ``t`` by group, broadcastable to ``t`` (``"batch"``: a 0-d tensor).

    Args:
        t: tensor ``(B, ...)``, real or complex (modulus).
        norm: ``"batch"``, ``"item"`` or an axis of ``t`` kept as its own group.
    """
    if norm == "batch":
        return torch.linalg.vector_norm(t)
    keep = None if norm == "item" else norm % t.ndim
    dims = [d for d in range(1, t.ndim) if d != keep]
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True) if dims else t.abs()


def _check_norm(norm: Any) -> str | int:
    if isinstance(norm, int) and not isinstance(norm, bool):
        return norm
    check_choice(norm, "norm", NORM_GROUPS)
    return norm


@dataclass
class StepContext:
    """What a step rule knows after a sub-step, handed to :meth:`DataConsistency.apply`.

    Attributes:
        x_in: the sub-step's input (requires grad when the term ``requires_graph``).
        x0_hat: the denoised estimate at ``x_in`` (computed from it, through the network, for DPS).
        sigma: noise level of ``x_in`` in the prior's units (float or ``(B,)``).
        step_size: the step rule's multiplier of the term (e.g. PaDIS' ``min(40, 200 sigma)``).
        generator: the sampler's random generator.
        noise_to_level: ``x0 -> x_t``, a clean state noised to the level of the step's output (RePaint).
    """

    x_in: torch.Tensor
    x0_hat: torch.Tensor | None = None
    sigma: Any = None
    step_size: Any = 1.0
    generator: torch.Generator | None = None
    noise_to_level: Callable[[torch.Tensor], torch.Tensor] | None = None


class DataConsistency:
    """Base of the consistency terms: an operator ``A``, a measurement ``y`` and the three hooks (all no-ops here).

    Args:
        operator: ``A``, acting on the sampler's state (compose it with a view's crop/slicing first when the state
            is not the image, :class:`~medgen.physics.base.ComposedOperator`).
        y: the measurement, shaped like ``A(state)``.
    """

    requires_graph = False

    def __init__(self, operator: LinearOperator, y: torch.Tensor) -> None:
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a medgen LinearOperator, got {type(operator).__name__}.")
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y (the measurement) must be a torch.Tensor, got {type(y).__name__}.")
        self.operator = operator
        self.y = y

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``A x - y``."""
        return self.operator(x) - self.y

    def restrict(self, index: slice) -> DataConsistency:
        """The same term for the batch items ``index`` of the state (``y`` and per-item operator buffers sliced)."""
        term = copy.copy(self)
        term.y = self.y[index]
        term.operator = self.operator.batch_slice(index)
        return term

    def guidance(self, x: torch.Tensor, score: torch.Tensor) -> torch.Tensor | None:
        """A term added to ``score`` inside a sub-step's update (``None``: none)."""
        return None

    def denoised(self, x0_hat: torch.Tensor) -> torch.Tensor:
        """The denoised estimate the step uses (unchanged here)."""
        return x0_hat

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The states after the sub-step's consistency update (unchanged here)."""
        return states

    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable settings (part of an inferer's resume fingerprint; ``y`` is digested separately)."""
        settings = {k: v for k, v in vars(self).items() if isinstance(v, (bool, int, float, str, type(None)))}
        return {"term": type(self).__name__, "operator": repr(self.operator), **settings}


class DPS(DataConsistency):
    """Diffusion posterior sampling (Chung et al., ICLR 2023) as TPDM and PaDIS run it.

    After a sub-step, ``weight * grad_{x_in} sum_groups ||A x0_hat(x_in) - y_target||_2`` is subtracted from every
    state: the norm is NOT squared and the gradient flows through the network that produced ``x0_hat``.

    Args:
        operator, y: see :class:`DataConsistency`.
        weight: constant step weight (TPDM's ``dps_weight``, PaDIS' ``zeta``).
        norm: norm groups (module docstring): TPDM ``"batch"`` (its ``batch_mean``) or ``"item"``; PaDIS per image.
        noisy_target: compare with the measurement noised to the current level, ``y + sigma A z``
            (``z ~ N(0, I)`` like ``x0_hat``, drawn from the context's generator): TPDM's official MR-ZSR quirk.
    """

    requires_graph = True

    def __init__(
        self, operator: LinearOperator, y: torch.Tensor, weight: float = 1.0, norm: str | int = "batch",
        noisy_target: bool = False,
    ) -> None:
        super().__init__(operator, y)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"weight must be a finite number, got {weight!r}.")
        self.weight = float(weight)
        self.norm = _check_norm(norm)
        self.noisy_target = bool(noisy_target)

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.weight == 0:
            return states
        if ctx.x0_hat is None or not ctx.x_in.requires_grad:
            raise RuntimeError("DPS needs x0_hat computed from an x_in that requires grad (the step rule's job).")
        target = self.y
        if self.noisy_target:
            noise = torch.empty_like(ctx.x0_hat).normal_(generator=ctx.generator)  # keeps x0_hat's memory layout
            sigma = torch.as_tensor(ctx.sigma, device=noise.device, dtype=noise.dtype)
            target = self.y + self.operator(noise * sigma.reshape(-1, *[1] * (noise.ndim - 1)))
        loss = group_norms(self.operator(ctx.x0_hat) - target, self.norm).sum()
        (grad,) = torch.autograd.grad(loss, ctx.x_in)
        grad = grad * self.weight
        return tuple((s - grad).detach() for s in states)


class NormalizedGradient(DataConsistency):
    """A gradient step along ``g = A^H (A x - y)`` normalised by a reference norm.

    - ``reference="score"`` (HFS-SDE): :meth:`guidance` returns ``-weight * g ||score|| / ||g||`` (0 where
      ``g = 0``), added to the score inside the sub-step's update, so the step size is the sampler's.
    - ``reference="residual"`` (PaDIS Langevin/PC data step): :meth:`apply` adds
      ``weight * step_size * A^H r / ||r||`` with ``r = y - A x_in`` to every state (0 where ``r = 0``).

    Args:
        operator, y: see :class:`DataConsistency`.
        weight: HFS-SDE's ``lam`` / PaDIS' ``zeta``.
        reference: ``"score"`` or ``"residual"``.
        norm: norm groups of ``||g||``/``||score||`` (``"score"``) or ``||r||`` (``"residual"``).
    """

    def __init__(
        self, operator: LinearOperator, y: torch.Tensor, weight: float = 1.0, reference: str = "score",
        norm: str | int = "batch",
    ) -> None:
        super().__init__(operator, y)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"weight must be a number >= 0, got {weight!r}.")
        check_choice(reference, "reference", ("score", "residual"))
        self.weight = float(weight)
        self.reference = reference
        self.norm = _check_norm(norm)

    def guidance(self, x: torch.Tensor, score: torch.Tensor) -> torch.Tensor | None:
        if self.reference != "score":
            return None
        g = self.operator.adjoint(self.residual(x))
        g_norm = group_norms(g, self.norm)
        scale = torch.where(g_norm > 0, group_norms(score, self.norm) / g_norm, torch.zeros_like(g_norm))
        return -(g * scale * self.weight)

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.reference != "residual":
            return states
        r = self.y - self.operator(ctx.x_in)
        norms = group_norms(r, self.norm)
        scale = torch.where(norms > 0, self.weight * ctx.step_size / norms, torch.zeros_like(norms))
        update = self.operator.adjoint(r * scale)
        return tuple(s + update for s in states)


class HardProjection(DataConsistency):
    """Hard data consistency ``x <- x + A^+ (y - A x)`` after each sub-step (onto ``{A x = y}`` when ``A A^+ = I``).

    With :class:`~medgen.physics.mri.CartesianMRI` it is k-space replacement (the measured k-space of each coil
    image replaced by ``y``, coils recombined), with :class:`~medgen.physics.zaxis.ZAxisAverage` TPDM's decoupled
    projection (block means replaced), with a mask inpainting with the clean known image.
    """

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x + A^+ (y - A x)``."""
        return x + self.operator.pseudo_inverse(self.y - self.operator(x))

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.project(s) for s in states)


class RangeNullSpace(HardProjection):
    """DDNM's range-null-space decomposition (Wang et al., ICLR 2023; PaDIS' ``ddnm`` variant).

    The denoised estimate is replaced by ``A^+ y + (I - A^+ A) x0_hat`` (its projection onto ``{A x = y}``) before
    the step uses it; the state itself is not corrected.
    """

    def denoised(self, x0_hat: torch.Tensor) -> torch.Tensor:
        return self.project(x0_hat)

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return states


class ConjugateGradientDenoised(DataConsistency):
    """DDS's data consistency (Chung, Lee and Ye, ICLR 2024): ``iterations`` conjugate-gradient steps on the normal
    equations ``A^H A x = A^H y`` started at the denoised estimate replace it before the step uses it.

    The correction stays in the Krylov subspace of ``A^H A`` around ``x0_hat`` (the measured components), so a few
    steps fit the data without leaving the prior's estimate elsewhere; no gradient goes through the network. CG's
    inner products are per batch item. The state itself is not corrected.

    Args:
        operator, y: see :class:`DataConsistency`.
        iterations: CG steps per call (DDS: 5).
    """

    def __init__(self, operator: LinearOperator, y: torch.Tensor, iterations: int = 5) -> None:
        super().__init__(operator, y)
        check_int(iterations, "iterations", 1)
        self.iterations = iterations

    def denoised(self, x0_hat: torch.Tensor) -> torch.Tensor:
        rhs = self.operator.adjoint(self.y - self.operator(x0_hat))
        state, _, _ = cg_iterate(self.operator.normal, rhs, None, self.iterations, ())
        return x0_hat + state["x"]


class RePaint(DataConsistency):
    """RePaint inpainting (Lugmayr et al., CVPR 2022): the known region replaced by the known image noised to the
    state's level, ``x <- from_image(lerp(to_image(x), to_image(noise_to_level(known)), mask))``.

    Works with any prior and step: the step supplies ``ctx.noise_to_level`` (VE: ``x0 + sigma z``; DDPM:
    ``q_sample(x0, t)``; ``None``: the clean known state, for the last step). ``to_image``/``from_image`` map a
    state that is not the image (WDM's wavelet coefficients) to image space, where the mask is exact.

    Example (RePaint with a score prior: TPDM's perpendicular VE sampler inpainting a volume; a random tiny network,
    so the filled region is noise-like: ``tests/inferers/test_compositions.py`` runs trained weights)::

        import torch
        from medgen.inferers.perpendicular import PerpendicularSliceInferer
        from medgen.networks.ncsnpp import NCSNpp

        net = NCSNpp(image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).eval()
        mask = torch.ones(1, 1, 16, 16, 16)
        mask[..., 4:12, 4:12, 4:12] = 0                                     # 1 = known voxel
        known = torch.rand(1, 1, 16, 16, 16) * mask
        inferer = PerpendicularSliceInferer("inpaint", consistency="repaint", steps=4, seed=0, progress=False)
        filled = inferer(known, net, mask=mask)                             # the known voxels kept exactly

    Args:
        mask: weights in ``[0, 1]`` broadcastable to the image, 1 = known.
        known: the known image in STATE coordinates (e.g. ``view.from_image(image)``).
        to_image: state -> image (default identity).
        from_image: image -> state (default identity).
    """

    def __init__(
        self,
        mask: torch.Tensor,
        known: torch.Tensor,
        to_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
        from_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        for name, value in (("mask", mask), ("known", known)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
        if bool((mask < 0).any()) or bool((mask > 1).any()):
            raise ValueError("mask must hold weights in [0, 1] (1 = known voxel).")
        self.mask, self.known = mask, known
        self.operator, self.y = None, known  # type: ignore[assignment]
        self.to_image = to_image or (lambda s: s)
        self.from_image = from_image or (lambda s: s)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask * (self.to_image(x) - self.to_image(self.known))

    def restrict(self, index: slice) -> RePaint:
        term = copy.copy(self)
        term.known = self.known[index]
        term.mask = self.mask[index] if self.mask.shape[0] > 1 else self.mask
        return term

    def apply(self, ctx: StepContext, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        known = self.known if ctx.noise_to_level is None else ctx.noise_to_level(self.known)
        known_image = self.to_image(known)
        return tuple(self.from_image(torch.lerp(self.to_image(s), known_image, self.mask)) for s in states)

    def fingerprint(self) -> dict[str, Any]:
        return {"term": "RePaint"}


@dataclass
class KSpaceMeasurement:
    """Undersampled k-space in HFS-SDE's real channel layout, with its forward operator.

    Attributes:
        operator: ``A = M F S`` on ``(B, 2, H, W)`` ``[real, imag]`` images (``CartesianMRI(..., channels=True)``).
        y: measured k-space ``c2r(M * kspace)``, ``(B, 2 Nc, H, W)`` real ``[re coils.., im coils..]``.
        low_frequency_image: ``A_low^H y = c2r(sum_c conj(S_c) ifft2c(M_low y_c))``, ``(B, 2, H, W)``, the
            measured low-frequency band coil-combined (``None`` for the VP/VE baselines, which do not use it).
    """

    operator: CartesianMRI
    y: torch.Tensor
    low_frequency_image: torch.Tensor | None = None

    def term(self, lam: float) -> DataConsistency:
        """HFS-SDE's data consistency: ``-g ||score|| / ||g|| * lam`` added to the score, ``g = A^H (A x - y)``."""
        return NormalizedGradient(self.operator, self.y, lam, reference="score", norm="batch")

    @classmethod
    def multicoil(
        cls,
        kspace: torch.Tensor,
        mask: torch.Tensor,
        sensitivity_maps: torch.Tensor | None = None,
        low_frequency_mask: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KSpaceMeasurement:
        """Validate multi-coil k-space and build ``A``, ``y`` and (with ``low_frequency_mask``) the low-frequency image.

        Args:
            kspace: complex ``(B, Nc, H, W)``.
            mask: sampling mask broadcastable to ``(B, Nc, H, W)``.
            sensitivity_maps: complex ``(B or 1, Nc, H, W)``, or ``None`` (single coil, ``Nc = 1``).
            low_frequency_mask: HFS-SDE's ``M`` ``(H, W)``, or ``None``.
            dtype: real working dtype (the network's).

        Raises:
            TypeError: a tensor has the wrong type or dtype.
            ValueError: shapes do not fit together (the message names the argument and both shapes).
        """
        kspace, mask, maps = check_multicoil_kspace(kspace, mask, sensitivity_maps)
        height, width = kspace.shape[-2:]
        if low_frequency_mask is not None and tuple(low_frequency_mask.shape) != (height, width):
            raise ValueError(
                f"low_frequency_mask (H, W) = {tuple(low_frequency_mask.shape)} must equal the k-space (H, W) = "
                f"({height}, {width})."
            )
        device = kspace.device
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        kspace = kspace.to(device=device, dtype=complex_dtype)
        mask = mask.to(device=device, dtype=dtype)
        maps = None if maps is None else maps.to(device=device, dtype=complex_dtype)
        operator = CartesianMRI(mask, maps, convention="ortho", channels=True)
        y = complex_to_channels(kspace * mask)
        low_image = None
        if low_frequency_mask is not None:
            low_mask = low_frequency_mask.to(device=device, dtype=dtype)
            low_image = CartesianMRI(low_mask, maps, convention="ortho", channels=True).adjoint(y)
        return cls(operator, y, low_image)

    def restrict(self, index: slice) -> KSpaceMeasurement:
        """The measurement of items ``index`` (per-item masks and maps are sliced, shared ones kept)."""
        low = self.low_frequency_image
        return KSpaceMeasurement(self.operator.batch_slice(index), self.y[index], None if low is None else low[index])

    def residual_norm(self, image: torch.Tensor) -> torch.Tensor:
        """``||A x - y||_2`` per item ``(B,)`` for an image ``(B, 2, H, W)`` (channels) or ``(B, 1, H, W)`` complex."""
        if image.is_complex():
            image = complex_to_channels(image)
        residual = self.operator(image) - self.y
        return torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=-1)
