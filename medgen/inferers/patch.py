"""PaDIS: whole-image diffusion priors from a patch denoiser, and the inverse solvers built on them.

Hu et al., "Learning Image Priors through Patch-based Diffusion Models for Solving Inverse Problems" (NeurIPS 2024,
public code jasonhu4/PaDIS). A network trained on small patches with positional channels
(:class:`medgen.networks.songunet.PatchEDMPrecond`) becomes a denoiser of the whole image:

- :class:`PatchDenoiser` zero-pads the image by ``pad`` to a ``(w + 2 pad)^2`` canvas, cuts it into patches, denoises
  all patches in ONE batched network call and puts the canvas back together (``mode="random"``: PaDIS'
  ``denoisedFromPatches``, non-overlapping patches at a fresh random offset per call; ``mode="overlap"``:
  ``denoisedOverlap``, a fixed overlapping grid averaged by count). The output has a zero border, so the score
  ``(D - x) / sigma^2`` also drives the border of the canvas to zero.
- :class:`PatchDiffusionInferer` solves ``y = A x`` with it for any :class:`~medgen.physics.base.LinearOperator`
  (sparse-view CT :class:`~medgen.physics.ct.ParallelBeamCT`, deblurring :class:`~medgen.physics.blur.Blur`,
  super-resolution :class:`~medgen.physics.blur.Downsample`) by PaDIS' DPS solver (the one the official ``main``
  runs) or its Langevin and predictor-corrector alternatives, on 2D images or slice by slice on volumes.

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

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.utils import convert_to_tensor

from medgen.diffusion.guidance import dps_gradient
from medgen.diffusion.schedules import karras_sigmas
from medgen.inferers.base import SamplingInferer, unwrap_network
from medgen.checks import check_int, check_number
from medgen.networks.songunet import patch_position_channels
from medgen.physics.base import LinearOperator
from medgen.checks import check_choice
from medgen.physics.blur import Downsample
from medgen.transforms.sinogram import GEOMETRY_KEY

__all__ = [
    "PATCH_MODES",
    "SOLVERS",
    "INITS",
    "RESIDUAL_NORMS",
    "PatchNetwork",
    "PatchDenoiser",
    "PatchDiffusionInferer",
]

PATCH_MODES = ("random", "overlap")
SOLVERS = ("dps", "langevin", "pc")
INITS = ("pseudo_inverse", "noise")
RESIDUAL_NORMS = ("per_image", "per_item", "batch")

PatchNetwork = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]
"""``network(patches (P, C, p, p), sigma, positions (P, 2, p, p)) -> denoised patches (P, C, p, p)``."""

# PaDIS' Langevin/PC data step size factor min(40, 200 * sigma) (inverse_nodist.py, hard-coded there)
_DATA_STEP_CAP = 40.0
_DATA_STEP_RATE = 200.0


def _check_patch_settings(patch_size: int, pad: int, mode: str, overlap: int, max_batch: int | None) -> None:
    """Validate the :class:`PatchDenoiser` settings (shared with :class:`PatchDiffusionInferer`)."""
    check_int(patch_size, "patch_size", 1)
    check_int(pad, "pad", 1)
    check_choice(mode, "mode", PATCH_MODES)
    check_int(overlap, "overlap", 0)
    if mode == "overlap" and overlap >= patch_size:
        raise ValueError(f"overlap must be smaller than patch_size={patch_size} in mode='overlap', got {overlap}.")
    check_int(max_batch, "max_batch", 1, allow_none=True)


class PatchDenoiser:
    """Whole-image denoiser ``D(x; sigma)`` on a zero-padded canvas, assembled from one batched call of a patch network.

    The canvas is the image zero-padded by ``pad`` on each side, ``N = w + 2 pad`` for a ``w x w`` image; positional
    channels are the canvas coordinates (:func:`~medgen.networks.songunet.patch_position_channels` normalised by
    ``N - 1``, as PaDIS' inference ``latents_pos``).

    - ``mode="random"`` (PaDIS ``denoisedFromPatches``): ``P = w // patch_size + 1`` patches per side at
      ``(a + p * patch_size, b + q * patch_size)``, ``p, q < P``, i.e. non-overlapping patches tiling a
      ``(P * patch_size)^2`` square shifted by an offset ``(a, b)`` in ``[0, pad - 1]^2`` drawn afresh at every call
      (one per batch item, row then column, from the given ``torch.Generator``). Inside the covered square the result
      is ``x + (D_patch - x_patch)`` (evaluated in that order, in ``x``'s dtype, as the official code does). Requires
      ``w + pad <= P * patch_size <= w + pad + 1``: the square must cover the image for every offset and stay on the
      canvas (PaDIS: ``w=256, patch_size=56, pad=24``; in general ``pad = (w // patch_size + 1) * patch_size - w``).
    - ``mode="overlap"`` (PaDIS ``denoisedOverlap``): a fixed grid of patches starting at ``pad`` with stride
      ``patch_size - overlap`` until the image is covered; overlapping outputs are averaged (sum / count).

    In both modes the output keeps the image area ``[pad, pad + w)^2`` and is ZERO on the border (the official
    ``t_goal=0`` case; the official function also draws an unused ``randn_like`` of the canvas there, which medgen
    does not). Patches and positions are gathered with tensor indexing, so ``D`` is differentiable in ``x`` (DPS).

    Args:
        network: patch denoiser ``network(patches, sigma, positions)``, e.g. a
            :class:`~medgen.networks.songunet.PatchEDMPrecond` (called positionally, as PaDIS does).
        patch_size: side of the square patches in pixels (PaDIS inference: 56).
        pad: zero padding of the image on each side in pixels (PaDIS: 24); the random offsets lie in ``[0, pad - 1]``.
        mode: ``"random"`` or ``"overlap"``.
        overlap: overlap in pixels of neighbouring patches in ``mode="overlap"`` (PaDIS default 8), in
            ``[0, patch_size - 1]``; unused by ``mode="random"``.
        max_batch: split the patch batch into network calls of at most this many patches (``None``: one call, as
            PaDIS). Saves activation memory without gradients; with gradients the graph of every chunk is kept.

    Raises:
        ValueError: on non-positive sizes, unknown ``mode`` or an ``overlap`` outside ``[0, patch_size - 1]`` in
            ``mode="overlap"``.
        TypeError: ``network`` is not callable.
    """

    def __init__(
        self,
        network: PatchNetwork,
        patch_size: int,
        pad: int,
        mode: str = "random",
        overlap: int = 8,
        max_batch: int | None = None,
    ) -> None:
        if not callable(network):
            raise TypeError(
                f"network must be callable as network(patches, sigma, positions), got {type(network).__name__}."
            )
        _check_patch_settings(patch_size, pad, mode, overlap, max_batch)
        self.network = network
        self.patch_size = patch_size
        self.pad = pad
        self.mode = mode
        self.overlap = overlap
        self.max_batch = max_batch

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self.patch_size}, pad={self.pad}, mode={self.mode!r}, "
            f"overlap={self.overlap}, max_batch={self.max_batch})"
        )

    # ------------------------------------------------------------------ geometry
    def canvas_size(self, image_size: int) -> int:
        """``image_size + 2 * pad``: side of the padded canvas."""
        return image_size + 2 * self.pad

    def patch_starts(self, image_size: int) -> list[int]:
        """Patch start coordinates along one axis of the canvas, for a ``image_size``-wide image.

        ``mode="random"``: the official ``spaced`` grid ``[0, patch_size, ..., (P - 1) * patch_size]`` with
        ``P = image_size // patch_size + 1``, to which each call adds its random offset. ``mode="overlap"``: the
        absolute starts ``pad, pad + stride, ...`` of the fixed grid.

        Raises:
            ValueError: the patch size, padding and image size do not fit together (see the class docstring).
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
    ) -> torch.Tensor:
        """Random patch-grid offsets ``(batch, 2)`` (row, column) in ``[0, pad - 1]`` for ``mode="random"``."""
        return torch.randint(0, self.pad, (batch, 2), generator=generator, device=device)

    def patch_indices(self, offset: Sequence[int] | torch.Tensor, image_size: int) -> list[list[int]]:
        """The official ``getIndices`` list ``[[row0, row1, col0, col1], ...]`` (row-major) for offset ``(a, b)``."""
        a, b = (int(v) for v in offset)
        ps = self.patch_size
        starts = self.patch_starts(image_size)
        if self.mode == "overlap":
            a = b = 0
        return [[r + a, r + a + ps, c + b, c + b + ps] for r in starts for c in starts]

    # ------------------------------------------------------------------- denoise
    def _check_canvas(self, x: torch.Tensor) -> int:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}.")
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x must be a square padded canvas (B, C, N, N), got shape {tuple(x.shape)}.")
        image_size = x.shape[-1] - 2 * self.pad
        if image_size < 1:
            raise ValueError(f"x is {x.shape[-1]} pixels wide, which leaves no image inside pad={self.pad}.")
        return image_size

    def _network(self, patches: torch.Tensor, sigma: Any, positions: torch.Tensor) -> torch.Tensor:
        chunk = self.max_batch or patches.shape[0]
        outputs = [
            self.network(patches[i : i + chunk], sigma, positions[i : i + chunk])
            for i in range(0, patches.shape[0], chunk)
        ]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if out.shape != patches.shape:
            raise ValueError(f"network returned shape {tuple(out.shape)} for patches {tuple(patches.shape)}.")
        return out.to(patches.dtype)

    def __call__(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        offsets: torch.Tensor | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Denoise the padded canvas ``x`` at noise level ``sigma``.

        Args:
            x: canvas ``(B, C, N, N)``, ``N = w + 2 pad``, in image units.
            sigma: noise standard deviation in image units (a float or 0-d tensor, passed to the network unchanged).
            offsets: ``mode="random"`` only: the grid offsets ``(B, 2)`` (or one ``(2,)`` pair for every item), row
                then column, in ``[0, pad - 1]``; drawn from ``generator`` when ``None``.
            generator: source of the random offsets (on ``x``'s device); ``None`` uses the global RNG.

        Returns:
            the denoised canvas ``(B, C, N, N)``, zero outside ``[pad, pad + w)^2``, dtype of ``x``.

        Raises:
            ValueError: bad canvas shape, sizes that do not fit, or offsets of the wrong shape/range.
        """
        image_size = self._check_canvas(x)
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
                    f"offsets must be integers of shape (2,) or ({batch}, 2), "
                    f"got {offsets.dtype} {tuple(offsets.shape)}."
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
        out = self._network(patches, sigma, positions)
        out = out.reshape(batch, count, count, channels, ps, ps).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(batch, channels, side, side)
        assembled = square + (out - square)
        inner = torch.arange(image_size, device=x.device)
        rows, cols = pad - offsets[:, :1] + inner, pad - offsets[:, 1:] + inner  # image area inside the square
        return assembled[items, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _denoise_overlap(self, x: torch.Tensor, sigma: Any, starts: list[int]) -> torch.Tensor:
        """Image area ``(B, C, w, w)`` of the count-averaged denoised patches of the fixed overlapping grid."""
        batch, channels, canvas = x.shape[0], x.shape[1], x.shape[-1]
        ps, pad = self.patch_size, self.pad
        stride = ps - self.overlap
        count = len(starts)
        end = starts[-1] + ps
        region = x[..., pad:end, pad:end]
        patches = F.unfold(region, ps, stride=stride)  # (B, C*ps*ps, count^2), row-major
        patches = patches.transpose(1, 2).reshape(-1, channels, ps, ps)
        grid = torch.tensor(starts, device=x.device)
        patch_rows = grid[:, None].expand(count, count).reshape(-1).repeat(batch)
        patch_cols = grid[None, :].expand(count, count).reshape(-1).repeat(batch)
        positions = patch_position_channels(patch_rows, patch_cols, ps, ps, canvas, device=x.device, dtype=x.dtype)
        out = self._network(patches, sigma, positions)
        out = out.reshape(batch, count * count, channels * ps * ps).transpose(1, 2)
        size = (end - pad, end - pad)
        summed = F.fold(out, size, ps, stride=stride)
        hits = F.fold(torch.ones_like(out[:1]), size, ps, stride=stride)
        image_size = canvas - 2 * pad
        return (summed / hits)[..., :image_size, :image_size]


class PatchDiffusionInferer(SamplingInferer):
    """PaDIS inverse solver: posterior sampling for ``y = A x`` with a patch-diffusion prior (:class:`PatchDenoiser`).

    Noise levels: Karras et al. ``sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``,
    ``i < num_steps``, then ``0`` (:func:`~medgen.diffusion.schedules.karras_sigmas`). The state is the padded canvas
    ``x`` (``N = w + 2 pad`` per side) of every image; ``D`` is the patch denoiser (border zero), ``score =
    (D - x) / sigma^2`` and ``x_c`` the image area of the canvas. Per noise level ``sigma`` (``inner_iterations``
    times each, a fresh patch offset per denoiser call):

    - ``solver="dps"`` (PaDIS ``dps``, what the official ``main`` runs): ``alpha = sigma^2 / 2``;
      ``x <- x - zeta * grad_x ||y - A(D_c)||_2 + alpha / 2 * score + sqrt(alpha) z`` (UN-squared norm, gradient
      through the denoiser, ``score`` and ``D`` at the same ``x``; no noise at the last level).
    - ``solver="langevin"`` (PaDIS ``langevin``): ``alpha = sigma^2``; data step
      ``x_c <- x_c + zeta / ||r|| * min(40, 200 sigma) * A^T r`` with ``r = y - A x_c``, then
      ``x <- x + alpha / 2 * score + sqrt(alpha) z`` (``score`` from before the data step; no noise at the last level).
      ``ddnm=True``: no data step; ``score = (x0 - x) / sigma^2`` with the range-null estimate
      ``x0 = A^+ y + D_c - A^+ A D_c`` (zero border).
    - ``solver="pc"`` (PaDIS ``pc_sampling``; ``inner_iterations`` unused): for the levels ``sigma > sigma'`` except
      the last pair ``(sigma_min, 0)``: predictor ``x <- x + (sigma^2 - sigma'^2) score + sqrt(sigma^2 - sigma'^2) z``;
      data step ``zeta / ||r||``; corrector with the SAME patch offset, ``D`` evaluated at ``sigma`` but
      ``score = (D - x) / sigma'^2``, ``eps = 2 snr ||z|| / ||score||`` (not squared), ``x <- x + eps score +
      sqrt(2 eps) z``; data step ``zeta / ||r|| * min(40, 200 sigma)``. These are the official formulas, kept as they
      are.

    Initialisation (``init``): ``"pseudo_inverse"`` = ``pad(clamp(A^+ y))`` (PaDIS ``dps``: the clamped FBP for CT,
    the operator's ``pseudo_inverse`` otherwise), or ``"noise"`` = ``sigma_max * z`` on the whole canvas (PaDIS
    ``langevin``; for ``pc`` only the image area, zero border, as official). Default: ``"pseudo_inverse"`` for dps,
    ``"noise"`` otherwise. The result is ``clamp(x_c)`` (PaDIS clamps to ``[0, 1]``, the data range of its models).

    Norms (``residual_norm``): PaDIS solves one image at a time, so its ``||y - A x||`` (and the ``||z||``,
    ``||score||`` of pc) belong to ONE image. ``"per_image"`` (default) keeps that: every 2D image of the batch, and
    every slice of a volume, has its own norm, so batching does not change a result's law (the gradient of the sum of
    the norms). It needs an operator acting slice by slice along ``slice_axis`` whose measurement keeps that axis at
    the same position (e.g. :class:`~medgen.physics.ct.ParallelBeamCT` with the same ``slice_axis``, or 2D
    :class:`~medgen.physics.blur.Blur`/:class:`~medgen.physics.blur.Downsample` with ``slice_axis=2``).
    ``"per_item"``: one norm per batch item (for operators coupling slices); ``"batch"``: one norm over everything
    (TPDM's convention, :func:`~medgen.diffusion.guidance.dps_gradient`). For one 2D image all three agree.

    Randomness: all offsets and noises come from the seeded generator (:meth:`generator`), so a seeded run repeats
    and resumes bit-identically; the official code draws the offsets from Python's ``random`` and the noise from the
    global torch RNG, so its random streams are not reproduced (its arithmetic is).

    Differences from the official code (all deliberate): any medgen ``LinearOperator`` (the public code only has CT
    and raises ``NotImplementedError`` for deblurring and super-resolution); the data term crops the actual image size
    (official ``measurement_cond_fn`` hard-codes ``w=256``); batches, channels and volumes are supported (official:
    one image, and ``pc`` draws a hard-coded 3-channel initial noise); the unused ``t_goal`` border noise draw is
    skipped.

    Args:
        operator: the forward model ``A`` (``forward``, ``adjoint``, ``pseudo_inverse``), moved to the measurement's
            device at call time.
        patch_size: patch side in pixels (PaDIS: 56).
        pad: canvas padding in pixels (PaDIS: 24); see :class:`PatchDenoiser` for the constraint with ``patch_size``.
        num_steps: number of noise levels ``n >= 2`` (PaDIS README: 100; click default 18).
        sigma_min: smallest noise level, image units (PaDIS README: 0.003).
        sigma_max: largest noise level, image units (PaDIS README: 10).
        rho: Karras schedule exponent (7).
        zeta: data-consistency step weight (PaDIS README: 0.3).
        inner_iterations: denoiser evaluations per noise level for dps and langevin (PaDIS: 10).
        solver: ``"dps"``, ``"langevin"`` or ``"pc"``.
        init: ``"pseudo_inverse"``, ``"noise"`` or ``None`` (the solver's official choice, see above).
        patch_mode: :class:`PatchDenoiser` ``mode`` (``"random"`` = PaDIS).
        overlap: :class:`PatchDenoiser` ``overlap`` for ``patch_mode="overlap"``.
        clamp: ``(low, high)`` range of the initial pseudo-inverse and of the result, or ``None`` for no clamping.
        slice_axis: for volumes ``(B, C, D1, D2, D3)``, the axis (2, 3, 4 or -3, -2, -1) along which the volume is cut
            into 2D images; all slices are denoised in one batch. The two other axes must be equal (square slices).
        residual_norm: ``"per_image"``, ``"per_item"`` or ``"batch"`` (see above).
        ddnm: ``solver="langevin"`` only: PaDIS' range-null-space variant.
        snr: ``solver="pc"`` corrector signal-to-noise ratio (PaDIS: 0.16).
        max_batch: :class:`PatchDenoiser` ``max_batch``.
        seed: seed of the sampler's generator (see :class:`~medgen.inferers.base.SamplingInferer`).
        progress: show a progress bar.
        checkpoint_dir: folder for the sampling state (resume after an interruption).
        checkpoint_every: save every this many noise levels.

    Raises:
        ValueError/TypeError: on invalid settings (before any computation).
    """

    def __init__(
        self,
        operator: LinearOperator,
        patch_size: int = 56,
        pad: int = 24,
        num_steps: int = 100,
        sigma_min: float = 0.003,
        sigma_max: float = 10.0,
        rho: float = 7.0,
        zeta: float = 0.3,
        inner_iterations: int = 10,
        solver: str = "dps",
        init: str | None = None,
        patch_mode: str = "random",
        overlap: int = 8,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        slice_axis: int = -1,
        residual_norm: str = "per_image",
        ddnm: bool = False,
        snr: float = 0.16,
        max_batch: int | None = None,
        *,
        seed: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        super().__init__(seed=seed, progress=progress, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
        if not isinstance(operator, LinearOperator):
            raise TypeError(f"operator must be a medgen LinearOperator, got {type(operator).__name__}.")
        check_choice(solver, "solver", SOLVERS)
        if init is None:
            init = "pseudo_inverse" if solver == "dps" else "noise"
        check_choice(init, "init", INITS)
        check_choice(residual_norm, "residual_norm", RESIDUAL_NORMS)
        check_choice(slice_axis, "slice_axis", (2, 3, 4, -3, -2, -1))
        self.num_steps = check_int(num_steps, "num_steps", 2)
        self.inner_iterations = check_int(inner_iterations, "inner_iterations", 1)
        karras_sigmas(2, sigma_min, sigma_max, rho)  # validates the schedule arguments
        check_number(zeta, "zeta", 0.0)
        check_number(snr, "snr", 0.0)
        if clamp is not None:
            if len(clamp) != 2 or not float(clamp[0]) < float(clamp[1]):
                raise ValueError(f"clamp must be None or (low, high) with low < high, got {clamp!r}.")
            clamp = (float(clamp[0]), float(clamp[1]))
        if ddnm and solver != "langevin":
            raise ValueError(f"ddnm=True is PaDIS' Langevin variant; it needs solver='langevin', got {solver!r}.")
        _check_patch_settings(patch_size, pad, patch_mode, overlap, max_batch)
        self.operator = operator
        self.patch_size = patch_size
        self.pad = pad
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.rho = float(rho)
        self.zeta = float(zeta)
        self.solver = solver
        self.init = init
        self.patch_mode = patch_mode
        self.overlap = overlap
        self.clamp = clamp
        self.slice_axis = slice_axis
        self.residual_norm = residual_norm
        self.ddnm = bool(ddnm)
        self.snr = float(snr)
        self.max_batch = max_batch

    def config(self) -> dict[str, Any]:
        """The settings that change the result (part of the resume fingerprint)."""
        return {
            **super().config(),
            "operator": repr(self.operator),
            "patch_size": self.patch_size,
            "pad": self.pad,
            "num_steps": self.num_steps,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "rho": self.rho,
            "zeta": self.zeta,
            "inner_iterations": self.inner_iterations,
            "solver": self.solver,
            "init": self.init,
            "patch_mode": self.patch_mode,
            "overlap": self.overlap,
            "clamp": list(self.clamp) if self.clamp is not None else None,
            "slice_axis": self.slice_axis,
            "residual_norm": self.residual_norm,
            "ddnm": self.ddnm,
            "snr": self.snr,
        }

    def sigmas(self) -> torch.Tensor:
        """The float64 noise levels ``(num_steps + 1,)``, descending, ending with 0."""
        return karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho)

    # -------------------------------------------------------------- layouts
    def _to_images(self, volume: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` unchanged; ``(B, C, D1, D2, D3)`` -> ``(B * D, C, h, w)`` slices along ``slice_axis``."""
        if volume.ndim == 4:
            return volume
        moved = volume.movedim(self.slice_axis % 5, 2).transpose(1, 2)  # (B, D, C, h, w)
        return moved.reshape(-1, *moved.shape[2:])

    def _to_volume(self, images: torch.Tensor, like_shape: torch.Size) -> torch.Tensor:
        """Inverse of :meth:`_to_images` for a tensor shaped ``like_shape``."""
        if len(like_shape) == 4:
            return images
        axis = self.slice_axis % 5
        batch, channels, depth = like_shape[0], like_shape[1], like_shape[axis]
        stacked = images.reshape(batch, depth, channels, *images.shape[-2:]).transpose(1, 2)
        return stacked.movedim(2, axis)

    def _measurement_norms(self, r: torch.Tensor) -> torch.Tensor:
        """Norms of a measurement-shaped tensor, keepdim, grouped by ``residual_norm``."""
        if self.residual_norm == "batch":
            return torch.linalg.vector_norm(r)
        keep = self.slice_axis % 5 if self.residual_norm == "per_image" and r.ndim == 5 else None
        dims = [d for d in range(1, r.ndim) if d != keep]
        return torch.linalg.vector_norm(r, dim=dims, keepdim=True)

    def _canvas_norms(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """Norms of a canvas stack ``(M, C, N, N)`` grouped by ``residual_norm``, broadcastable to it."""
        if self.residual_norm == "batch":
            return torch.linalg.vector_norm(t)
        if self.residual_norm == "per_image" or t.shape[0] == batch:
            return torch.linalg.vector_norm(t.flatten(1), dim=1).view(-1, 1, 1, 1)
        norms = torch.linalg.vector_norm(t.reshape(batch, -1), dim=1)
        return norms.repeat_interleave(t.shape[0] // batch).view(-1, 1, 1, 1)

    # ------------------------------------------------------------- checking
    def _check_inputs(self, y: torch.Tensor, network: Any, operator: LinearOperator) -> tuple[torch.Size, int]:
        """Validate the call; returns the image shape and its in-plane size ``w``."""
        if not callable(network):
            raise TypeError(
                f"network must be callable as network(patches, sigma, positions), got {type(network).__name__}."
            )
        if not y.is_floating_point():
            raise TypeError(f"inputs must be a real floating-point measurement, got dtype {y.dtype}.")
        if y.ndim not in (4, 5):
            raise ValueError(
                "inputs must be a batched measurement (B, C, ...) with 2 or 3 spatial dims, "
                f"got shape {tuple(y.shape)}."
            )
        try:
            with torch.no_grad():
                image_shape = operator.adjoint(y).shape
                measured_shape = operator(torch.zeros(image_shape, device=y.device, dtype=y.dtype)).shape
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"inputs of shape {tuple(y.shape)} is not a measurement of {operator!r}: {err}") from err
        if measured_shape != y.shape:
            raise ValueError(
                f"operator maps images {tuple(image_shape)} to {tuple(measured_shape)}, but inputs is {tuple(y.shape)}."
            )
        if len(image_shape) != y.ndim:
            raise ValueError(
                f"operator images {tuple(image_shape)} and measurement {tuple(y.shape)} differ in dimensions."
            )
        if len(image_shape) == 5:
            plane = [s for d, s in enumerate(image_shape) if d >= 2 and d != self.slice_axis % 5]
            if self.residual_norm == "per_image" and y.shape[self.slice_axis] != image_shape[self.slice_axis]:
                raise ValueError(
                    f"residual_norm='per_image' needs an operator acting slice by slice along slice_axis="
                    f"{self.slice_axis}, but the measurement {tuple(y.shape)} and the volume {tuple(image_shape)} "
                    "differ along it; use residual_norm='per_item' or the operator's slice axis."
                )
        else:
            plane = list(image_shape[-2:])
        if plane[0] != plane[1]:
            raise ValueError(
                f"PaDIS works on square images; the operator's images {tuple(image_shape)} have "
                f"{plane[0]}x{plane[1]} slices."
            )
        channels = getattr(unwrap_network(network), "img_channels", None)
        if isinstance(channels, int) and channels != image_shape[1]:
            raise ValueError(
                f"network denoises {channels}-channel images, the operator's images have {image_shape[1]} channels."
            )
        PatchDenoiser(network, self.patch_size, self.pad, self.patch_mode, self.overlap).patch_starts(plane[0])
        return image_shape, plane[0]

    # ----------------------------------------------------------------- call
    def __call__(  # type: ignore[override]
        self, inputs: torch.Tensor, network: PatchNetwork, *args: Any, **kwargs: Any
    ) -> MetaTensor:
        """Reconstruct images from the measurement ``inputs``.

        Args:
            inputs: measurement ``y = A x`` (+ noise), batched: e.g. sinograms ``(B, C, detectors, angles)`` for CT,
                ``(B, C, H, W)`` for deblurring, ``(B, C, H / f, W / f)`` for super-resolution, or the operator's
                volume layout ``(B, C, ...)`` with 3 spatial dims. A MetaTensor's meta is carried to the output.
            network: the patch denoiser ``network(patches, sigma, positions)`` (e.g.
                :class:`~medgen.networks.songunet.PatchEDMPrecond`), sigma in image units.
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
        if args or kwargs:
            raise TypeError(f"PatchDiffusionInferer takes (inputs, network) only, got extra {args!r} {sorted(kwargs)}.")
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor measurement, got {type(inputs).__name__}.")
        with torch.inference_mode(False):
            y = convert_to_tensor(inputs, track_meta=False).clone()
            operator = self.operator.to(device=y.device)
            image_shape, image_size = self._check_inputs(y, network, operator)
            result = self._sample(y, network, operator, image_shape, image_size)
        return self._wrap(result, inputs, operator)

    def _sample(
        self, y: torch.Tensor, network: PatchNetwork, operator: LinearOperator, image_shape: torch.Size, image_size: int
    ) -> torch.Tensor:
        pad = self.pad
        denoiser = PatchDenoiser(network, self.patch_size, pad, self.patch_mode, self.overlap, self.max_batch)
        generator = self.generator(y.device)
        batch = y.shape[0]
        sigmas = self.sigmas().tolist()

        def noise(like: torch.Tensor) -> torch.Tensor:
            return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

        def canvas(volume: torch.Tensor) -> torch.Tensor:
            return F.pad(self._to_images(volume), (pad,) * 4)

        def centre(x: torch.Tensor) -> torch.Tensor:
            return self._to_volume(x[..., pad : pad + image_size, pad : pad + image_size], image_shape)

        def denoise(x: torch.Tensor, sigma: float, offsets: torch.Tensor | None = None) -> torch.Tensor:
            return denoiser(x, sigma, offsets=offsets, generator=generator)

        def draw_offsets(x: torch.Tensor) -> torch.Tensor | None:
            return denoiser.draw_offsets(x.shape[0], generator, x.device) if self.patch_mode == "random" else None

        def data_step(x: torch.Tensor, scale: float) -> torch.Tensor:
            """``x_c += zeta / ||r|| * scale * A^T r`` with ``r = y - A x_c`` (Langevin/PC)."""
            r = y - operator(centre(x))
            update = (self.zeta / self._measurement_norms(r) * scale) * operator.adjoint(r)
            return x + canvas(update)

        with torch.no_grad():
            if self.init == "pseudo_inverse" or self.ddnm:
                pinv_y = operator.pseudo_inverse(y)
            if self.init == "pseudo_inverse":
                x0 = pinv_y if self.clamp is None else pinv_y.clamp(*self.clamp)
                x = canvas(x0)
            else:
                x = canvas(torch.zeros(image_shape, device=y.device, dtype=y.dtype))
                if self.solver == "pc":
                    x = canvas(self.sigma_max * noise(centre(x)))
                else:
                    x = self.sigma_max * noise(x)

        def dps_step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            sigma, last = sigmas[i], i == self.num_steps - 1
            alpha = 0.5 * sigma**2
            x = state["x"]
            for _ in range(self.inner_iterations):
                with torch.enable_grad():
                    x = x.detach().requires_grad_(True)
                    denoised = denoise(x, sigma)
                    residual_fn = lambda d: y - operator(centre(d))  # noqa: E731
                    if self.residual_norm == "batch":
                        grad = dps_gradient(x, denoised, residual_fn, weight=self.zeta)
                    else:
                        loss = self._measurement_norms(residual_fn(denoised)).sum()
                        grad = self.zeta * torch.autograd.grad(loss, x)[0]
                with torch.no_grad():
                    score = (denoised - x) / sigma**2
                    x = x.detach() - grad
                    x = x + alpha / 2 * score if last else x + alpha / 2 * score + math.sqrt(alpha) * noise(x)
            return {"x": x.detach()}

        @torch.no_grad()
        def langevin_step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            sigma, last = sigmas[i], i == self.num_steps - 1
            alpha = sigma**2
            x = state["x"]
            for _ in range(self.inner_iterations):
                denoised = denoise(x, sigma)
                if self.ddnm:
                    d_c = centre(denoised)
                    x0 = pinv_y + d_c - operator.pseudo_inverse(operator(d_c))
                    score = (canvas(x0) - x) / sigma**2
                else:
                    score = (denoised - x) / sigma**2
                    x = data_step(x, min(_DATA_STEP_CAP, sigma * _DATA_STEP_RATE))
                x = x + alpha / 2 * score if last else x + alpha / 2 * score + math.sqrt(alpha) * noise(x)
            return {"x": x}

        @torch.no_grad()
        def pc_step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            x = state["x"]
            offsets = draw_offsets(x)
            score = (denoise(x, sigma, offsets) - x) / sigma**2
            x = x + (sigma**2 - sigma_next**2) * score
            x = x + math.sqrt(sigma**2 - sigma_next**2) * noise(x)
            x = data_step(x, 1.0)
            z = noise(x)
            score = (denoise(x, sigma, offsets) - x) / sigma_next**2
            eps = 2 * self.snr * self._canvas_norms(z, batch) / self._canvas_norms(score, batch)
            x = x + eps * score
            x = x + torch.sqrt(2 * eps) * z
            return {"x": data_step(x, min(_DATA_STEP_CAP, sigma * _DATA_STEP_RATE))}

        step_fn = {"dps": dps_step, "langevin": langevin_step, "pc": pc_step}[self.solver]
        num_loop_steps = self.num_steps - 1 if self.solver == "pc" else self.num_steps
        loop = self.sampling_loop(num_loop_steps, y.shape, extra={"measurement": y})
        x = loop.run({"x": x}, step_fn, generator=generator)["x"]
        result = centre(x)
        return result if self.clamp is None else result.clamp(*self.clamp)

    def _wrap(self, result: torch.Tensor, inputs: torch.Tensor, operator: LinearOperator) -> MetaTensor:
        out = self.wrap_output(result, inputs)
        if not isinstance(inputs, MetaTensor):
            return out
        out.meta.pop(GEOMETRY_KEY, None)
        if isinstance(operator, Downsample) and "affine" in out.meta:
            affine = out.affine.clone()
            factor = operator.factor
            for axis in range(result.ndim - operator.spatial_dims, result.ndim):
                k = axis - 2
                if k < affine.shape[-1] - 1:
                    column = affine[..., :-1, k].clone()
                    affine[..., :-1, -1] -= column * (factor - 1) / (2 * factor)
                    affine[..., :-1, k] = column / factor
            out.affine = affine
        return out
