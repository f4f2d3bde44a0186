"""Invertible intensity normalisations: the methods' scaling on the way in, undone on the way out.

Every transform here is a MONAI :class:`~monai.transforms.InvertibleTransform`: the parameters it used (the window
of each channel, the k-space divisor of each slice) are recorded in the output MetaTensor's ``applied_operations``,
so ``transform.inverse(output)``, ``Compose.inverse`` and :class:`monai.transforms.Invertd` map a network's output
(whose meta carries the record, e.g. copied by ``Invertd`` from the input key) back to the input's units.

- :class:`InvertibleScaleIntensityRange`: a fixed window ``[a_min, a_max] -> [b_min, b_max]``; CT in Hounsfield units
  (:class:`HUWindowNormalize`: PaDIS/TPDM-CT scale a HU window to ``[0, 1]``).
- :class:`InvertibleScaleIntensityRangePercentiles`: the window is the volume's (per channel) percentiles, as MONAI's
  ``ScaleIntensityRangePercentiles`` (identical output); :class:`TPDMNormalize` (min-max to ``[0, 1]``) and
  :class:`WDMNormalize` (0.1/99.9 percentiles to ``[-1, 1]``, or ``[0, 1]`` for cWDM) are the methods' settings,
  the invertible twins of :class:`~medgen.transforms.intensity.TPDMScaleIntensity` and
  :class:`~medgen.transforms.intensity.WDMScaleIntensity`.
- :class:`InvertibleKspaceStdNormalize`: HFS-SDE's ``k / (1.5 std(k))`` per slice; the inverse multiplies an image
  reconstructed from the normalised k-space by the same per-slice divisor.

With ``clip=True`` values outside the window are clipped on the way in and come back as the window's edges: only
values inside the window round-trip exactly. The inverse returns floating-point data (float32 for float32 input), not
the input's integer dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type, convert_to_tensor

from medgen.transforms.intensity import kspace_std
from medgen.transforms.utils import apply_to_keys

__all__ = [
    "InvertibleScaleIntensityRange",
    "InvertibleScaleIntensityRanged",
    "InvertibleScaleIntensityRangeD",
    "InvertibleScaleIntensityRangeDict",
    "InvertibleScaleIntensityRangePercentiles",
    "InvertibleScaleIntensityRangePercentilesd",
    "InvertibleScaleIntensityRangePercentilesD",
    "InvertibleScaleIntensityRangePercentilesDict",
    "HUWindowNormalize",
    "HUWindowNormalized",
    "HUWindowNormalizeD",
    "HUWindowNormalizeDict",
    "TPDMNormalize",
    "TPDMNormalized",
    "TPDMNormalizeD",
    "TPDMNormalizeDict",
    "WDMNormalize",
    "WDMNormalized",
    "WDMNormalizeD",
    "WDMNormalizeDict",
    "InvertibleKspaceStdNormalize",
    "InvertibleKspaceStdNormalized",
    "InvertibleKspaceStdNormalizeD",
    "InvertibleKspaceStdNormalizeDict",
]


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _floating(img: Any) -> torch.Tensor:
    """``img`` as a real floating tensor (MetaTensor kept when meta is tracked), integers promoted to float32."""
    x = convert_to_tensor(img, track_meta=get_track_meta())
    if x.is_complex():
        raise TypeError(f"img must be real-valued for an intensity window, got {x.dtype}.")
    return x if x.is_floating_point() else x.float()


class _LinearIntensityMap(InvertibleTransform):
    """Per-channel affine intensity map ``y = (x - a_min) * scale + b_min`` with the window recorded for the inverse.

    ``scale = (b_max - b_min) / (a_max - a_min)``, or ``1`` where ``a_max == a_min`` (MONAI's behaviour: the constant
    channel is shifted to ``b_min``, with a warning). Subclasses choose the window (:meth:`window`).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, b_min: float, b_max: float, clip: bool, channel_wise: bool, dtype: DtypeLike) -> None:
        self.b_min = _check_number(b_min, "b_min")
        self.b_max = _check_number(b_max, "b_max")
        if self.b_max == self.b_min:
            raise ValueError(f"b_max must differ from b_min, got b_min = b_max = {self.b_min}.")
        self.clip = bool(clip)
        self.channel_wise = bool(channel_wise)
        self.dtype = dtype

    def window(self, img: torch.Tensor) -> tuple[float, float]:
        """The input window ``(a_min, a_max)`` of one channel (or of the whole volume)."""
        raise NotImplementedError

    def _windows(self, x: torch.Tensor) -> list[tuple[float, float]]:
        if x.ndim < 1 or x.numel() == 0:
            raise ValueError(f"img must be a non-empty channel-first array, got shape {tuple(x.shape)}.")
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        if self.channel_wise:
            return [self.window(channel) for channel in plain]
        return [self.window(plain)] * plain.shape[0]

    def _map(self, x: torch.Tensor, windows: Sequence[tuple[float, float]], inverse: bool) -> torch.Tensor:
        if x.shape[0] != len(windows):
            raise ValueError(
                f"the recorded normalisation has {len(windows)} channel(s); the data to invert has shape "
                f"{tuple(x.shape)} (channels first)."
            )
        a_min = torch.tensor([w[0] for w in windows], dtype=torch.float64)
        a_max = torch.tensor([w[1] for w in windows], dtype=torch.float64)
        span = a_max - a_min
        scale = torch.where(span == 0, torch.ones_like(span), (self.b_max - self.b_min) / torch.where(span == 0, 1, span))
        view = (-1,) + (1,) * (x.ndim - 1)
        a_min, scale = a_min.to(x.device, x.dtype).view(view), scale.to(x.device, x.dtype).view(view)
        if inverse:
            return (x - self.b_min) / scale + a_min
        y = (x - a_min) * scale + self.b_min
        if self.clip:
            y = y.clamp(min(self.b_min, self.b_max), max(self.b_min, self.b_max))
        return y

    def __call__(self, img: Any) -> Any:
        """
        Args:
            img: channel-first ``(C, *spatial)`` array, tensor or MetaTensor (any real dtype, e.g. int16 scanner units).

        Returns:
            the normalised data in ``dtype`` (a MetaTensor with the window recorded when meta is tracked).
        """
        x = _floating(img)
        windows = self._windows(x)
        if any(hi == lo for lo, hi in windows):
            warnings.warn("Divide by zero (a_min == a_max): a constant channel is shifted to b_min.", stacklevel=2)
        out = self._map(x, windows, inverse=False)
        out = convert_to_dst_type(out, out, dtype=self.dtype or out.dtype)[0]
        info = {"windows": [[float(lo), float(hi)] for lo, hi in windows], "b_min": self.b_min, "b_max": self.b_max}
        return self.push_transform(out, extra_info=info)

    def inverse(self, data: Any) -> Any:
        """Map normalised data (carrying this transform's record) back to the input's units.

        Args:
            data: a MetaTensor whose most recent applied operation is this transform, channel-first with the number
                of channels that was normalised.

        Returns:
            ``(x - b_min) / scale + a_min`` per channel, floating point.
        """
        transform = self.pop_transform(data)
        info = transform[TraceKeys.EXTRA_INFO]
        x = _floating(data)
        with self.trace_transform(False):
            return self._map(x, [tuple(w) for w in info["windows"]], inverse=True)


