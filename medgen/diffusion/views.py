"""Views: how a sampler's state is seen by the prior, and mapped back.

- :class:`PlaneView` (TPDM): a volume as stacks of 2D slices on two perpendicular planes, which plane at which step,
  and the minibatches the slices are processed in.
- :class:`CanvasView` (PaDIS): images (or a volume's slices) zero-padded to a canvas; :meth:`CanvasView.crop` is the
  linear map canvas -> image (its adjoint pads), so a measurement operator composes with it.
- :class:`SlabView` (CTCA SDM high-res): z-slabs of a volume, averaged back where they overlap.
- :class:`WaveletView` (WDM): an image padded to a size the network takes and seen as 3D Haar coefficients.
- :class:`OverlapMerger`: the one weighted average of overlapping tiles (N-D grid), used by the slab view and by
  PaDIS' overlapping patch grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medgen.checks import check_choice, check_int
from medgen.physics.base import LinearOperator
from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d

__all__ = [
    "BLEND_MODES",
    "LAST_SLAB_MODES",
    "PLANE_PRESETS",
    "blend_weights",
    "slab_layout",
    "OverlapMerger",
    "PlaneView",
    "plane_pair",
    "CanvasView",
    "CanvasCrop",
    "SlabView",
    "WaveletView",
    "as_plane",
]

BLEND_MODES = ("linear", "cosine", "constant")
LAST_SLAB_MODES = ("pad", "shift")

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


# ------------------------------------------------------------------------------------------- overlap merging


def blend_weights(
    starts: Sequence[int], size: int, mode: str = "linear", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Per-position weights of each tile along one axis, for averaging overlapping tiles.

    Where tile ``k`` overlaps its predecessor by ``L`` positions its weight rises over them as ``f((i + 0.5) / L)``
    and falls symmetrically where it overlaps its successor; elsewhere it is 1. ``f(u) = u`` (``"linear"``) or
    ``sin^2(pi u / 2)`` (``"cosine"``), so two tiles' weights sum to 1 in their overlap; ``"constant"`` weights every
    tile 1 (plain averaging). Callers divide by the summed weights.

    Args:
        starts: first position of each tile, increasing.
        size: tile length.
        mode: ``"linear"``, ``"cosine"`` or ``"constant"``.
        dtype: dtype of the result.

    Returns:
        ``(K, size)`` positive weights.

    Raises:
        ValueError: unknown mode or starts not increasing.
    """
    check_choice(mode, "mode", BLEND_MODES)
    starts = [int(s) for s in starts]
    if not starts or any(b <= a for a, b in zip(starts[:-1], starts[1:])):
        raise ValueError(f"starts must be a non-empty increasing sequence, got {starts}.")
    j = torch.arange(size, dtype=torch.float64)

    def ramp(position: torch.Tensor, length: int) -> torch.Tensor:
        if length <= 0 or mode == "constant":
            return torch.ones_like(position)
        u = ((position + 0.5) / length).clamp(max=1.0)
        return u if mode == "linear" else torch.sin(0.5 * math.pi * u) ** 2

    weights = []
    for k, start in enumerate(starts):
        lead = starts[k - 1] + size - start if k > 0 else 0
        trail = start + size - starts[k + 1] if k + 1 < len(starts) else 0
        weights.append(torch.minimum(ramp(j, lead), ramp(size - 1 - j, trail)))
    return torch.stack(weights).to(dtype)


