"""A multilevel orthonormal wavelet transform over 1, 2 or 3 trailing axes, as a linear operator (analysis/synthesis).

:class:`OrthonormalWavelet` is the separable periodised discrete wavelet transform of any orthogonal PyWavelets
wavelet (``haar``, ``dbN``, ``symN``, ``coifN``), arranged in place (Mallat layout): the coefficients have the shape
of the image, the approximation of the coarsest level sits in the low-index corner and the details around it, as
``pywt.coeffs_to_array(pywt.wavedecn(x, wavelet, mode="periodization", level=levels, axes=...))`` arranges them
(and with the same numbers). With periodic extension the transform is orthonormal for every even length, so the
synthesis is its adjoint and its inverse, and soft thresholding its coefficients is the exact proximal map of the
L1 norm of the coefficients.

(:mod:`medgen.transforms.wavelet` holds WDM's single-level 3D transforms with their subband-channel layout; this one
is multilevel, in place and dimension-generic, for sparsity priors.)
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from medgen.physics.base import LinearOperator
from medgen.checks import check_choice, check_tensor

__all__ = ["OrthonormalWavelet", "max_wavelet_levels"]

_SPATIAL_DIMS = (1, 2, 3)


@lru_cache(maxsize=32)
def _filters(wavelet: str) -> tuple[np.ndarray, int]:
    """``conv1d`` analysis weights ``(2, 1, L)`` (low, high; reversed decomposition filters) and the filter length."""
    import pywt

    if not isinstance(wavelet, str) or wavelet not in pywt.wavelist(kind="discrete"):
        raise ValueError(f"wavelet must be a discrete PyWavelets wavelet name, got {wavelet!r}.")
    wav = pywt.Wavelet(wavelet)
    if not wav.orthogonal:
        raise ValueError(f"wavelet must be orthogonal (haar, dbN, symN, coifN), got the biorthogonal {wavelet!r}.")
    weights = np.stack([np.asarray(wav.dec_lo)[::-1], np.asarray(wav.dec_hi)[::-1]])[:, None, :]
    return np.ascontiguousarray(weights), wav.dec_len


def max_wavelet_levels(shape: tuple[int, ...], wavelet: str) -> int:
    """The default number of levels for ``shape`` (the transformed axes): PyWavelets' ``dwt_max_level`` per axis
    (``floor(log2(n / (L - 1)))`` for a filter of length ``L``), limited so that every length stays divisible by
    ``2^levels``; the minimum over the axes."""
    _, length = _filters(wavelet)
    levels = []
    for n in shape:
        by_filter = int(math.floor(math.log2(n / (length - 1)))) if n >= length - 1 else 0
        divisible = (n & -n).bit_length() - 1  # exponent of the largest power of two dividing n
        levels.append(max(0, min(by_filter, divisible)))
    return min(levels)


@lru_cache(maxsize=64)
def _periodic_index(n: int, count: int, offset: int, device: torch.device) -> torch.Tensor:
    """``(arange(count) + offset) mod n``: the samples of a periodic extension a filter reads."""
    return torch.remainder(torch.arange(count, device=device) + offset, n)


def _analysis_axis(x: torch.Tensor, axis: int, weight: torch.Tensor) -> torch.Tensor:
    """One periodised level along ``axis``: ``[low half, high half]`` in place of the ``n`` samples."""
    moved = x.movedim(axis, -1)
    n, length = moved.shape[-1], weight.shape[-1]
    left = length // 2 - 1  # PyWavelets' periodization alignment
    index = _periodic_index(n, n + length - 2, -left, x.device)
    out = F.conv1d(moved.reshape(-1, 1, n)[..., index], weight, stride=2)  # (M, 2, n / 2)
    return out.reshape(*moved.shape[:-1], n).movedim(-1, axis)


def _synthesis_axis(c: torch.Tensor, axis: int, weight: torch.Tensor) -> torch.Tensor:
    """The adjoint (= inverse) of :func:`_analysis_axis`, by gathers only (no scatter-add)."""
    moved = c.movedim(axis, -1)
    n, length = moved.shape[-1], weight.shape[-1]
    left = length // 2 - 1
    bands = moved.reshape(-1, 2, n // 2)
    upsampled = torch.zeros(bands.shape[0], 2, n, dtype=c.dtype, device=c.device)
    upsampled[..., 0::2] = bands
    index = _periodic_index(n, n + length - 1, left - (length - 1), c.device)
    out = F.conv1d(upsampled[..., index], weight.flip(-1).transpose(0, 1))  # (M, 1, n)
    return out.reshape(*moved.shape[:-1], n).movedim(-1, axis)


def _set_corner(x: torch.Tensor, block: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``x`` with its low-index corner along ``axes`` replaced by ``block`` (out of place)."""
    if not axes:
        return block
    axis, size = axes[0], block.shape[axes[0]]
    inner = _set_corner(x.narrow(axis, 0, size), block, axes[1:])
    return x.slice_scatter(inner, dim=axis, start=0, end=size)


