"""Resolution-reducing measurement transforms: z-axis block averaging (TPDM's MR z-axis super-resolution input)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, ensure_tuple_rep

from medgen.physics.zaxis import ZAxisAverage
from medgen.transforms.utils import apply_to_keys, as_floating_tensor, restore_type, scale_voxel_axes

__all__ = [
    "ZAXIS_META_KEY",
    "ZAxisDownsample",
    "ZAxisDownsampled",
    "ZAxisDownsampleD",
    "ZAxisDownsampleDict",
]

ZAXIS_META_KEY = "zaxis_average"


class ZAxisDownsample(Transform):
    """Average ``factor`` consecutive slices along one spatial axis (thick-slice simulation, TPDM MR-ZSR).

    Wraps :class:`medgen.physics.zaxis.ZAxisAverage` on channel-first data without batch: ``(C, X, Y, Z)`` ->
    ``(C, X, Y, M)`` with ``M = Z // factor`` (``remainder="crop"``, TPDM) or ``ceil(Z / factor)``
    (``remainder="partial"``).

    MetaTensor geometry: the voxel size along ``axis`` is multiplied by ``factor`` and the origin moves by
    ``(factor - 1) / 2`` input voxels along that axis, so each output voxel centre sits at the centre of the block it
    averages (``affine_out = affine_in @ [scale f, shift (f - 1) / 2]`` on that axis; ``pixdim`` follows). A partial
    last block is thinner than the affine says. The meta also records ``meta["zaxis_average"] = {"factor", "axis",
    "remainder", "length"}`` (``length``: the input length ``Z``, needed to map the measurement back with
    :meth:`ZAxisAverage.pseudo_inverse`).

    Args:
        factor: number of slices averaged, ``>= 1``.
        axis: axis of the channel-first array to average (``-1``: the last spatial axis, z for RAS volumes; ``0`` is
            the channel axis and is refused).
        remainder: ``"crop"`` (TPDM: trailing ``Z % factor`` slices dropped) or ``"partial"`` (averaged into one
            more slice).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, factor: int, axis: int = -1, remainder: str = "crop") -> None:
        self.operator = ZAxisAverage(factor, axis=axis, remainder=remainder)

    def __call__(self, img: Any) -> Any:
        x = as_floating_tensor(img)
        if x.ndim < 2:
            raise ValueError(f"img must be channel-first (C, *spatial), got shape {tuple(x.shape)}.")
        axis = self.operator.axis
        if not -x.ndim <= axis < x.ndim or axis % x.ndim == 0:
            raise ValueError(
                f"axis must index a spatial axis of the channel-first image with shape {tuple(x.shape)}, got {axis}."
            )
        axis = axis % x.ndim
        with torch.no_grad():
            out = restore_type(self.operator(x), img)
        if isinstance(out, MetaTensor):
            factor = self.operator.factor
            out.affine = scale_voxel_axes(out.affine, {axis - 1: factor})
            out.meta[ZAXIS_META_KEY] = {
                "factor": factor,
                "axis": axis,
                "remainder": self.operator.remainder,
                "length": int(x.shape[axis]),
            }
        return out


class ZAxisDownsampled(MapTransform):
    """Dictionary-based wrapper of :class:`ZAxisDownsample`.

    Args:
        keys: keys of the images to downsample.
        factor, axis, remainder: as :class:`ZAxisDownsample`.
        measurement_key: where to write each low-resolution image (one key, or one per key); ``None`` replaces the
            image. E.g. ``ZAxisDownsampled("image", factor=4, measurement_key="lowres")`` keeps ``"image"``.
        allow_missing_keys: do not raise on missing keys.
    """

    backend = ZAxisDownsample.backend

    def __init__(
        self,
        keys: KeysCollection,
        factor: int,
        axis: int = -1,
        remainder: str = "crop",
        measurement_key: str | Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.downsample = ZAxisDownsample(factor, axis=axis, remainder=remainder)
        self.measurement_keys = ensure_tuple_rep(measurement_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return apply_to_keys(self, data, self.downsample, self.measurement_keys)


ZAxisDownsampleD = ZAxisDownsampleDict = ZAxisDownsampled
