"""Cartesian MRI: centred 2-D Fourier transforms and the (multi-coil) undersampled Fourier operator."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["fft2c", "ifft2c", "fft2_tpdm", "ifft2_tpdm"]


def fft2c(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal 2-D FFT: ``fftshift(fft2(ifftshift(x), norm="ortho"))`` over ``dims``.

    This is HFS-SDE's ``fft2c_2d`` (and fastMRI's ``fft2c``): the image centre and the k-space centre (DC) are both at
    index ``n // 2`` of each transformed axis, and the transform is unitary (Parseval holds).

    Args:
        x: complex (or real, promoted to complex) image of any shape; the two axes ``dims`` are transformed.
        dims: the two spatial axes, default the last two ``(H, W)``.

    Returns:
        complex k-space with the shape of ``x``.
    """
    dims = tuple(dims)
    x = torch.fft.ifftshift(x, dim=dims)
    x = torch.fft.fftn(x, dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


def ifft2c(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT, the exact inverse (and adjoint) of :func:`fft2c`.

    Args:
        x: complex k-space of any shape with DC at index ``n // 2`` of the axes ``dims``.
        dims: the two spatial axes, default the last two ``(H, W)``.

    Returns:
        complex image with the shape of ``x``.
    """
    dims = tuple(dims)
    x = torch.fft.ifftshift(x, dim=dims)
    x = torch.fft.ifftn(x, dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


def fft2_tpdm(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """TPDM's (score_sde's) un-normalised k-space transform ``fftshift(fft2(x))`` (no ``ifftshift`` first, no 1/sqrt(n)).

    Args:
        x: image of any shape; the two axes ``dims`` are transformed.
        dims: the two spatial axes, default the last two.

    Returns:
        complex k-space with DC at index ``n // 2``, scaled by ``sqrt(H * W)`` relative to :func:`fft2c`.
    """
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)


def ifft2_tpdm(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """TPDM's inverse ``ifft2(ifftshift(x))`` (``1/(H W)`` normalisation), the exact inverse of :func:`fft2_tpdm`.

    Note that it is the inverse, not the adjoint: ``fft2_tpdm`` adjoint is ``H * W * ifft2_tpdm``.

    Args:
        x: complex k-space with DC at index ``n // 2`` of the axes ``dims``.
        dims: the two spatial axes, default the last two.

    Returns:
        complex image with the shape of ``x``.
    """
    dims = tuple(dims)
    return torch.fft.ifftn(torch.fft.ifftshift(x, dim=dims), dim=dims)