class OrthonormalWavelet(LinearOperator):
    """Multilevel orthonormal DWT over the last ``spatial_dims`` axes, coefficients in place (see the module docstring).

    * ``forward`` (analysis ``W``): ``(B, ..., *spatial) -> (B, ..., *spatial)`` coefficients.
    * ``adjoint`` (synthesis ``W^H``) equals the inverse; ``pseudo_inverse`` is the same.
    * :meth:`detail_mask`: ``True`` at detail coefficients, ``False`` at the coarsest approximation.

    Real and complex tensors (the real and imaginary parts are transformed alike), any device and floating dtype.

    Args:
        wavelet: an orthogonal PyWavelets wavelet name (``"haar"``, ``"db4"``, ``"sym4"``, ...).
        levels: number of levels; ``None``: :func:`max_wavelet_levels` of the input's spatial shape, at least 1.
            Every transformed length must be divisible by ``2^levels``.
        spatial_dims: number of trailing axes transformed (1, 2 or 3).

    Raises:
        ValueError: an unknown or non-orthogonal wavelet, ``levels < 1`` or bad ``spatial_dims``.
    """

    def __init__(self, wavelet: str = "haar", levels: int | None = None, spatial_dims: int = 2) -> None:
        super().__init__()
        _filters(wavelet)
        check_choice(spatial_dims, "spatial_dims", _SPATIAL_DIMS)
        if levels is not None and (not isinstance(levels, int) or isinstance(levels, bool) or levels < 1):
            raise ValueError(f"levels must be None or a positive integer, got {levels!r}.")
        self.wavelet = wavelet
        self.levels = levels
        self.spatial_dims = spatial_dims

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}, levels={self.levels}, spatial_dims={self.spatial_dims}"

    def levels_for(self, shape: tuple[int, ...]) -> int:
        """The number of levels used for an input whose trailing (spatial) shape is ``shape``.

        Raises:
            ValueError: when a length is not divisible by ``2^levels`` (or, with ``levels=None``, not even).
        """
        spatial = tuple(shape[-self.spatial_dims :])
        levels = self.levels if self.levels is not None else max(1, max_wavelet_levels(spatial, self.wavelet))
        if levels < 1 or any(n % 2**levels for n in spatial):
            raise ValueError(
                f"the spatial shape {spatial} must be divisible by 2^levels = {2 ** max(levels, 1)} for the "
                f"{self.wavelet!r} wavelet with levels={self.levels}; pad the image or choose fewer levels."
            )
        return levels

    def detail_mask(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> torch.Tensor:
        """Bool tensor of the spatial shape: ``False`` on the coarsest approximation corner, ``True`` elsewhere."""
        spatial = tuple(shape[-self.spatial_dims :])
        levels = self.levels_for(spatial)
        mask = torch.ones(spatial, dtype=torch.bool, device=device)
        mask[tuple(slice(0, n >> levels) for n in spatial)] = False
        return mask

    def _check(self, x: torch.Tensor, name: str) -> tuple[int, tuple[int, ...]]:
        check_tensor(x, name, min_ndim=self.spatial_dims)
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"{name} must be a floating-point or complex tensor, got {x.dtype}.")
        return self.levels_for(x.shape), tuple(range(x.ndim - self.spatial_dims, x.ndim))

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        weights, _ = _filters(self.wavelet)
        return torch.as_tensor(weights, dtype=x.real.dtype if x.is_complex() else x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis ``W x``.

        Args:
            x: ``(..., *spatial)``, real or complex.

        Returns:
            coefficients of the same shape and dtype.
        """
        levels, axes = self._check(x, "x")
        if x.is_complex():  # real and imaginary parts as one real batch
            parts = self.forward(torch.stack([x.real, x.imag]))
            return torch.complex(parts[0], parts[1])
        weight = self._weight(x)
        out = x
        for level in range(levels):
            block = out
            for axis in axes:
                block = block.narrow(axis, 0, x.shape[axis] >> level)
            for axis in axes:
                block = _analysis_axis(block, axis, weight)
            out = _set_corner(out, block, axes)
        return out

    def adjoint(self, c: torch.Tensor) -> torch.Tensor:
        """Synthesis ``W^H c`` (the inverse of :meth:`forward`).

        Args:
            c: coefficients ``(..., *spatial)``, real or complex.

        Returns:
            the image, same shape and dtype.
        """
        levels, axes = self._check(c, "c")
        if c.is_complex():
            parts = self.adjoint(torch.stack([c.real, c.imag]))
            return torch.complex(parts[0], parts[1])
        weight = self._weight(c)
        out = c
        for level in reversed(range(levels)):
            block = out
            for axis in axes:
                block = block.narrow(axis, 0, c.shape[axis] >> level)
            for axis in reversed(axes):
                block = _synthesis_axis(block, axis, weight)
            out = _set_corner(out, block, axes)
        return out

    def pseudo_inverse(self, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The inverse, equal to :meth:`adjoint` (orthonormal)."""
        return self.adjoint(c)
