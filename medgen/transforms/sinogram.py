"""Sinogram transforms: parallel-beam projection of images/volumes and filtered back-projection (FBP).

Both wrap :class:`medgen.physics.ct.ParallelBeamCT`. Data are channel-first without batch: an image ``(C, H, W)``
gives a sinogram ``(C, num_detectors, num_angles)``; a volume ``(C, D1, D2, D3)`` is projected slice by slice along
``slice_axis`` (default ``-1``: the last spatial axis, i.e. the axial slices of a RAS ``(C, X, Y, Z)`` volume), giving
``(C, num_detectors, num_angles, Z)``.

Meta data of a sinogram MetaTensor: the source image's meta (including its ``affine``) is carried unchanged so that
:class:`FilteredBackProject` gives the reconstruction the image's geometry back (the affine does NOT describe the
sinogram grid), plus the projection geometry under ``"ct_geometry"``: a dict of
:meth:`ParallelBeamCT.geometry` entries (``angles``: float64 tensor in RADIANS; ``num_detectors``;
``detector_spacing`` in pixels; ``pixel_size``; ``image_size`` ``(H, W)``; ``rotation_center``; ``detector_center``;
``ray_step``; ``num_ray_samples``; ``slice_axis``; default FBP ``fbp_filter``/``fbp_frequency_scaling``;
``fbp_backprojector``; ``fbp_ramp``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, ensure_tuple_rep

from medgen.checks import check_choice
from medgen.physics.ct import FBP_FILTERS, ParallelBeamCT
from medgen.transforms.utils import apply_to_keys, as_floating_tensor, restore_type

__all__ = [
    "GEOMETRY_KEY",
    "ParallelBeamProject",
    "ParallelBeamProjectd",
    "ParallelBeamProjectD",
    "ParallelBeamProjectDict",
    "FilteredBackProject",
    "FilteredBackProjectd",
    "FilteredBackProjectD",
    "FilteredBackProjectDict",
]

GEOMETRY_KEY = "ct_geometry"
_PRESETS = ("tpdm", "padis")


def _in_plane_size(shape: Sequence[int], slice_axis: int) -> tuple[int, int]:
    """``(H, W)`` of a channel-first ``(C, H, W)`` image or ``(C, D1, D2, D3)`` volume."""
    spatial = list(shape[1:])
    if len(spatial) == 3:
        del spatial[slice_axis % 5 - 2]
    return int(spatial[0]), int(spatial[1])


def _channel_first(img: Any, name: str) -> torch.Tensor:
    """``img`` as a plain floating tensor, checked to be ``(C, H, W)`` or ``(C, D1, D2, D3)``."""
    x = as_floating_tensor(img)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be channel-first without batch, (C, H, W) or (C, D1, D2, D3), got shape {tuple(x.shape)}."
        )
    return x


class _OperatorSource:
    """Gives the ParallelBeamCT for an input: a fixed operator, or one built (and cached) per in-plane size."""

    def __init__(self, operator: ParallelBeamCT | None, preset: str | None, angles: Any, geometry: dict) -> None:
        if operator is not None and not isinstance(operator, ParallelBeamCT):
            raise TypeError(f"operator must be a ParallelBeamCT or None, got {type(operator).__name__}.")
        if preset is not None and preset not in _PRESETS:
            raise ValueError(f"preset must be one of {_PRESETS} or None, got {preset!r}.")
        if operator is None and preset is None and angles is None:
            raise ValueError("give an operator, a preset ('tpdm' or 'padis') or angles.")
        self.operator, self.preset, self.angles, self.geometry = operator, preset, angles, geometry
        self._cache: dict[tuple[int, int], ParallelBeamCT] = {}

    @property
    def slice_axis(self) -> int:
        if self.operator is not None:
            return self.operator.slice_axis
        return self.geometry.get("slice_axis", -1)

    def __call__(self, size: tuple[int, int]) -> ParallelBeamCT:
        if self.operator is not None:
            return self.operator
        if size not in self._cache:
            if self.preset is None:
                self._cache[size] = ParallelBeamCT(size, self.angles, **self.geometry)
            elif size[0] != size[1]:
                raise ValueError(f"the {self.preset!r} preset needs square slices, got in-plane size {size}.")
            else:
                self._cache[size] = getattr(ParallelBeamCT, self.preset)(size[0], **self.geometry)
        return self._cache[size]


class ParallelBeamProject(Transform):
    """Simulate a parallel-beam CT measurement: image ``(C, H, W)`` -> sinogram ``(C, num_detectors, num_angles)``.

    Volumes ``(C, D1, D2, D3)`` are projected slice by slice (see the module docstring). The geometry comes from
    ``operator`` if given, else it is built for each input's in-plane size from ``preset`` (``"tpdm"``:
    :meth:`ParallelBeamCT.tpdm`, ``"padis"``: :meth:`ParallelBeamCT.padis`, extra ``geometry`` kwargs passed on, e.g.
    ``sparsity=5`` or ``views=20``) or from ``angles`` (radians, or an int count over ``[0, pi)``) and ``geometry``
    (any other :class:`ParallelBeamCT` argument).

    Args:
        operator: a ready :class:`ParallelBeamCT`.
        preset: ``"tpdm"``, ``"padis"`` or ``None``.
        angles: projection angles in RADIANS or their number (used when ``operator`` and ``preset`` are ``None``).
        geometry: further :class:`ParallelBeamCT` / preset keyword arguments (e.g. ``num_detectors``, ``slice_axis``).

    Returns (``__call__``):
        the sinogram, same type as the input (MetaTensor with the meta described in the module docstring).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        operator: ParallelBeamCT | None = None,
        preset: str | None = None,
        angles: torch.Tensor | Sequence[float] | int | None = None,
        **geometry: Any,
    ) -> None:
        self.source = _OperatorSource(operator, preset, angles, geometry)

    def __call__(self, img: Any) -> Any:
        x = _channel_first(img, "img")
        op = self.source(_in_plane_size(x.shape, self.source.slice_axis)).to(device=x.device)
        with torch.no_grad():
            out = restore_type(op(x.unsqueeze(0))[0], img)
        if isinstance(out, MetaTensor):
            out.meta[GEOMETRY_KEY] = op.geometry()
        return out