class OverlapMerger:
    """Weighted average of tiles on an N-D grid over the trailing ``len(tile_size)`` axes.

    Tile ``(k_1, ..., k_n)`` (row-major over ``starts``) covers ``[starts[d][k_d], starts[d][k_d] + tile_size[d])``
    along each axis ``d``; its weight is the product of the per-axis :func:`blend_weights`. Where tiles overlap the
    result is ``sum_k w_k tile_k / sum_k w_k``; positions no tile covers are 0.

    Args:
        starts: per axis, the increasing tile starts.
        tile_size: tile extent per axis.
        blend: ``"constant"`` (count average), ``"linear"`` or ``"cosine"``.
    """

    def __init__(self, starts: Sequence[Sequence[int]], tile_size: Sequence[int], blend: str = "constant") -> None:
        if len(starts) != len(tile_size):
            raise ValueError(f"starts ({len(starts)} axes) and tile_size ({len(tile_size)}) must match.")
        self.starts = [list(map(int, s)) for s in starts]
        self.tile_size = tuple(int(t) for t in tile_size)
        self.weights = [blend_weights(s, t, blend) for s, t in zip(self.starts, self.tile_size)]

    def tile_slices(self) -> list[tuple[slice, ...]]:
        """The index of each tile in the merged tensor's trailing axes, row-major."""
        grids = [[slice(s, s + t) for s in starts] for starts, t in zip(self.starts, self.tile_size)]
        out: list[tuple[slice, ...]] = [()]
        for axis in grids:
            out = [prefix + (s,) for prefix in out for s in axis]
        return out

    def _tile_weight(self, index: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        weight = torch.ones((), dtype=torch.float64)
        for d, k in enumerate(index):
            shape = [1] * len(self.tile_size)
            shape[d] = self.tile_size[d]
            weight = weight * self.weights[d][k].reshape(shape)
        return weight.to(device=like.device, dtype=like.dtype)

    def merge(self, tiles: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Average ``tiles`` (each ``(..., *tile_size)``, row-major) into a tensor ``(..., *size)``."""
        counts = [len(s) for s in self.starts]
        if len(tiles) != math.prod(counts):
            raise ValueError(f"expected {math.prod(counts)} tiles, got {len(tiles)}.")
        lead = tiles[0].shape[: tiles[0].ndim - len(self.tile_size)]
        merged = tiles[0].new_zeros((*lead, *size))
        total = tiles[0].new_zeros(tuple(size))
        indices = torch.cartesian_prod(*[torch.arange(c) for c in counts]).reshape(len(tiles), -1).tolist()
        for tile, where, index in zip(tiles, self.tile_slices(), indices):
            weight = self._tile_weight(index, tile)
            merged[(..., *where)] += weight * tile
            total[where] += weight
        return merged / total.clamp(min=torch.finfo(total.dtype).tiny)


# ---------------------------------------------------------------------------------------------- TPDM planes


def as_plane(plane: int | Sequence[int], name: str) -> tuple[int, int, int]:
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


def plane_pair(
    planes: str | None, primary_plane: int | Sequence[int] | None, auxiliary_plane: int | Sequence[int] | None,
    default: str = "tpdm_mri",
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(primary, auxiliary)`` from a preset name of :data:`PLANE_PRESETS` OR the two planes (:func:`as_plane`); an
    auxiliary plane alone replaces the ``default`` preset's.

    Raises:
        ValueError: both a preset and planes, an unknown preset, a primary plane without an auxiliary one.
    """
    if planes is not None:
        if primary_plane is not None or auxiliary_plane is not None:
            raise ValueError("give either planes (a preset name) or primary_plane/auxiliary_plane, not both.")
        check_choice(planes, "planes", tuple(PLANE_PRESETS))
        return PLANE_PRESETS[planes]
    if primary_plane is None:
        if auxiliary_plane is not None:
            return PLANE_PRESETS[default][0], as_plane(auxiliary_plane, "auxiliary_plane")
        return PLANE_PRESETS[default]
    if auxiliary_plane is None:
        raise ValueError("auxiliary_plane is required when primary_plane is given.")
    return as_plane(primary_plane, "primary_plane"), as_plane(auxiliary_plane, "auxiliary_plane")


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass(frozen=True)
class PlaneView:
    """TPDM's two perpendicular slice planes of volumes ``(B, D0, D1, D2)`` and its minibatches.

    Step ``i`` is a *primary* step unless it is an auxiliary one:

    - ``K`` int ``>= 2``: ``K - 1`` primary steps then one auxiliary step (``i % K == K - 1`` is auxiliary);
    - ``K`` float ``> 0``: auxiliary with probability ``1 / K`` (``rand(1) > 1 / K`` is primary; one draw per step
      from the sampler's generator, before the step's other draws).

    The slices of each volume are split into ``ceil(S / batch_size)`` near-equal minibatches
    (``torch.tensor_split``); minibatches never mix volumes. Slices are VIEWS of the permuted volume: TPDM draws its
    noise with ``randn_like`` on them, whose values depend on the memory layout.

    Attributes:
        primary: ``(slice_axis, row_axis, col_axis)`` of the primary plane.
        auxiliary: that of the auxiliary plane (a different slice axis).
        K: the schedule (see above).
        batch_size: slices per minibatch.
    """

    primary: tuple[int, int, int] = PLANE_PRESETS["tpdm_mri"][0]
    auxiliary: tuple[int, int, int] = PLANE_PRESETS["tpdm_mri"][1]
    K: int | float = 2
    batch_size: int = 6

    def __post_init__(self) -> None:
        object.__setattr__(self, "primary", as_plane(self.primary, "primary_plane"))
        object.__setattr__(self, "auxiliary", as_plane(self.auxiliary, "auxiliary_plane"))
        if self.primary[0] == self.auxiliary[0]:
            raise ValueError(
                f"primary_plane {self.primary} and auxiliary_plane {self.auxiliary} slice along the same axis "
                f"{self.primary[0]}; they must be perpendicular."
            )
        if isinstance(self.K, bool) or not isinstance(self.K, (int, float)):
            raise TypeError(f"K must be an int (deterministic schedule) or a float (random), got {type(self.K).__name__}.")
        if isinstance(self.K, int) and self.K < 2:
            raise ValueError(f"K must be >= 2 when it is an int (K - 1 primary steps, then 1 auxiliary), got {self.K}.")
        if isinstance(self.K, float) and not (self.K > 0 and math.isfinite(self.K)):
            raise ValueError(f"K must be a finite float > 0 (auxiliary with probability 1 / K), got {self.K}.")
        check_int(self.batch_size, "batch_size", 1)

    def is_primary(self, step: int, generator: torch.Generator | None, device: torch.device) -> bool:
        """Whether step ``step`` is a primary step (draws one uniform number when ``K`` is a float)."""
        if isinstance(self.K, int):
            return step % self.K != self.K - 1
        draw = torch.rand(1, generator=generator, device=device if generator is None else generator.device)
        return bool((draw > 1 / self.K).item())

    def plane(self, primary: bool) -> tuple[int, int, int]:
        """The primary or the auxiliary plane."""
        return self.primary if primary else self.auxiliary

    @staticmethod
    def to_stack(volume: torch.Tensor, plane: Sequence[int]) -> torch.Tensor:
        """``(D0, D1, D2)`` -> slices ``(S, 1, R, C)`` of ``plane`` (a view)."""
        return volume.permute(tuple(plane)).unsqueeze(1)

    @staticmethod
    def from_stack(stack: torch.Tensor, plane: Sequence[int]) -> torch.Tensor:
        """Inverse of :meth:`to_stack`."""
        return stack.squeeze(1).permute(_inverse(plane))

    def chunks(self, num_slices: int) -> list[slice]:
        """The minibatches of ``num_slices`` slices (``torch.tensor_split`` sizes)."""
        count = math.ceil(num_slices / self.batch_size)
        base, extra = divmod(num_slices, count)
        bounds, start = [], 0
        for k in range(count):
            stop = start + base + (1 if k < extra else 0)
            bounds.append(slice(start, stop))
            start = stop
        return bounds

    def slice_masks(self, mask: torch.Tensor, batch: int, spatial: Sequence[int]) -> list[torch.Tensor]:
        """Each volume's mask of its primary slices: a 2D mask ``(R, C)`` shared by every slice, or a mask
        broadcastable to the volumes ``(batch, 1, *spatial)`` cut into its slices ``(S, 1, R, C)``.

        Raises:
            ValueError: ``mask`` is neither.
        """
        rows, cols = spatial[self.primary[1]], spatial[self.primary[2]]
        if mask.ndim == 2:
            if tuple(mask.shape) != (rows, cols):
                raise ValueError(
                    f"a 2D mask must have the primary slices' shape (rows, cols) = {(rows, cols)} of plane "
                    f"{self.primary}, got {tuple(mask.shape)}."
                )
            return [mask] * batch
        try:
            full = mask.expand(batch, 1, *spatial) if mask.ndim <= 5 else None
        except RuntimeError:
            full = None
        if full is None:
            raise ValueError(
                f"mask must be (rows, cols) = {(rows, cols)} or broadcastable to {(batch, 1, *spatial)}, got "
                f"{tuple(mask.shape)}."
            )
        return [self.to_stack(full[b, 0], self.primary) for b in range(batch)]

    def stack_shape(self, spatial: Sequence[int], plane: Sequence[int]) -> tuple[int, int, int, int]:
        """``(S, 1, R, C)`` of the slices of a volume of spatial shape ``spatial`` on ``plane``."""
        return (spatial[plane[0]], 1, spatial[plane[1]], spatial[plane[2]])

    @staticmethod
    def spatial_shape(stack_shape: Sequence[int], plane: Sequence[int]) -> tuple[int, int, int]:
        """The spatial shape of a volume with slices ``(S, 1, R, C)`` on ``plane`` (inverts :meth:`stack_shape`)."""
        spatial = [0, 0, 0]
        spatial[plane[0]], spatial[plane[1]], spatial[plane[2]] = stack_shape[0], stack_shape[2], stack_shape[3]
        return spatial[0], spatial[1], spatial[2]

    @staticmethod
    def assemble(volumes: Sequence[torch.Tensor]) -> torch.Tensor:
        """``B`` volumes ``(D0, D1, D2)`` as ``(B, D0, D1, D2)`` (a view for ``B = 1``, keeping the memory layout
        TPDM's next noise draws depend on)."""
        return volumes[0].unsqueeze(0) if len(volumes) == 1 else torch.stack(list(volumes))


# --------------------------------------------------------------------------------------------- PaDIS canvas


class CanvasCrop(LinearOperator):
    """Canvas stack ``(B', C, N, N)`` -> image/volume of ``image_shape`` (the image area, slices restacked).

    Its adjoint zero-pads, so ``ComposedOperator(A, CanvasCrop(view, shape))`` measures a canvas state.
    """

    coisometry = True

    def __init__(self, view: CanvasView, image_shape: Sequence[int]) -> None:
        super().__init__()
        self.view, self.image_shape = view, torch.Size(image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.view.centre(x, self.image_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.view.canvas(y)

    def extra_repr(self) -> str:
        return f"pad={self.view.pad}, image_shape={tuple(self.image_shape)}"


@dataclass(frozen=True)
class CanvasView:
    """Images ``(B, C, w, w)`` or volumes ``(B, C, D1, D2, D3)`` (cut into slices along ``slice_axis``) as zero-padded
    canvases ``(B', C, w + 2 pad, w + 2 pad)``.

    Attributes:
        pad: padding per side in pixels.
        slice_axis: for volumes, the axis (2, 3, 4 or -3, -2, -1) along which slices are taken.
    """

    pad: int
    slice_axis: int = -1

    def __post_init__(self) -> None:
        check_int(self.pad, "pad", 1)
        check_choice(self.slice_axis, "slice_axis", (2, 3, 4, -3, -2, -1))

    def to_images(self, volume: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` unchanged; ``(B, C, D1, D2, D3)`` -> ``(B * D, C, h, w)`` slices along ``slice_axis``."""
        if volume.ndim == 4:
            return volume
        moved = volume.movedim(self.slice_axis % 5, 2).transpose(1, 2)  # (B, D, C, h, w)
        return moved.reshape(-1, *moved.shape[2:])

    def to_volume(self, images: torch.Tensor, like_shape: Sequence[int]) -> torch.Tensor:
        """Inverse of :meth:`to_images` for a tensor shaped ``like_shape``."""
        if len(like_shape) == 4:
            return images
        axis = self.slice_axis % 5
        batch, channels, depth = like_shape[0], like_shape[1], like_shape[axis]
        stacked = images.reshape(batch, depth, channels, *images.shape[-2:]).transpose(1, 2)
        return stacked.movedim(2, axis)

    def image_size(self, image_shape: Sequence[int], name: str = "images") -> int:
        """The side ``w`` of the square images of an image/volume shape (the slices along ``slice_axis``).

        Raises:
            ValueError: the images (``name``) are not square.
        """
        plane = [s for d, s in enumerate(image_shape[2:], 2) if len(image_shape) == 4 or d != self.slice_axis % 5]
        if plane[0] != plane[1]:
            raise ValueError(
                f"PaDIS works on square images; {name} {tuple(image_shape)} have {plane[0]}x{plane[1]} slices."
            )
        return plane[0]

    def canvas(self, volume: torch.Tensor) -> torch.Tensor:
        """The zero-padded canvas stack of an image/volume."""
        return F.pad(self.to_images(volume), (self.pad,) * 4)

    def centre(self, canvas: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
        """The image/volume of ``image_shape`` inside a canvas stack."""
        p, size = self.pad, canvas.shape[-1] - 2 * self.pad
        return self.to_volume(canvas[..., p : p + size, p : p + size], image_shape)

    def crop(self, image_shape: Sequence[int]) -> CanvasCrop:
        """The linear map canvas -> image/volume of ``image_shape`` (:class:`CanvasCrop`)."""
        return CanvasCrop(self, image_shape)


# -------------------------------------------------------------------------------------------------- SDM slabs


def slab_layout(depth: int, slab_depth: int = 16, overlap: int = 0, last_slab: str = "pad") -> tuple[list[int], int]:
    """Where the slabs of a volume of ``depth`` slices start, and the depth of the canvas they cover.

    Slabs are ``slab_depth`` slices long and start every ``stride = slab_depth - overlap`` slices from 0. When
    ``depth`` is not ``slab_depth + n * stride``: ``last_slab="pad"`` adds one more slab and pads the canvas at the
    end to ``slab_depth + n * stride``; ``"shift"`` moves the last slab back to end at ``depth``. A volume shallower
    than one slab is padded to ``slab_depth``. With ``overlap=0`` and ``"pad"`` the slabs tile the canvas (the
    official CTCA layout: slab ``k`` covers ``[16 k, 16 k + 16)``).

    Returns:
        ``(starts, canvas_depth)``.

    Raises:
        ValueError: invalid arguments.
    """
    check_int(depth, "depth", 1)
    SlabView(slab_depth, overlap, last_slab)  # validates
    if depth <= slab_depth:
        return [0], slab_depth
    stride = slab_depth - overlap
    count = 1 + math.ceil((depth - slab_depth) / stride)
    starts = [k * stride for k in range(count)]
    if last_slab == "pad":
        return starts, starts[-1] + slab_depth
    starts[-1] = depth - slab_depth
    return starts, depth


@dataclass(frozen=True)
class SlabView:
    """z-slabs ``(..., slab_depth)`` of volumes ``(B, C, H, W, D)``, averaged back with :class:`OverlapMerger`.

    Attributes:
        slab_depth: slices per slab.
        overlap: slices shared by consecutive slabs, ``< slab_depth``.
        last_slab: ``"pad"`` or ``"shift"`` (:func:`slab_layout`).
        blend: weights of overlapping slabs (:func:`blend_weights`).
    """

    slab_depth: int = 16
    overlap: int = 0
    last_slab: str = "pad"
    blend: str = "linear"

    def __post_init__(self) -> None:
        check_int(self.slab_depth, "slab_depth", 1)
        check_int(self.overlap, "overlap", 0)
        if self.overlap >= self.slab_depth:
            raise ValueError(f"overlap must be smaller than slab_depth={self.slab_depth}, got {self.overlap}.")
        check_choice(self.last_slab, "last_slab", LAST_SLAB_MODES)
        check_choice(self.blend, "blend", BLEND_MODES)

    def layout(self, depth: int) -> tuple[list[int], int, bool]:
        """``(starts, canvas_depth, tiled)`` for ``depth`` slices; ``tiled``: no two slabs overlap."""
        starts, canvas = slab_layout(depth, self.slab_depth, self.overlap, self.last_slab)
        tiled = all(b - a == self.slab_depth for a, b in zip(starts[:-1], starts[1:]))
        return starts, canvas, tiled

    def cut(self, volume: torch.Tensor, starts: Sequence[int]) -> torch.Tensor:
        """Slabs ``(B * K, C, H, W, slab_depth)`` of ``volume`` (volume-major: row ``b * K + k``)."""
        slabs = torch.stack([volume[..., s : s + self.slab_depth] for s in starts], dim=1)
        return slabs.flatten(0, 1)

    def merge(self, slabs: torch.Tensor, starts: Sequence[int], depth: int) -> torch.Tensor:
        """Average slabs ``(B * K, C, H, W, slab_depth)`` back into volumes ``(B, C, H, W, depth)``."""
        count = len(starts)
        slabs = slabs.reshape(-1, count, *slabs.shape[1:])
        merger = OverlapMerger([starts], (self.slab_depth,), self.blend)
        return merger.merge([slabs[:, k] for k in range(count)], (depth,))


# ------------------------------------------------------------------------------------------------ WDM wavelets


@dataclass(frozen=True)
class WaveletView:
    """Images ``(B, C, D, H, W)`` of any size seen as 3D Haar coefficients ``(B, 8 C, D'/2, H'/2, W'/2)``.

    The image is padded at the end of each axis to a multiple of ``multiple`` with ``pad_value`` before the DWT
    (LLL divided by ``lll_scale``, WDM's 3), and cropped back after the inverse.

    Attributes:
        multiple: per-axis multiple of the padded size (even).
        lll_scale: divisor of the LLL subband.
        pad_value: constant of the padding.
    """

    multiple: tuple[int, int, int] = (2, 2, 2)
    lll_scale: float = 3.0
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        values = (self.multiple,) * 3 if isinstance(self.multiple, int) else tuple(self.multiple)
        if len(values) != 3 or any(isinstance(m, bool) or not isinstance(m, int) or m < 2 or m % 2 for m in values):
            raise ValueError(f"spatial_multiple must be an even integer >= 2 or three of them, got {self.multiple!r}.")
        object.__setattr__(self, "multiple", values)

    def padded(self, spatial: Sequence[int]) -> tuple[int, int, int]:
        """The padded image size of an image of ``spatial`` size."""
        return tuple(m * math.ceil(s / m) for s, m in zip(spatial, self.multiple))  # type: ignore[return-value]

    def pad(self, image: torch.Tensor, value: float | None = None) -> torch.Tensor:
        """Pad ``image`` at the end of each spatial axis to :meth:`padded` with ``value`` (default ``pad_value``)."""
        padded = self.padded(image.shape[2:])
        widths: list[int] = []
        for size, target in zip(reversed(image.shape[2:]), reversed(padded)):
            widths += [0, target - size]
        return F.pad(image, widths, mode="constant", value=self.pad_value if value is None else value)

    def dwt(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, D, H, W)`` (even sizes) -> ``(B, 8 C, D/2, H/2, W/2)``."""
        return haar_dwt3d(image, lll_scale=self.lll_scale, padding_mode="error")

    def idwt(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`dwt` (no cropping)."""
        return haar_idwt3d(coeffs, lll_scale=self.lll_scale)

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        """Padded image -> coefficients."""
        return self.dwt(self.pad(image))

    def to_image(self, coeffs: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Coefficients -> image cropped to ``spatial``."""
        image = self.idwt(coeffs)
        return image[:, :, : spatial[0], : spatial[1], : spatial[2]]

    def clip(self, coeffs: torch.Tensor, low: float, high: float) -> torch.Tensor:
        """WDM's ``process_xstart``: the coefficients of the clamped image, ``DWT(clamp(IDWT(c)))``."""
        return self.dwt(self.idwt(coeffs).clamp(low, high))