class InvertibleScaleIntensityRange(_LinearIntensityMap):
    """Map a fixed window ``[a_min, a_max]`` linearly to ``[b_min, b_max]``, invertibly.

    The output of :class:`monai.transforms.ScaleIntensityRange` (same arguments), plus the record for the inverse.

    Args:
        a_min: input value mapped to ``b_min`` (e.g. HU).
        a_max: input value mapped to ``b_max``.
        b_min: output of ``a_min``.
        b_max: output of ``a_max``.
        clip: clip the output to ``[b_min, b_max]`` (values outside the window do not come back).
        dtype: output dtype (``None``: the floating input dtype).

    Raises:
        ValueError: a bound is not a finite number, ``a_max == a_min`` or ``b_max == b_min``.
    """

    def __init__(
        self,
        a_min: float,
        a_max: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        dtype: DtypeLike = np.float32,
    ) -> None:
        super().__init__(b_min, b_max, clip, channel_wise=False, dtype=dtype)
        self.a_min = _check_number(a_min, "a_min")
        self.a_max = _check_number(a_max, "a_max")
        if self.a_max == self.a_min:
            raise ValueError(f"a_max must differ from a_min, got a_min = a_max = {self.a_min}.")

    def window(self, img: torch.Tensor) -> tuple[float, float]:
        return self.a_min, self.a_max

    def inverse_scale(self, img: Any) -> Any:
        """Map data in the output range back to the input units with this transform's fixed window, no record needed.

        For results that were never normalised by this transform, e.g. a CT reconstruction from a sinogram, which
        comes out in the network's range and goes to HU with the window the network was trained with.

        Args:
            img: channel-first data (any number of channels), array, tensor or MetaTensor (meta kept).

        Returns:
            ``(img - b_min) * (a_max - a_min) / (b_max - b_min) + a_min``, floating point.
        """
        x = _floating(img)
        with self.trace_transform(False):
            return self._map(x, [(self.a_min, self.a_max)] * x.shape[0], inverse=True)