class ParallelBeamProjectd(MapTransform):
    """Dictionary-based wrapper of :class:`ParallelBeamProject`.

    Args:
        keys: keys of the images to project.
        measurement_key: where to write each sinogram (one key, or one per key); ``None`` replaces the image. With a
            measurement key the image is kept, e.g. ``ParallelBeamProjectd("image", preset="tpdm",
            measurement_key="sinogram")``.
        operator, preset, angles, geometry: as :class:`ParallelBeamProject`.
        allow_missing_keys: do not raise on missing keys.
    """

    backend = ParallelBeamProject.backend

    def __init__(
        self,
        keys: KeysCollection,
        measurement_key: str | Sequence[str] | None = None,
        operator: ParallelBeamCT | None = None,
        preset: str | None = None,
        angles: torch.Tensor | Sequence[float] | int | None = None,
        allow_missing_keys: bool = False,
        **geometry: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.projector = ParallelBeamProject(operator=operator, preset=preset, angles=angles, **geometry)
        self.measurement_keys = ensure_tuple_rep(measurement_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return apply_to_keys(self, data, self.projector, self.measurement_keys)


class FilteredBackProject(Transform):
    """Filtered back-projection: sinogram ``(C, num_detectors, num_angles)`` -> image ``(C, H, W)`` (volumes as
    :class:`ParallelBeamProject`).

    The geometry comes from ``operator`` if given, else from the sinogram MetaTensor's ``"ct_geometry"`` meta (written
    by :class:`ParallelBeamProject`), else from ``image_size`` + ``preset``/``angles``/``geometry``.

    Args:
        filter: FBP filter (``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, ``"hann"``); ``None`` uses the
            geometry's default (ramp; Hann for the PaDIS preset).
        frequency_scaling: filter cut-off as a fraction of Nyquist, ``(0, 1]``; ``None``: the geometry's default.
        operator: a ready :class:`ParallelBeamCT`.
        image_size: ``(H, W)`` (or an int) of the reconstruction when no operator or meta gives it.
        preset, angles, geometry: as :class:`ParallelBeamProject`.
        clip: optional ``(min, max)`` applied to the reconstruction (PaDIS clamps its FBP to ``[0, 1]``).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        filter: str | None = None,
        frequency_scaling: float | None = None,
        operator: ParallelBeamCT | None = None,
        image_size: int | Sequence[int] | None = None,
        preset: str | None = None,
        angles: torch.Tensor | Sequence[float] | int | None = None,
        clip: tuple[float, float] | None = None,
        **geometry: Any,
    ) -> None:
        if filter is not None:
            check_choice(filter, "filter", FBP_FILTERS)
        self.filter = filter
        self.frequency_scaling = frequency_scaling
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.source = None
        if operator is not None or preset is not None or angles is not None:
            self.source = _OperatorSource(operator, preset, angles, geometry)
        self.clip = clip
        # the operator last rebuilt from sinogram meta, with its geometry: its sampling grids are reused
        self._from_meta: tuple[str, ParallelBeamCT] | None = None

    def _operator(self, sinogram: Any) -> ParallelBeamCT:
        if self.source is not None and self.source.operator is not None:
            return self.source.operator
        if isinstance(sinogram, MetaTensor) and GEOMETRY_KEY in sinogram.meta:
            geometry = sinogram.meta[GEOMETRY_KEY]
            key = repr(sorted((k, v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in geometry.items()))
            if self._from_meta is None or self._from_meta[0] != key:
                self._from_meta = (key, ParallelBeamCT(**geometry))
            return self._from_meta[1]
        if self.source is None or self.image_size is None:
            raise ValueError(
                "FilteredBackProject needs the geometry: pass operator=, or a sinogram MetaTensor with "
                f"meta['{GEOMETRY_KEY}'], or image_size= with preset=/angles=."
            )
        return self.source(self.image_size)

    def __call__(self, sinogram: Any) -> Any:
        op = self._operator(sinogram)
        y = _channel_first(sinogram, "sinogram")
        op = op.to(device=y.device)
        with torch.no_grad():
            image = op.fbp(y.unsqueeze(0), filter=self.filter, frequency_scaling=self.frequency_scaling)[0]
        if self.clip is not None:
            image = image.clamp(*self.clip)
        out = restore_type(image, sinogram)
        if isinstance(out, MetaTensor):
            out.meta.pop(GEOMETRY_KEY, None)
        return out


class FilteredBackProjectd(MapTransform):
    """Dictionary-based wrapper of :class:`FilteredBackProject`.

    Args:
        keys: keys of the sinograms.
        output_key: where to write each reconstruction (one key, or one per key); ``None`` replaces the sinogram.
        filter, frequency_scaling, operator, image_size, preset, angles, clip, geometry: as
            :class:`FilteredBackProject`.
        allow_missing_keys: do not raise on missing keys.
    """

    backend = FilteredBackProject.backend

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str | Sequence[str] | None = None,
        filter: str | None = None,
        frequency_scaling: float | None = None,
        operator: ParallelBeamCT | None = None,
        image_size: int | Sequence[int] | None = None,
        preset: str | None = None,
        angles: torch.Tensor | Sequence[float] | int | None = None,
        clip: tuple[float, float] | None = None,
        allow_missing_keys: bool = False,
        **geometry: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reconstructor = FilteredBackProject(
            filter=filter,
            frequency_scaling=frequency_scaling,
            operator=operator,
            image_size=image_size,
            preset=preset,
            angles=angles,
            clip=clip,
            **geometry,
        )
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return apply_to_keys(self, data, self.reconstructor, self.output_keys)


ParallelBeamProjectD = ParallelBeamProjectDict = ParallelBeamProjectd
FilteredBackProjectD = FilteredBackProjectDict = FilteredBackProjectd
