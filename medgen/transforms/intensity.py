"""Intensity preparations of the methods, as MONAI transforms.

- WDM / cWDM (``bratsloader.py``): per volume ``clip(x, q_0.001, q_0.999)``, min-max to ``[0, 1]``, then ``2 x - 1``
  to ``[-1, 1]`` (WDM, ``--renormalize=True``) or kept in ``[0, 1]`` (cWDM). This is exactly MONAI's
  ``ScaleIntensityRangePercentiles(0.1, 99.9, b_min, b_max, clip=True)``: after clipping at the percentiles the
  minimum and maximum ARE the percentiles, so min-max and the percentile range map coincide. WDM pads the volume
  to 256^3 with zeros in ``[0, 1]`` BEFORE ``2 x - 1`` (padding ends at -1): pad after this transform with -1.
- TPDM: images in ``[0, 1]`` (min-max, i.e. percentiles 0 and 100, or a percentile window).
- HFS-SDE (``datasets.py``, ``normalize_type="std"``): ``k / (1.5 * std(k))`` with ``std`` over the complex
  multi-coil k-space of the (cropped) slice, ``np.std`` convention (population, ``|k - mean|^2``).

One difference from the official loaders: a constant volume (upper percentile == lower) gives ``b_min`` (MONAI's
behaviour, with a warning) where the official code divides 0 by 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.transforms import MapTransform, ScaleIntensityRangePercentiles, ScaleIntensityRangePercentilesd, Transform
from monai.utils import TransformBackends

from medgen.checks import check_finite, check_number
from medgen.transforms.utils import as_plain_tensor, restore_type

__all__ = [
    "WDMScaleIntensity",
    "WDMScaleIntensityd",
    "WDMScaleIntensityD",
    "WDMScaleIntensityDict",
    "TPDMScaleIntensity",
    "TPDMScaleIntensityd",
    "TPDMScaleIntensityD",
    "TPDMScaleIntensityDict",
    "kspace_std",
    "KspaceStdNormalize",
    "KspaceStdNormalized",
    "KspaceStdNormalizeD",
    "KspaceStdNormalizeDict",
]


def _check_percentiles(lower: Any, upper: Any) -> None:
    """Raise a ``ValueError`` naming ``lower``/``upper`` unless ``0 <= lower < upper <= 100``."""
    check_number(lower, "lower", 0.0, 100.0)
    check_number(upper, "upper", 0.0, 100.0)
    if not lower < upper:
        raise ValueError(f"lower must be below upper (percentiles in [0, 100]), got lower={lower}, upper={upper}.")


class WDMScaleIntensity(ScaleIntensityRangePercentiles):
    """WDM/cWDM intensity preparation: clip at the 0.1 / 99.9 percentiles and map that range to ``[-1, 1]``.

    A :py:class:`monai.transforms.ScaleIntensityRangePercentiles` with WDM's arguments (see the module docstring).

    Args:
        lower: lower percentile, in [0, 100] (WDM: 0.1, i.e. ``np.quantile(x, 0.001)``).
        upper: upper percentile (WDM: 99.9).
        renormalize: map to ``[-1, 1]`` (WDM); ``False`` keeps ``[0, 1]`` (cWDM).
        channel_wise: percentiles per channel (each modality of a cWDM stack separately).
        dtype: output dtype.
    """

    def __init__(
        self,
        lower: float = 0.1,
        upper: float = 99.9,
        renormalize: bool = True,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
    ) -> None:
        _check_percentiles(lower, upper)
        super().__init__(
            lower,
            upper,
            b_min=-1.0 if renormalize else 0.0,
            b_max=1.0,
            clip=True,
            channel_wise=channel_wise,
            dtype=dtype,
        )


class WDMScaleIntensityd(ScaleIntensityRangePercentilesd):
    """Dictionary-based wrapper of :py:class:`WDMScaleIntensity` (a ``ScaleIntensityRangePercentilesd`` whose
    ``scaler`` is that transform).

    Args:
        keys: keys of the volumes.
        lower, upper, renormalize, channel_wise, dtype: see :py:class:`WDMScaleIntensity`.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.1,
        upper: float = 99.9,
        renormalize: bool = True,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.scaler = WDMScaleIntensity(lower, upper, renormalize, channel_wise, dtype)


class TPDMScaleIntensity(ScaleIntensityRangePercentiles):
    """TPDM's ``[0, 1]`` images: min-max by default (percentiles 0 and 100), or a clipped percentile window.

    Args:
        lower: lower percentile (0 = minimum).
        upper: upper percentile (100 = maximum).
        channel_wise: percentiles per channel.
        dtype: output dtype.
    """

    def __init__(
        self, lower: float = 0.0, upper: float = 100.0, channel_wise: bool = True, dtype: DtypeLike = np.float32
    ) -> None:
        _check_percentiles(lower, upper)
        super().__init__(lower, upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=channel_wise, dtype=dtype)


