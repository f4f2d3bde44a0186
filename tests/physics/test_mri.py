"""Tests for medgen.physics.mri: centred FFTs and the Cartesian MRI operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.physics.base import inner_product
from medgen.physics.mri import (
    CartesianMRI,
    channels_to_complex,
    complex_to_channels,
    fft2_tpdm,
    fft2c,
    ifft2_tpdm,
    ifft2c,
)
from tests.conftest import load_parity
from tests.physics.helpers import relative_adjoint_error


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normalised_maps(b: int, nc: int, h: int, w: int, seed: int) -> torch.Tensor:
    maps = torch.randn(b, nc, h, w, dtype=torch.complex128, generator=_gen(seed))
    return maps / torch.sqrt(torch.sum(maps.abs() ** 2, dim=1, keepdim=True))


def test_fft2c_matches_numpy_centred_orthonormal():
    x = torch.randn(2, 3, 8, 7, dtype=torch.complex128, generator=_gen(0))
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.vector_norm(fft2c(x)), torch.linalg.vector_norm(x))


def test_fft2c_other_dims():
    x = torch.randn(4, 6, 5, dtype=torch.complex128, generator=_gen(1))
    ref = fft2c(x.permute(2, 0, 1)).permute(1, 2, 0)
    torch.testing.assert_close(fft2c(x, dims=(0, 1)), ref)


def test_tpdm_convention_unnormalised():
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=_gen(2))
    ref = np.fft.fftshift(np.fft.fft2(x.numpy()), axes=(-2, -1))
    np.testing.assert_allclose(fft2_tpdm(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(ifft2_tpdm(fft2_tpdm(x)).real, x, atol=1e-12, rtol=0)


def test_tpdm_kspace_of_parity_label():
    d = load_parity("ve_pc_step_tiny")["dps_csmri"]
    op = CartesianMRI(d["mask"], convention="tpdm", real_image=True)
    y = op(d["label"])
    err = (y - d["y_kspace"]).abs().max().item()
    assert err <= 1e-5 * d["y_kspace"].abs().max().item()


def test_channels_roundtrip_layout():
    x = torch.randn(2, 3, 4, 5, dtype=torch.complex64, generator=_gen(3))
    c = complex_to_channels(x)
    assert c.shape == (2, 6, 4, 5)
    torch.testing.assert_close(c[:, :3], x.real)
    torch.testing.assert_close(c[:, 3:], x.imag)
    torch.testing.assert_close(channels_to_complex(c), x)
    with pytest.raises(ValueError, match="even"):
        channels_to_complex(torch.zeros(1, 3, 2, 2))
    with pytest.raises(TypeError):
        complex_to_channels(torch.zeros(1, 2, 2, 2))


@pytest.mark.parametrize("convention", ["ortho", "tpdm"])
@pytest.mark.parametrize("coils", [0, 4])
@pytest.mark.parametrize("channels", [False, True])
def test_dot_product_adjoint(convention, coils, channels):
    b, h, w = 2, 12, 10
    mask = (torch.rand(1, 1, h, w, generator=_gen(4)) > 0.5).double()
    maps = _normalised_maps(b, coils, h, w, 5) if coils else None
    op = CartesianMRI(mask, maps, convention=convention, channels=channels)
    nc = max(coils, 1)
    x = torch.randn(b, 1, h, w, dtype=torch.complex128, generator=_gen(6))
    y = torch.randn(b, nc, h, w, dtype=torch.complex128, generator=_gen(7))
    if channels:
        x, y = complex_to_channels(x), complex_to_channels(y)
    lhs, rhs = inner_product(op(x), y), inner_product(x, op.adjoint(y))
    assert abs(lhs - rhs).item() < 1e-5 * abs(lhs).item()
    assert relative_adjoint_error(op, x, y) < 1e-12  # the normalisation, float64
    assert op(x).shape == y.shape and op.adjoint(y).shape == x.shape


def test_dot_product_real_image_and_volume_axis():
    mask = (torch.rand(9, 8, generator=_gen(8)) > 0.3).double()
    maps = _normalised_maps(1, 3, 9, 8, 9).unsqueeze(2)  # (1, Nc, 1, H, W) broadcasts over slices
    op = CartesianMRI(mask, maps, real_image=True)
    x = torch.randn(2, 1, 5, 9, 8, dtype=torch.float64, generator=_gen(10))
    y = torch.randn(2, 3, 5, 9, 8, dtype=torch.complex128, generator=_gen(11))
    adj = op.adjoint(y)
    assert not adj.is_complex() and adj.shape == x.shape
    assert abs(inner_product(op(x), y) - inner_product(x, adj)).item() < 1e-10
    assert relative_adjoint_error(op, x, y) < 1e-12


def test_hfs_adjoint_of_full_kspace_is_label():
    d = load_parity("hfs_sde")
    op = CartesianMRI(torch.ones(1, 1, 32, 32), channels_to_complex(d["csm"]))
    label = op.adjoint(d["kspace_full"])
    err = (complex_to_channels(label) - d["x0"]).abs().max().item()
    assert err < 1e-5
    hfs = CartesianMRI.from_hfs(torch.ones(1, 1, 32, 32, dtype=torch.complex128), d["csm"])
    assert (hfs.adjoint(complex_to_channels(d["kspace_full"])) - d["x0"]).abs().max().item() < 1e-5
    # maps satisfy sum |S|^2 = 1 and the mask is full: A is an isometry and A^+ = A^H
    torch.testing.assert_close(op.pseudo_inverse(d["kspace_full"]), label)


def test_hfs_x_init_low_frequency_prior():
    d = load_parity("hfs_sde")
    train_mask = d["train_mask"]
    low = CartesianMRI(train_mask, channels_to_complex(d["csm"])).adjoint(d["atb"])
    torch.manual_seed(d["x_init"]["seed"])
    z = channels_to_complex(torch.randn(1, 2, 32, 32))
    high = ifft2c((1 - train_mask) * fft2c(z))
    x_init = complex_to_channels(low + high).float()
    assert (x_init - d["x_init"]["value"]).abs().max().item() < 1e-5


def test_hfs_forward_masks_coil_kspace():
    d = load_parity("hfs_sde")
    op = CartesianMRI(d["atb_mask"], channels_to_complex(d["csm"]))
    x = channels_to_complex(d["x0"])
    y = op(x)
    assert y.shape == (1, 2, 32, 32)
    ref = d["atb_mask"] * fft2c(d["csm_complex"] * x)
    torch.testing.assert_close(y, ref)
    assert torch.all(y[..., d["atb_mask"][0, 0, 0] == 0] == 0)


def test_pseudo_inverse_single_coil_is_zero_filled_and_tpdm_inverse():
    mask = (torch.rand(8, 8, generator=_gen(12)) > 0.5).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=_gen(13))
    op = CartesianMRI(mask, convention="tpdm", real_image=True)
    y = op(x)
    torch.testing.assert_close(op.pseudo_inverse(y), ifft2_tpdm(mask * fft2_tpdm(x)).real)
    full = CartesianMRI(torch.ones(8, 8, dtype=torch.float64), convention="tpdm", real_image=True)
    torch.testing.assert_close(full.pseudo_inverse(full(x)), x)


def test_pseudo_inverse_multicoil_undersampled_uses_cg():
    h = w = 16
    mask = torch.zeros(h, w, dtype=torch.float64)
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    maps = _normalised_maps(1, 4, h, w, 14)
    op = CartesianMRI(mask, maps)
    x = torch.randn(1, 1, h, w, dtype=torch.complex128, generator=_gen(15))
    y = op(x)
    rec = op.pseudo_inverse(y, max_iter=200, tol=1e-10)
    # 4 coils with random (well-conditioned) maps at R < 2: x is identifiable, CG recovers it
    assert (rec - x).abs().max().item() < 1e-6
    assert (op.adjoint(y) - x).abs().max().item() > 1e-2


def test_bad_inputs():
    with pytest.raises(ValueError, match="convention"):
        CartesianMRI(torch.ones(4, 4), convention="fastmri")
    with pytest.raises(TypeError, match="mask"):
        CartesianMRI(np.ones((4, 4)))
    with pytest.raises(ValueError, match="sensitivity_maps"):
        CartesianMRI(torch.ones(4, 4), torch.ones(1, 2, 4, 5, dtype=torch.complex64))
    op = CartesianMRI(torch.ones(4, 4), torch.ones(1, 2, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="channels"):
        op(torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match="spatial size"):
        op(torch.ones(1, 1, 4, 3))
    with pytest.raises(TypeError, match="channels=True"):
        CartesianMRI(torch.ones(4, 4), channels=True)(torch.ones(1, 1, 4, 4, dtype=torch.complex64))


def test_buffers_move_with_module():
    op = CartesianMRI(torch.ones(4, 4), torch.ones(1, 2, 4, 4, dtype=torch.complex64))
    names = dict(op.named_buffers())
    assert set(names) == {"mask", "sensitivity_maps_real"}
    maps = torch.randn(1, 2, 4, 4, dtype=torch.complex64, generator=_gen(16))
    op = CartesianMRI(torch.ones(4, 4), maps).to(torch.float64)
    assert op.mask.dtype == torch.float64 and op.sensitivity_maps.dtype == torch.complex128
    torch.testing.assert_close(op.sensitivity_maps, maps.to(torch.complex128))


@pytest.mark.parametrize("convention", ["ortho", "tpdm"])
@pytest.mark.parametrize("size", [(8, 10), (9, 7), (6, 5)])
@pytest.mark.parametrize("coils", [0, 3])
def test_folded_shifts_equal_the_shifted_ffts(convention, size, coils):
    # A and A^H apply the centring shifts as factors folded into the maps and the mask; they must equal the
    # definitions with explicit (i)fftshifts for even and odd sizes
    h, w = size
    mask = (torch.rand(h, w, generator=_gen(20)) > 0.4).double()
    maps = _normalised_maps(2, coils, h, w, 21) if coils else None
    op = CartesianMRI(mask, maps, convention=convention)
    x = torch.randn(2, 1, h, w, dtype=torch.complex128, generator=_gen(22))
    y = torch.randn(2, max(coils, 1), h, w, dtype=torch.complex128, generator=_gen(23))
    coil_images = x if maps is None else maps * x
    if convention == "ortho":
        expected_forward = mask * fft2c(coil_images)
        back = ifft2c(mask * y)
    else:
        expected_forward = mask * fft2_tpdm(coil_images)
        back = ifft2_tpdm(mask * y) * (h * w)
    expected_adjoint = back if maps is None else torch.sum(maps.conj() * back, dim=1, keepdim=True)
    torch.testing.assert_close(op(x), expected_forward, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(op.adjoint(y), expected_adjoint, atol=1e-12, rtol=1e-12)
    # the folded factors follow a dtype change of the input
    torch.testing.assert_close(op(x.to(torch.complex64)), expected_forward.to(torch.complex64), atol=1e-5, rtol=1e-5)


def test_check_multicoil_kspace_names_bad_inputs():
    from medgen.physics.mri import check_multicoil_kspace

    kspace = torch.randn(2, 3, 8, 8, dtype=torch.complex64)
    maps = torch.randn(1, 3, 8, 8, dtype=torch.complex64)
    mask = torch.ones(8, 8)
    k, m, s = check_multicoil_kspace(kspace, mask, maps)
    assert m.shape == (1, 1, 8, 8) and s is maps
    bad = kspace.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"inputs \(k-space\) must be finite, got 1 NaN/Inf"):
        check_multicoil_kspace(bad, mask, maps)
    with pytest.raises(ValueError, match="sensitivity_maps are all zero"):
        check_multicoil_kspace(kspace, mask, torch.zeros_like(maps))
    with pytest.raises(ValueError, match="sensitivity_maps must be finite"):
        check_multicoil_kspace(kspace, mask, maps * float("inf"))
    with pytest.raises(ValueError, match="all zeros"):
        check_multicoil_kspace(kspace, torch.zeros(8, 8), maps)
    with pytest.raises(ValueError, match="needs sensitivity_maps"):
        check_multicoil_kspace(kspace, mask)
