"""Cartesian MRI: centred 2-D Fourier transforms and the (multi-coil) undersampled Fourier operator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from medgen.physics.base import LinearOperator
from medgen.checks import check_choice, check_tensor

__all__ = [
    "fft2c",
    "ifft2c",
    "fft2_tpdm",
    "ifft2_tpdm",
    "complex_to_channels",
    "channels_to_complex",
    "CartesianMRI",
    "check_multicoil_kspace",
]


def _centred(transform, x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """``fftshift(transform(ifftshift(x), norm="ortho"))`` over ``dims``: centre (index ``n // 2``) to centre."""
    dims = tuple(dims)
    return torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims)


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
    return _centred(torch.fft.fftn, x, dims)


def ifft2c(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT, the exact inverse (and adjoint) of :func:`fft2c`.

    Args:
        x: complex k-space of any shape with DC at index ``n // 2`` of the axes ``dims``.
        dims: the two spatial axes, default the last two ``(H, W)``.

    Returns:
        complex image with the shape of ``x``.
    """
    return _centred(torch.fft.ifftn, x, dims)


def fft2_tpdm(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """TPDM's un-normalised k-space transform ``fftshift(fft2(x))`` (no ``ifftshift`` first, no ``1/sqrt(n)``).

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


def complex_to_channels(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Complex tensor -> real tensor with the real parts stacked before the imaginary parts along ``dim``.

    ``(B, C, H, W)`` complex becomes ``(B, 2C, H, W)`` real ``[re_0..re_{C-1}, im_0..im_{C-1}]``: HFS-SDE's ``c2r``
    layout for images (``C = 1``: ``[real, imag]``) and for coil maps and k-space (``C = Nc``).

    Args:
        x: complex tensor.
        dim: the channel axis.

    Returns:
        real tensor with ``2 * x.shape[dim]`` entries along ``dim``.

    Raises:
        TypeError: if ``x`` is not complex.
    """
    if not x.is_complex():
        raise TypeError(f"x must be a complex tensor, got dtype {x.dtype}.")
    return torch.cat([x.real, x.imag], dim=dim)


def channels_to_complex(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`complex_to_channels` (HFS-SDE's ``r2c``): first half of ``dim`` is real, second half imaginary.

    Args:
        x: real tensor with an even size along ``dim``, e.g. ``(B, 2, H, W)`` image or ``(B, 2 Nc, H, W)`` coil maps.
        dim: the channel axis.

    Returns:
        complex tensor with ``x.shape[dim] // 2`` entries along ``dim``.

    Raises:
        TypeError: if ``x`` is complex or not floating point.
        ValueError: if the size of ``dim`` is odd.
    """
    check_tensor(x, "x", real_floating=True)
    if x.shape[dim] % 2:
        raise ValueError(f"x must have an even size along dim {dim} (real parts then imaginary parts), got {x.shape}.")
    re, im = torch.chunk(x, 2, dim=dim)
    return torch.complex(re, im)


_CONVENTIONS = ("ortho", "tpdm")


def _centring_factors(size: int, centred_input: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Phase factors that turn the shifts around a length-``size`` FFT into products: ``(pre, post)``.

    ``fftshift(fft(x)) = fft(pre * x)`` and ``fftshift(fft(ifftshift(x))) = post * fft(pre * x)``, with
    ``b = size // 2``, ``pre[j] = exp(2 pi i b j / size)`` and ``post[k] = exp(2 pi i (k - b) b / size)``. For an even
    size both are real signs: ``pre[j] = (-1)^j`` and ``post[k] = (-1)^(k - b)``.

    Args:
        size: FFT length.
        centred_input: whether the input is centred too (``ifftshift`` first, :func:`fft2c`), which needs ``post``.

    Returns:
        ``(pre, post)`` 1-D float64 (even size) or complex128 tensors; ``post`` is ``None`` when not needed.
    """
    b = size // 2
    j = torch.arange(size, dtype=torch.float64)
    if size % 2 == 0:
        pre = 1 - 2 * (j % 2)
        post = 1 - 2 * ((j - b) % 2) if centred_input else None
        return pre, post
    # phases reduced modulo the period first, so they stay exact for any size
    pre = torch.polar(torch.ones(size, dtype=torch.float64), 2 * math.pi * ((b * j) % size) / size)
    post = torch.polar(torch.ones(size, dtype=torch.float64), 2 * math.pi * (((j - b) * b) % size) / size)
    return pre, (post if centred_input else None)


def _broadcasts_into(factor: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether ``t *= factor`` keeps ``t``'s shape (and dtype), so the product can be taken in place."""
    return torch.broadcast_shapes(factor.shape, t.shape) == t.shape and torch.result_type(t, factor) == t.dtype


def check_multicoil_kspace(
    kspace: Any, mask: Any, sensitivity_maps: Any = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate undersampled (multi-coil) k-space, its sampling mask and coil maps; errors name the argument.

    Args:
        kspace: complex ``(B, Nc, H, W)`` (a volume: slices as ``B``), finite.
        mask: sampling mask ``(H, W)`` or broadcastable to ``kspace`` (``(1, 1, H, W)``, ``(B, 1, H, W)``, ...),
            real/bool/complex (real part used), sampling at least one location.
        sensitivity_maps: complex ``(B or 1, Nc, H, W)``, finite and not all zero; ``None`` for single coil.

    Returns:
        ``(kspace, mask, maps)`` as plain tensors, ``mask`` with 4 dims.

    Raises:
        TypeError: a tensor of the wrong type or dtype (HFS-SDE's real c2r maps are named).
        ValueError: shapes that do not fit, NaN/Inf, an empty mask, all-zero maps.
    """
    if not isinstance(kspace, torch.Tensor):
        raise TypeError(f"inputs (k-space) must be a torch.Tensor, got {type(kspace).__name__}.")
    kspace = kspace.as_tensor() if hasattr(kspace, "as_tensor") else kspace
    if not kspace.is_complex():
        raise TypeError(f"inputs (k-space) must be complex (B, Nc, H, W), got dtype {kspace.dtype}.")
    if kspace.ndim != 4:
        raise ValueError(
            f"inputs (k-space) must be shaped (B, Nc, H, W) (a volume: slices as B), got {tuple(kspace.shape)}."
        )
    if not bool(torch.isfinite(kspace).all()):
        bad = int((~torch.isfinite(kspace)).sum())
        raise ValueError(f"inputs (k-space) must be finite, got {bad} NaN/Inf samples.")
    batch, coils, height, width = kspace.shape
    if mask is None:
        raise ValueError("mask (the k-space sampling mask) is required, got None.")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}.")
    mask = mask.as_tensor() if hasattr(mask, "as_tensor") else mask
    mask = mask.real if mask.is_complex() else mask
    if mask.ndim < 2 or mask.ndim > 4 or tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(
            f"mask must be shaped (H, W) = ({height}, {width}) or broadcastable to the k-space {tuple(kspace.shape)}, "
            f"got {tuple(mask.shape)}."
        )
    mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    if mask.shape[0] not in (1, batch) or mask.shape[1] not in (1, coils):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast against the k-space {tuple(kspace.shape)}.")
    if not bool(torch.any(mask != 0)):
        raise ValueError("mask samples no k-space location (all zeros).")
    if sensitivity_maps is None:
        if coils != 1:
            raise ValueError(
                f"multi-coil k-space ({coils} coils, shape {tuple(kspace.shape)}) needs sensitivity_maps; "
                "pass them or a single-coil (B, 1, H, W) k-space."
            )
        return kspace, mask, None
    if not isinstance(sensitivity_maps, torch.Tensor):
        raise TypeError(f"sensitivity_maps must be a torch.Tensor or None, got {type(sensitivity_maps).__name__}.")
    maps = sensitivity_maps.as_tensor() if hasattr(sensitivity_maps, "as_tensor") else sensitivity_maps
    if not maps.is_complex():
        raise TypeError(
            f"sensitivity_maps must be complex (B, Nc, H, W), got dtype {maps.dtype} (HFS-SDE's real c2r maps "
            "(B, 2 Nc, H, W) convert with medgen.physics.mri.channels_to_complex)."
        )
    if maps.ndim != 4 or maps.shape[0] not in (1, batch) or tuple(maps.shape[1:]) != (coils, height, width):
        raise ValueError(
            f"sensitivity_maps must be shaped ({batch} or 1, {coils}, {height}, {width}) to match the k-space "
            f"{tuple(kspace.shape)}, got {tuple(maps.shape)}."
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("sensitivity_maps must be finite, got NaN/Inf values.")
    if not bool(torch.any(maps != 0)):
        raise ValueError("sensitivity_maps are all zero (every coil sees nothing).")
    return kspace, mask, maps


class CartesianMRI(LinearOperator):
    """Undersampled Cartesian MRI, single- or multi-coil: ``A x = M * F(S x)``, ``A^H y = sum_c conj(S_c) F^H(M * y)``.

    ``F`` is a 2-D FFT over the last two axes with DC at index ``n // 2``:

    - ``convention="ortho"``: :func:`fft2c` (unitary; HFS-SDE's ``Emat_xyt``, fastMRI).
    - ``convention="tpdm"``: :func:`fft2_tpdm` (``fftshift(fft2(x))`` without normalisation; TPDM's CS-MRI).
      Then ``F^H = H W * ifft2_tpdm``, so :meth:`adjoint` is ``H W`` times TPDM's ``ifft2(ifftshift(M y))``, while
      :meth:`pseudo_inverse` (single coil) is exactly TPDM's ``ifft2(ifftshift(M y))``.

    Layouts (the coil axis is axis 1; extra axes between it and ``(H, W)``, e.g. a slice axis, broadcast):

    - image ``x``: ``(B, 1, ..., H, W)``, complex or real (promoted to complex).
    - k-space ``y``: ``(B, Nc, ..., H, W)`` complex, ``Nc = 1`` without sensitivity maps.
    - ``channels=True`` (HFS-SDE's real layout): image ``(B, 2, ..., H, W)`` = ``[real, imag]`` and k-space
      ``(B, 2 Nc, ..., H, W)`` = ``[re coils.., im coils..]`` (see :func:`complex_to_channels`), both real.
      HFS-SDE's real coil maps ``(B, 2 Nc, H, W)`` are converted with :func:`channels_to_complex` first
      (or use :meth:`from_hfs`).
    - ``real_image=True``: the image domain is real (TPDM's magnitude slices); :meth:`adjoint` and
      :meth:`pseudo_inverse` return the real part, which is the adjoint of the operator restricted to real images.

    Args:
        mask: sampling mask broadcastable to the k-space shape after right-alignment, e.g. ``(H, W)``,
            ``(1, 1, H, W)`` or ``(B, 1, H, W)``; bool, real or complex (real part used), usually 0/1.
        sensitivity_maps: complex coil sensitivities ``(B, Nc, ..., H, W)`` (``B`` may be 1), or ``None`` for
            single coil. Real maps are treated as real-valued sensitivities, not as HFS-SDE's channel layout.
        convention: ``"ortho"`` or ``"tpdm"``, the Fourier transform (see above).
        channels: use the real ``[real, imag]`` channel layout for images and k-space.
        real_image: the image domain is real.

    Raises:
        TypeError: if ``mask`` or ``sensitivity_maps`` are not tensors of a suitable dtype.
        ValueError: for an unknown ``convention`` or shapes that do not fit together.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        sensitivity_maps: torch.Tensor | None = None,
        convention: str = "ortho",
        channels: bool = False,
        real_image: bool = False,
    ) -> None:
        super().__init__()
        check_choice(convention, "convention", _CONVENTIONS)
        check_tensor(mask, "mask", min_ndim=2, layout="(..., H, W)")
        if channels and real_image:
            raise ValueError("channels=True (complex image as [real, imag] channels) excludes real_image=True.")
        if mask.is_complex():
            mask = mask.real
        if mask.dtype == torch.bool or not mask.is_floating_point():
            mask = mask.to(torch.get_default_dtype())
        if sensitivity_maps is not None:
            if not isinstance(sensitivity_maps, torch.Tensor):
                raise TypeError(
                    f"sensitivity_maps must be a torch.Tensor or None, got {type(sensitivity_maps).__name__}."
                )
            if sensitivity_maps.ndim < 3:
                raise ValueError(
                    "sensitivity_maps must be shaped (B, Nc, ..., H, W), got shape "
                    f"{tuple(sensitivity_maps.shape)}."
                )
            if not sensitivity_maps.is_complex():
                if not sensitivity_maps.is_floating_point():
                    raise TypeError(f"sensitivity_maps must be complex or floating, got {sensitivity_maps.dtype}.")
                sensitivity_maps = torch.complex(sensitivity_maps, torch.zeros_like(sensitivity_maps))
            if mask.shape[-2:] != sensitivity_maps.shape[-2:]:
                raise ValueError(
                    f"mask (H, W) = {tuple(mask.shape[-2:])} must equal sensitivity_maps (H, W) = "
                    f"{tuple(sensitivity_maps.shape[-2:])}."
                )
            try:
                torch.broadcast_shapes(mask.shape, sensitivity_maps.shape)
            except RuntimeError as err:
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} does not broadcast against sensitivity_maps shape "
                    f"{tuple(sensitivity_maps.shape)}."
                ) from err
        self.convention = convention
        self.channels = channels
        self.real_image = real_image
        self.register_buffer("mask", mask)
        # stored as a real view (..., 2): ``Module.to(dtype)`` would cast a complex buffer to real, dropping phase
        maps_real = None if sensitivity_maps is None else torch.view_as_real(sensitivity_maps.resolve_conj()).clone()
        self.register_buffer("sensitivity_maps_real", maps_real)
        self._closed_form_pinv = self._is_scaled_partial_isometry()
        # the centring shifts folded into the maps (or an image-side factor) and the mask, per device and dtype
        self._folded: tuple[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def from_hfs(cls, mask: torch.Tensor, csm: torch.Tensor | None) -> CartesianMRI:
        """The operator of HFS-SDE's ``Emat_xyt(x, inv, csm, mask)`` on its real channel layout.

        Args:
            mask: HFS-SDE mask ``(1, 1, H, W)`` (complex128 0/1 as loaded by ``get_mask``, or real).
            csm: real coil maps ``(B, 2 Nc, H, W)`` = ``c2r(maps)``, or ``None`` for single coil.

        Returns:
            ``CartesianMRI(mask, channels_to_complex(csm), convention="ortho", channels=True)``.
        """
        maps = None if csm is None else channels_to_complex(csm)
        return cls(mask, maps, convention="ortho", channels=True)

    @property
    def sensitivity_maps(self) -> torch.Tensor | None:
        """Complex coil maps ``(B, Nc, ..., H, W)``, or ``None`` for single coil."""
        if self.sensitivity_maps_real is None:
            return None
        return torch.view_as_complex(self.sensitivity_maps_real.contiguous())

    @property
    def num_coils(self) -> int:
        """Number of receive coils ``Nc`` (1 without sensitivity maps)."""
        return 1 if self.sensitivity_maps is None else int(self.sensitivity_maps.shape[1])

    def batch_slice(self, index: slice) -> CartesianMRI:
        """The operator for items ``index``: per-item masks and maps (batch dimension > 1) are sliced."""
        mask, maps = self.mask, self.sensitivity_maps
        if mask.ndim >= 4 and mask.shape[0] > 1:
            mask = mask[index]
        if maps is not None and maps.shape[0] > 1:
            maps = maps[index]
        if mask is self.mask and maps is self.sensitivity_maps:
            return self
        return CartesianMRI(mask, maps, self.convention, self.channels, self.real_image)

    def _is_scaled_partial_isometry(self) -> bool:
        """Whether ``A A^H`` is ``c`` times a projection, so that ``A^+ = A^H / c`` (``c`` = 1 or ``H W``).

        True when the mask is binary and either there are no maps (``A = M F``), or there is one coil with
        ``|S| = 1`` everywhere, or all of k-space is sampled and ``sum_c |S_c|^2`` is 0 or 1 at every pixel
        (ESPIRiT-style maps, zero outside the object), which gives ``A^H A`` = a projection.
        """
        mask = self.mask
        if not bool(torch.all((mask == 0) | (mask == 1))):
            return False
        maps = self.sensitivity_maps
        if maps is None:
            return True
        energy = torch.sum(maps.abs() ** 2, dim=1)
        tol = 1e-4
        if maps.shape[1] == 1:
            return bool(torch.all((energy - 1).abs() < tol))
        fully_sampled = bool(torch.all(mask == 1))
        return fully_sampled and bool(torch.all(((energy - 1).abs() < tol) | (energy < tol)))

    def _folded_factors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """``(image_factor, mask_factor, adjoint_mask_factor)`` on ``device`` for the real ``dtype``.

        With ``F x = post * fft(pre * x)`` (:func:`_centring_factors` per axis), ``A x = (M post) * fft((S pre) x)``
        and ``A^H y = sum_c conj(S_c pre) * ifft(conj(M post) * y_c)``: one product, one FFT and one mask product per
        direction. ``image_factor`` is ``S pre`` (or ``pre`` without maps); the factors are real when they can be.
        """
        maps = self.sensitivity_maps_real
        key = (device, dtype, self.mask.data_ptr(), self.mask._version)
        key += (None,) if maps is None else (maps.data_ptr(), maps._version)
        if self._folded is not None and self._folded[0] == key:
            return self._folded[1]
        height, width = self.mask.shape[-2:]
        centred = self.convention == "ortho"
        pre_h, post_h = _centring_factors(height, centred)
        pre_w, post_w = _centring_factors(width, centred)
        complex_dtype = (torch.ones((), dtype=dtype) * 1j).dtype
        with torch.no_grad():
            pre = pre_h[:, None] * pre_w[None, :]
            mask = self.mask.to(torch.float64)
            if post_h is not None:
                mask = mask * (post_h[:, None] * post_w[None, :])
            image_factor = pre if self.sensitivity_maps is None else self.sensitivity_maps.to(torch.complex128) * pre
            image_factor = image_factor.to(device=device, dtype=complex_dtype if image_factor.is_complex() else dtype)
            mask_factor = mask.to(device=device, dtype=complex_dtype if mask.is_complex() else dtype)
            adjoint_mask = mask_factor.conj().resolve_conj() if mask_factor.is_complex() else mask_factor
        factors = (image_factor, mask_factor, adjoint_mask)
        self._folded = (key, factors)
        return factors

    def _fft_norms(self) -> tuple[str, str]:
        """``norm`` arguments of the forward FFT and of the inverse FFT that is its adjoint."""
        return ("ortho", "ortho") if self.convention == "ortho" else ("backward", "forward")

    def _check(self, t: torch.Tensor, name: str, channels: int) -> None:
        check_tensor(t, name, min_ndim=3, layout="(B, C, ..., H, W)")
        if self.channels and t.is_complex():
            raise TypeError(f"{name} must be real ([real, imag] channels) because channels=True, got {t.dtype}.")
        expected = 2 * channels if self.channels else channels
        if t.shape[1] != expected:
            raise ValueError(f"{name} must have {expected} channels along axis 1, got shape {tuple(t.shape)}.")
        if tuple(t.shape[-2:]) != tuple(self.mask.shape[-2:]):
            raise ValueError(
                f"{name} spatial size {tuple(t.shape[-2:])} must equal the mask's {tuple(self.mask.shape[-2:])}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A``: image -> masked (multi-coil) k-space.

        Args:
            x: image ``(B, 1, ..., H, W)`` (complex or real), or ``(B, 2, ..., H, W)`` real with ``channels=True``.

        Returns:
            k-space ``(B, Nc, ..., H, W)`` complex, or ``(B, 2 Nc, ..., H, W)`` real with ``channels=True``.
        """
        self._check(x, "x", 1)
        if self.channels:
            x = channels_to_complex(x)
        elif not x.is_complex():
            x = torch.complex(x, torch.zeros_like(x))
        image_factor, mask_factor, _ = self._folded_factors(x.device, x.real.dtype)
        y = torch.fft.fft2(x * image_factor, norm=self._fft_norms()[0])
        y = y.mul_(mask_factor) if _broadcasts_into(mask_factor, y) else y * mask_factor
        return complex_to_channels(y) if self.channels else y

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H``: k-space -> coil-combined image ``sum_c conj(S_c) F^H(M y_c)``.

        Args:
            y: k-space ``(B, Nc, ..., H, W)`` complex, or ``(B, 2 Nc, ..., H, W)`` real with ``channels=True``.

        Returns:
            image ``(B, 1, ..., H, W)`` complex (real part if ``real_image``), or ``(B, 2, ..., H, W)`` real with
            ``channels=True``.
        """
        self._check(y, "y", self.num_coils)
        y = channels_to_complex(y) if self.channels else y
        if not y.is_complex():
            y = torch.complex(y, torch.zeros_like(y))
        image_factor, _, adjoint_mask = self._folded_factors(y.device, y.real.dtype)
        x = torch.fft.ifft2(y * adjoint_mask, norm=self._fft_norms()[1])
        if self.sensitivity_maps is None:
            image_factor = image_factor.conj()
            x = x.mul_(image_factor) if _broadcasts_into(image_factor, x) else x * image_factor
        else:
            x = torch.linalg.vecdot(image_factor, x, dim=1).unsqueeze(1)
        return self._to_image(x)

    def _to_image(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels:
            return complex_to_channels(x)
        return x.real if self.real_image else x

    def pseudo_inverse(self, y: torch.Tensor, max_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
        """Minimum-norm least-squares image ``A^+ y``.

        Closed form ``A^H y / c`` (``c = 1`` for ``"ortho"``, ``H W`` for ``"tpdm"``) when ``A`` is a scaled partial
        isometry: binary mask and single coil without maps (the zero-filled image), one coil with ``|S| = 1``, or
        fully sampled k-space with ``sum_c |S_c|^2`` in {0, 1} per pixel. Undersampled multi-coil data need the
        SENSE least-squares solution, computed by conjugate gradients (:meth:`LinearOperator.pseudo_inverse`);
        there ``A^H y`` (:meth:`adjoint`) is only the zero-filled coil combination.

        Args:
            y: k-space shaped like ``A(x)``.
            max_iter: CG iterations (iterative case only).
            tol: CG relative residual tolerance (iterative case only).

        Returns:
            image shaped like ``A^H y``.
        """
        if not self._closed_form_pinv:
            return super().pseudo_inverse(y, max_iter=max_iter, tol=tol)
        x = self.adjoint(y)
        if self.convention == "tpdm":
            x = x / (y.shape[-2] * y.shape[-1])
        return x
