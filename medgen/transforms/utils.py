"""Small pieces shared by medgen's MONAI transforms: type conversion in and out, and per-key application."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type, convert_to_tensor

__all__ = ["as_plain_tensor", "as_floating_tensor", "restore_type", "apply_to_keys", "scale_voxel_axes", "refined_affine"]


def as_plain_tensor(img: Any) -> torch.Tensor:
    """``img`` (numpy array, tensor or MetaTensor) as a plain ``torch.Tensor`` on its device, meta dropped.

    Pair with :func:`restore_type` to give the result the input's type and meta back.
    """
    return convert_to_tensor(img, track_meta=False)


def as_floating_tensor(img: Any, track_meta: bool = False) -> torch.Tensor:
    """Like :func:`as_plain_tensor` (or a MetaTensor with ``track_meta``), integer/bool data promoted to float32.

    Floating and complex data keep their dtype.
    """
    x = convert_to_tensor(img, track_meta=track_meta)
    return x if x.is_floating_point() or x.is_complex() else x.float()


def restore_type(out: torch.Tensor, like: Any) -> Any:
    """``out`` converted to the type and device of ``like`` keeping ``out``'s dtype.

    A MetaTensor ``like`` gives a MetaTensor with a copy of its meta (affine included); a numpy ``like`` gives numpy.
    """
    return convert_to_dst_type(out, like, dtype=out.dtype)[0]


def apply_to_keys(
    transform: MapTransform,
    data: Mapping[Hashable, Any],
    fn: Callable[[Any], Any],
    output_keys: Sequence[Hashable | None] | None = None,
) -> dict[Hashable, Any]:
    """The loop of a dictionary transform: ``d[out] = fn(d[key])`` for every key of ``transform`` present in ``data``.

    Args:
        transform: the dictionary transform (its ``key_iterator`` honours ``allow_missing_keys``).
        data: the input dictionary (not modified; a shallow copy is returned).
        fn: what to apply to each value.
        output_keys: one output key per key of ``transform`` (``None`` entries write back to the key itself), or
            ``None`` to replace every value in place.

    Returns:
        the new dictionary.
    """
    d = dict(data)
    if output_keys is None:
        for key in transform.key_iterator(d):
            d[key] = fn(d[key])
    else:
        for key, out_key in transform.key_iterator(d, output_keys):
            d[key if out_key is None else out_key] = fn(d[key])
    return d


def scale_voxel_axes(affine: torch.Tensor, scales: Mapping[int, float]) -> torch.Tensor:
    """The affine of a grid whose voxels are ``scales[k]`` times as long along spatial axis ``k``, same extent.

    Voxel centres move with the blocks they stand for: coarsening by ``f`` (``scale = f``) puts each new voxel at the
    centre of the ``f`` old ones it averages; refining by ``f`` (``scale = 1 / f``) puts ``f`` new voxels where one
    old voxel was. Column ``k`` becomes ``column * s`` and the origin moves by ``column * (s - 1) / 2``.

    Args:
        affine: ``(..., 4, 4)`` (or ``(N + 1, N + 1)``) voxel-to-world matrix.
        scales: spatial axis -> scale; axes beyond the affine's dimension are ignored.

    Returns:
        a new affine of the input's dtype.
    """
    out = affine.clone().to(torch.float64)
    for axis, scale in scales.items():
        if axis < out.shape[-1] - 1:
            column = out[..., :-1, axis].clone()
            out[..., :-1, -1] += column * (scale - 1) / 2
            out[..., :-1, axis] = column * scale
    return out.to(affine.dtype)


def refined_affine(affine: torch.Tensor, factors: Mapping[int, int]) -> torch.Tensor:
    """The affine of the grid ``factors[k]`` times finer along spatial axis ``k`` whose blocks of ``factor`` voxels
    average to the coarse voxels (:func:`scale_voxel_axes` with scale ``1 / factor``)."""
    return scale_voxel_axes(affine, {axis: 1.0 / factor for axis, factor in factors.items()})
