"""Blur (2D convolution) and Downsample (block averaging) operators for deblurring and super-resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medgen.physics.base import LinearOperator
from medgen.checks import check_choice, check_finite, check_positive_int, check_tensor

__all__ = ["Blur", "Downsample", "gaussian_kernel", "uniform_kernel"]

_BOUNDARIES = ("zero", "circular")


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Isotropic Gaussian ``exp(-r^2 / (2 sigma^2))`` sampled on a ``size x size`` pixel grid centred on
    ``(size - 1) / 2``, normalised to sum 1.

    Args:
        size: kernel side in pixels, ``>= 1``.
        sigma: standard deviation in pixels, ``> 0``.
        dtype: floating dtype of the result.

    Returns:
        tensor of shape ``(size, size)``.
    """
    check_positive_int(size, "size")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).to(dtype)


def uniform_kernel(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Box kernel ``1 / size^2`` of shape ``(size, size)`` (PaDIS' ``deblur_uniform`` option uses size 31)."""
    check_positive_int(size, "size")
    return torch.full((size, size), 1.0 / size**2, dtype=dtype)


def _spatial_2d(x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Size]:
    check_tensor(x, name, min_ndim=2, layout="(..., H, W)", real_floating=True)
    return x.reshape(-1, 1, *x.shape[-2:]), x.shape


class Blur(LinearOperator):
    """Same-size 2D convolution ``y = k * x`` of every channel with one kernel.

    ``A x[i, j] = sum_{m, n} k[m, n] x[i - m + cy, j - n + cx]`` (a true convolution: the kernel is flipped relative to
    ``torch.nn.functional.conv2d``), with the kernel centre ``(cy, cx) = ((kh - 1) // 2, (kw - 1) // 2)``, so a
    symmetric kernel leaves a centred impulse centred. Boundary:

    * ``"zero"`` (default): the image is zero outside (linear convolution, cropped to the input size); the adjoint is
      the correlation with the same zero boundary. ``pseudo_inverse`` falls back to conjugate gradients.
    * ``"circular"``: periodic image (circulant operator); the adjoint is the circular correlation and
      ``pseudo_inverse`` is the closed-form Moore-Penrose inverse by FFT (frequencies where ``|K| <= rcond * max|K|``
      are set to zero).

    Shapes: ``(..., H, W) -> (..., H, W)``; every leading index (batch, channel, slice) is blurred independently.

    Args:
        kernel: 2D tensor ``(kh, kw)``, any sizes; stored as a buffer (moved by ``.to``, cast to the input's dtype).
        boundary: ``"zero"`` or ``"circular"``.
        rcond: relative threshold of the circular pseudo-inverse.
    """

    def __init__(self, kernel: torch.Tensor, boundary: str = "zero", rcond: float = 1e-6) -> None:
        super().__init__()
        if not isinstance(kernel, torch.Tensor) or kernel.ndim != 2 or kernel.is_complex():
            raise ValueError(f"kernel must be a real 2D tensor (kh, kw), got {kernel!r:.80}.")
        check_finite(kernel, "kernel")
        check_choice(boundary, "boundary", _BOUNDARIES)
        self.boundary = boundary
        self.rcond = float(rcond)
        kernel = kernel.detach().clone()
        self.register_buffer("kernel", kernel if kernel.is_floating_point() else kernel.float())

    @classmethod
    def gaussian(cls, size: int, sigma: float, boundary: str = "zero") -> Blur:
        """Blur with :func:`gaussian_kernel` ``(size, sigma)`` (pixels)."""
        return cls(gaussian_kernel(size, sigma), boundary=boundary)

    @classmethod
    def uniform(cls, size: int = 31, boundary: str = "zero") -> Blur:
        """Blur with :func:`uniform_kernel` ``(size)``; 31 is PaDIS' ``blursize`` option."""
        return cls(uniform_kernel(size), boundary=boundary)

    def extra_repr(self) -> str:
        return f"kernel_size={tuple(self.kernel.shape)}, boundary={self.boundary!r}"

    def _correlate(self, x: torch.Tensor, weight: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        mode = "constant" if self.boundary == "zero" else "circular"
        return F.conv2d(F.pad(x, pads, mode=mode), weight[None, None])

    def _pads(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` padding of the forward correlation with the flipped kernel: output ``i``
        reads ``x[i - m + c]``, so ``c`` samples are needed after and ``k - 1 - c`` before."""
        kh, kw = self.kernel.shape
        cy, cx = (kh - 1) // 2, (kw - 1) // 2
        return kw - 1 - cx, cx, kh - 1 - cy, cy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur.

        Args:
            x: tensor ``(..., H, W)``, real floating point.

        Returns:
            tensor ``(..., H, W)``.
        """
        flat, shape = _spatial_2d(x, "x")
        weight = self.kernel.to(device=x.device, dtype=x.dtype).flip(0, 1)
        return self._correlate(flat, weight, self._pads()).reshape(shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Correlation with the kernel under the same boundary condition (exact ``A^T``).

        Args:
            y: tensor ``(..., H, W)``.

        Returns:
            tensor ``(..., H, W)``.
        """
        flat, shape = _spatial_2d(y, "y")
        weight = self.kernel.to(device=y.device, dtype=y.dtype)
        left, right, top, bottom = self._pads()
        return self._correlate(flat, weight, (right, left, bottom, top)).reshape(shape)

    def transfer_function(
        self, height: int, width: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """2D DFT of the kernel with its centre moved to the origin.

        Args:
            height: image height ``H``.
            width: image width ``W``.
            device: device of the result.
            dtype: real dtype the kernel is cast to before the FFT.

        Returns:
            complex tensor ``(H, W)``; for the circular boundary ``A x = ifft2(transfer_function * fft2(x))``.
        """
        kh, kw = self.kernel.shape
        if kh > height or kw > width:
            raise ValueError(f"kernel {tuple(self.kernel.shape)} is larger than the image ({height}, {width}).")
        kernel = self.kernel.to(device=device, dtype=dtype or self.kernel.dtype)
        padded = kernel.new_zeros(height, width)
        padded[:kh, :kw] = kernel
        padded = torch.roll(padded, shifts=(-((kh - 1) // 2), -((kw - 1) // 2)), dims=(0, 1))
        return torch.fft.fft2(padded)

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        """Moore-Penrose inverse: closed form by FFT for ``boundary="circular"``, else conjugate gradients.

        Args:
            y: tensor ``(..., H, W)``.
            max_iter: CG iterations (zero boundary only).
            tol: CG relative tolerance (zero boundary only).

        Returns:
            tensor ``(..., H, W)``.
        """
        if self.boundary != "circular":
            return super().pseudo_inverse(y, max_iter=max_iter, tol=tol)
        _spatial_2d(y, "y")
        transfer = self.transfer_function(*y.shape[-2:], device=y.device, dtype=y.dtype)
        magnitude = transfer.abs()
        keep = magnitude > self.rcond * magnitude.max()
        safe = torch.where(keep, transfer, torch.ones_like(transfer))
        inverse = torch.where(keep, 1 / safe, torch.zeros_like(transfer))
        return torch.fft.ifft2(torch.fft.fft2(y) * inverse).real


class Downsample(LinearOperator):
    """Average pooling by an integer ``factor`` over the last ``spatial_dims`` axes (super-resolution measurement).

    * ``forward``: ``(..., H, W) -> (..., H / f, W / f)`` block means (sizes must be divisible by ``factor``).
    * ``adjoint``: nearest-neighbour upsampling divided by ``factor ** spatial_dims``.
    * ``pseudo_inverse``: nearest-neighbour upsampling (closed-form Moore-Penrose inverse; ``A A^+ = I``).

    Args:
        factor: integer downsampling factor, ``>= 1``.
        spatial_dims: number of trailing axes pooled, 2 or 3.
    """

    def __init__(self, factor: int, spatial_dims: int = 2) -> None:
        super().__init__()
        check_positive_int(factor, "factor")
        check_choice(spatial_dims, "spatial_dims", (2, 3))
        self.factor = factor
        self.spatial_dims = spatial_dims

    def extra_repr(self) -> str:
        return f"factor={self.factor}, spatial_dims={self.spatial_dims}"

    def _check(self, t: torch.Tensor, name: str, divisible: bool) -> None:
        check_tensor(t, name, min_ndim=self.spatial_dims)
        if divisible and any(s % self.factor for s in t.shape[-self.spatial_dims :]):
            raise ValueError(
                f"{name} spatial shape {tuple(t.shape[-self.spatial_dims:])} must be divisible by factor {self.factor}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block means.

        Args:
            x: tensor ``(..., *spatial)``, spatial sizes divisible by ``factor``.

        Returns:
            tensor ``(..., *spatial / factor)``.
        """
        self._check(x, "x", divisible=True)
        out = x
        for axis in range(x.ndim - self.spatial_dims, x.ndim):
            out = out.unflatten(axis, (out.shape[axis] // self.factor, self.factor)).mean(axis + 1)
        return out

    def _upsample(self, y: torch.Tensor) -> torch.Tensor:
        out = y
        for axis in range(y.ndim - self.spatial_dims, y.ndim):
            out = out.repeat_interleave(self.factor, dim=axis)
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Nearest upsampling divided by ``factor ** spatial_dims`` (exact ``A^T``)."""
        self._check(y, "y", divisible=False)
        return self._upsample(y) / self.factor**self.spatial_dims

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        """Nearest upsampling, the exact Moore-Penrose inverse (``max_iter``/``tol`` unused: closed form)."""
        self._check(y, "y", divisible=False)
        return self._upsample(y)