class HUWindowNormalize(InvertibleScaleIntensityRange):
    """A CT window in Hounsfield units mapped to the network's range (PaDIS, TPDM-CT: ``[0, 1]``), invertibly.

    Args:
        hu_min: HU mapped to ``b_min`` (default -1000, air).
        hu_max: HU mapped to ``b_max`` (default 1000).
        b_min: network value of ``hu_min``.
        b_max: network value of ``hu_max``.
        clip: clip to ``[b_min, b_max]`` (PaDIS clips; TPDM's AAPM data are not clipped, the default).
        dtype: output dtype.
    """

    def __init__(
        self,
        hu_min: float = -1000.0,
        hu_max: float = 1000.0,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        dtype: DtypeLike = np.float32,
    ) -> None:
        super().__init__(hu_min, hu_max, b_min, b_max, clip, dtype)


class InvertibleScaleIntensityRangePercentiles(_LinearIntensityMap):
    """Map the ``[lower, upper]`` percentile window of each volume (channel) to ``[b_min, b_max]``, invertibly.

    The output equals :class:`monai.transforms.ScaleIntensityRangePercentiles` (``relative=False``) with the same
    arguments; the percentiles found are recorded so the inverse restores the input's units.

    Args:
        lower: lower percentile in ``[0, 100]`` (``0``: the minimum).
        upper: upper percentile in ``[0, 100]``, ``> lower`` (``100``: the maximum).
        b_min: output of the lower percentile.
        b_max: output of the upper percentile.
        clip: clip the output to ``[b_min, b_max]``.
        channel_wise: one window per channel (each contrast of a multi-contrast stack separately).
        dtype: output dtype.

    Raises:
        ValueError: percentiles out of range or not increasing.
    """

    def __init__(
        self,
        lower: float,
        upper: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
    ) -> None:
        super().__init__(b_min, b_max, clip, channel_wise, dtype)
        self.lower = _check_number(lower, "lower")
        self.upper = _check_number(upper, "upper")
        if not 0.0 <= self.lower < self.upper <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")

    def window(self, img: torch.Tensor) -> tuple[float, float]:
        return float(percentile(img, self.lower)), float(percentile(img, self.upper))


class TPDMNormalize(InvertibleScaleIntensityRangePercentiles):
    """TPDM's ``[0, 1]`` images (min-max, or a clipped percentile window), invertibly.

    Same output as :class:`~medgen.transforms.intensity.TPDMScaleIntensity`.

    Args:
        lower: lower percentile (0 = minimum).
        upper: upper percentile (100 = maximum).
        channel_wise: percentiles per channel.
        dtype: output dtype.
    """

    def __init__(
        self, lower: float = 0.0, upper: float = 100.0, channel_wise: bool = True, dtype: DtypeLike = np.float32
    ) -> None:
        super().__init__(lower, upper, 0.0, 1.0, clip=True, channel_wise=channel_wise, dtype=dtype)