class TPDMScaleIntensityd(ScaleIntensityRangePercentilesd):
    """Dictionary-based wrapper of :py:class:`TPDMScaleIntensity` (a ``ScaleIntensityRangePercentilesd`` whose
    ``scaler`` is that transform).

    Args:
        keys: keys of the volumes.
        lower, upper, channel_wise, dtype: see :py:class:`TPDMScaleIntensity`.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.0,
        upper: float = 100.0,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.scaler = TPDMScaleIntensity(lower, upper, channel_wise, dtype)


def kspace_std(kspace: torch.Tensor) -> torch.Tensor:
    """Population standard deviation of all entries, ``sqrt(mean(|k - mean(k)|^2))`` (``np.std`` of complex data).

    Args:
        kspace: tensor of any shape, complex or real (e.g. a ``(Nc, H, W)`` multi-coil slice).

    Returns:
        0-d real tensor, computed in double precision and cast to the real dtype of ``kspace``.
    """
    wide = kspace.to(torch.complex128 if kspace.is_complex() else torch.float64)
    std = torch.sqrt(torch.mean(torch.abs(wide - wide.mean()) ** 2))
    return std.to(kspace.real.dtype if kspace.is_complex() else kspace.dtype)


class KspaceStdNormalize(Transform):
    """HFS-SDE's k-space normalisation ``k / (coeff * std(k))`` (``data.normalize_type="std"``, coeff 1.5).

    The std is over every entry of the input (all coils of one slice; pass one slice at a time for per-slice
    normalisation as HFS-SDE). Images derived linearly from ``k`` (coil-combined label, zero-filled image) scale
    the same way; use :py:class:`KspaceStdNormalized` with ``ref_key`` to scale them with the k-space factor.

    Args:
        coeff: the divisor's multiplier (HFS-SDE ``data.normalize_coeff`` = 1.5).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, coeff: float = 1.5) -> None:
        if not coeff > 0:
            raise ValueError(f"coeff must be > 0, got {coeff!r}.")
        self.coeff = coeff

    def scale_of(self, kspace: Any) -> torch.Tensor:
        """The divisor ``coeff * std(kspace)`` (0-d tensor)."""
        k = as_plain_tensor(kspace)
        if not k.is_floating_point() and not k.is_complex():
            raise TypeError(f"kspace must be a floating-point or complex array, got {k.dtype}.")
        check_finite(k, "kspace")
        scale = self.coeff * kspace_std(k)
        if not scale > 0:
            raise ValueError("kspace has zero standard deviation; it cannot be std-normalised.")
        return scale

    def __call__(self, img: Any, scale: torch.Tensor | float | None = None) -> Any:
        """
        Args:
            img: k-space (or an image to scale with a given ``scale``), any shape.
            scale: divisor to use instead of ``coeff * std(img)``.

        Returns:
            ``img / scale``, of the input's type and dtype.
        """
        x = as_plain_tensor(img)
        scale = self.scale_of(x) if scale is None else torch.as_tensor(scale, device=x.device)
        return restore_type(x / scale.to(device=x.device, dtype=x.real.dtype), img)


class KspaceStdNormalized(MapTransform):
    """Dictionary-based wrapper of :py:class:`KspaceStdNormalize`.

    Args:
        keys: keys to scale.
        ref_key: key of the k-space whose std sets the divisor for all ``keys``; ``None`` scales each key by its own.
        coeff: see :py:class:`KspaceStdNormalize`.
        factor_key: if given, the divisor (of ``ref_key``, or of the last key) is written there, to undo the scaling.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = KspaceStdNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        ref_key: Hashable | None = None,
        coeff: float = 1.5,
        factor_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.factor_key = factor_key
        self.normalize = KspaceStdNormalize(coeff)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        scale = None if self.ref_key is None else self.normalize.scale_of(d[self.ref_key])
        last = scale
        for key in self.key_iterator(d):
            last = scale if scale is not None else self.normalize.scale_of(d[key])
            d[key] = self.normalize(d[key], last)
        if self.factor_key is not None and last is not None:
            d[self.factor_key] = last
        return d


WDMScaleIntensityD = WDMScaleIntensityDict = WDMScaleIntensityd
TPDMScaleIntensityD = TPDMScaleIntensityDict = TPDMScaleIntensityd
KspaceStdNormalizeD = KspaceStdNormalizeDict = KspaceStdNormalized