class WDMNormalize(InvertibleScaleIntensityRangePercentiles):
    """WDM/cWDM's preparation (clip at the 0.1/99.9 percentiles, map to ``[-1, 1]`` or ``[0, 1]``), invertibly.

    Same output as :class:`~medgen.transforms.intensity.WDMScaleIntensity`. The 0.1 % of voxels beyond each
    percentile come back as the percentile.

    Args:
        lower: lower percentile (WDM: 0.1).
        upper: upper percentile (WDM: 99.9).
        renormalize: ``[-1, 1]`` (WDM); ``False`` keeps ``[0, 1]`` (cWDM).
        channel_wise: percentiles per channel.
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
        super().__init__(lower, upper, -1.0 if renormalize else 0.0, 1.0, True, channel_wise, dtype)


class InvertibleKspaceStdNormalize(InvertibleTransform):
    """HFS-SDE's ``k / (coeff * std(k))`` with one divisor per slice, recorded for the inverse.

    The std is :func:`~medgen.transforms.intensity.kspace_std` over every entry of a slice (all coils), as HFS-SDE
    normalises each slice. The inverse multiplies by the same per-slice divisors, so it applies to anything linear in
    the normalised k-space: the k-space itself, or the image a reconstruction returns (``(S, 1, H, W)``).

    Args:
        coeff: the divisor's multiplier (HFS-SDE: 1.5).
        slice_dim: axis of the slices (``0`` for fastMRI's ``(S, Nc, H, W)``); ``None``: one divisor for all data.

    Raises:
        ValueError: ``coeff <= 0``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, coeff: float = 1.5, slice_dim: int | None = 0) -> None:
        if not _check_number(coeff, "coeff") > 0:
            raise ValueError(f"coeff must be > 0, got {coeff!r}.")
        if slice_dim is not None and (isinstance(slice_dim, bool) or not isinstance(slice_dim, int)):
            raise TypeError(f"slice_dim must be an int or None, got {slice_dim!r}.")
        self.coeff = float(coeff)
        self.slice_dim = slice_dim

    def _view(self, divisors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.slice_dim is None:
            return divisors.reshape(())
        dim = self.slice_dim % x.ndim
        if x.shape[dim] != divisors.numel():
            raise ValueError(
                f"the recorded normalisation has {divisors.numel()} slice(s) along dim {self.slice_dim}; the data has "
                f"shape {tuple(x.shape)}."
            )
        return divisors.reshape([-1 if i == dim else 1 for i in range(x.ndim)])

    def __call__(self, kspace: Any) -> Any:
        """
        Args:
            kspace: complex k-space, e.g. ``(S, Nc, H, W)``.

        Returns:
            the normalised k-space (input dtype), a MetaTensor with the divisors recorded when meta is tracked.

        Raises:
            TypeError: ``kspace`` is not floating point or complex.
            ValueError: a slice has zero standard deviation.
        """
        x = convert_to_tensor(kspace, track_meta=get_track_meta())
        if not x.is_complex() and not x.is_floating_point():
            raise TypeError(f"kspace must be complex or floating point, got {x.dtype}.")
        if self.slice_dim is not None and not -x.ndim <= self.slice_dim < x.ndim:
            raise ValueError(f"slice_dim {self.slice_dim} is out of range for kspace of shape {tuple(x.shape)}.")
        plain = x.as_tensor() if isinstance(x, MetaTensor) else x
        parts = [plain] if self.slice_dim is None else list(plain.unbind(self.slice_dim))
        divisors = torch.stack([self.coeff * kspace_std(part) for part in parts])
        if not bool((divisors > 0).all()):
            raise ValueError("kspace has a slice with zero standard deviation; it cannot be std-normalised.")
        out = x / self._view(divisors, x).to(x.real.dtype)
        return self.push_transform(out, extra_info={"divisors": divisors.double().tolist()})

    def inverse(self, data: Any) -> Any:
        """Multiply ``data`` (k-space or an image, slices along ``slice_dim``) by the recorded divisors."""
        transform = self.pop_transform(data)
        divisors = torch.tensor(transform[TraceKeys.EXTRA_INFO]["divisors"], dtype=torch.float64)
        x = convert_to_tensor(data, track_meta=get_track_meta())
        real_dtype = x.real.dtype if x.is_complex() or x.is_floating_point() else torch.float32
        with self.trace_transform(False):
            return x * self._view(divisors, x).to(x.device, real_dtype)


class _NormalizeMapd(MapTransform, InvertibleTransform):
    """The dictionary loop (and its inverse) shared by the dictionary versions of this module."""

    normalizer: _LinearIntensityMap | InvertibleKspaceStdNormalize

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return apply_to_keys(self, data, self.normalizer)

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        return apply_to_keys(self, data, self.normalizer.inverse)


class InvertibleScaleIntensityRanged(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`InvertibleScaleIntensityRange`.

    Args:
        keys: keys of the volumes.
        a_min, a_max, b_min, b_max, clip, dtype: see :py:class:`InvertibleScaleIntensityRange`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = InvertibleScaleIntensityRange.backend

    def __init__(
        self,
        keys: KeysCollection,
        a_min: float,
        a_max: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = InvertibleScaleIntensityRange(a_min, a_max, b_min, b_max, clip, dtype)


class HUWindowNormalized(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`HUWindowNormalize`.

    Args:
        keys: keys of the CT volumes (HU).
        hu_min, hu_max, b_min, b_max, clip, dtype: see :py:class:`HUWindowNormalize`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = HUWindowNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        hu_min: float = -1000.0,
        hu_max: float = 1000.0,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = HUWindowNormalize(hu_min, hu_max, b_min, b_max, clip, dtype)


class InvertibleScaleIntensityRangePercentilesd(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`InvertibleScaleIntensityRangePercentiles`.

    Args:
        keys: keys of the volumes.
        lower, upper, b_min, b_max, clip, channel_wise, dtype: see
            :py:class:`InvertibleScaleIntensityRangePercentiles`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = InvertibleScaleIntensityRangePercentiles.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float,
        upper: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = InvertibleScaleIntensityRangePercentiles(lower, upper, b_min, b_max, clip, channel_wise, dtype)


class TPDMNormalized(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`TPDMNormalize`.

    Args:
        keys: keys of the volumes.
        lower, upper, channel_wise, dtype: see :py:class:`TPDMNormalize`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = TPDMNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.0,
        upper: float = 100.0,
        channel_wise: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = TPDMNormalize(lower, upper, channel_wise, dtype)


class WDMNormalized(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`WDMNormalize`.

    Args:
        keys: keys of the volumes.
        lower, upper, renormalize, channel_wise, dtype: see :py:class:`WDMNormalize`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = WDMNormalize.backend

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
        super().__init__(keys, allow_missing_keys)
        self.normalizer = WDMNormalize(lower, upper, renormalize, channel_wise, dtype)


class InvertibleKspaceStdNormalized(_NormalizeMapd):
    """Dictionary-based wrapper of :py:class:`InvertibleKspaceStdNormalize` (each key by its own divisors).

    Args:
        keys: keys of k-space.
        coeff, slice_dim: see :py:class:`InvertibleKspaceStdNormalize`.
        allow_missing_keys: don't raise for missing keys.
    """

    backend = InvertibleKspaceStdNormalize.backend

    def __init__(
        self, keys: KeysCollection, coeff: float = 1.5, slice_dim: int | None = 0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = InvertibleKspaceStdNormalize(coeff, slice_dim)


InvertibleScaleIntensityRangeD = InvertibleScaleIntensityRangeDict = InvertibleScaleIntensityRanged
HUWindowNormalizeD = HUWindowNormalizeDict = HUWindowNormalized
InvertibleScaleIntensityRangePercentilesD = InvertibleScaleIntensityRangePercentilesDict = (
    InvertibleScaleIntensityRangePercentilesd
)
TPDMNormalizeD = TPDMNormalizeDict = TPDMNormalized
WDMNormalizeD = WDMNormalizeDict = WDMNormalized
InvertibleKspaceStdNormalizeD = InvertibleKspaceStdNormalizeDict = InvertibleKspaceStdNormalized
