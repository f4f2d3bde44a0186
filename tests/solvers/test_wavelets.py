"""Tests for medgen.solvers.wavelets: the multilevel orthonormal wavelet operator."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from medgen.physics.base import inner_product
from medgen.solvers.wavelets import OrthonormalWavelet, max_wavelet_levels
from tests.solvers.helpers import generator


@pytest.mark.filterwarnings("ignore:Level value")  # pywt warns that a level is longer than the filter; still exact
@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4", "sym4", "coif1"])
@pytest.mark.parametrize("spatial_dims, shape", [(1, (2, 3, 32)), (2, (2, 1, 32, 16)), (3, (1, 2, 16, 16, 8))])
def test_matches_pywavelets_periodization_layout(wavelet, spatial_dims, shape):
    x = torch.randn(shape, dtype=torch.float64, generator=generator(0))
    transform = OrthonormalWavelet(wavelet, spatial_dims=spatial_dims)
    levels = transform.levels_for(x.shape)
    axes = tuple(range(x.ndim - spatial_dims, x.ndim))
    coeffs = pywt.wavedecn(x.numpy(), wavelet, mode="periodization", level=levels, axes=axes)
    expected = pywt.coeffs_to_array(coeffs, axes=axes)[0]
    np.testing.assert_allclose(transform(x).numpy(), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.complex128, 1e-12), (torch.float32, 2e-6)])
def test_orthonormal_adjoint_is_inverse(dtype, atol):
    transform = OrthonormalWavelet("db4", levels=2)
    x = torch.randn(3, 2, 16, 32, dtype=dtype, generator=generator(1))
    c = transform(x)
    assert c.dtype == x.dtype and c.shape == x.shape
    torch.testing.assert_close(transform.adjoint(c), x, atol=atol * 10, rtol=0)
    torch.testing.assert_close(c.norm(), x.norm(), atol=atol * 10 * float(x.norm()), rtol=0)
    y = torch.randn(x.shape, dtype=dtype, generator=generator(2))
    lhs, rhs = inner_product(transform(x), y), inner_product(x, transform.adjoint(y))
    assert abs(float(lhs - rhs)) <= atol * 10 * float(x.norm() * y.norm())
    torch.testing.assert_close(transform.pseudo_inverse(c), transform.adjoint(c))


def test_complex_is_transformed_part_by_part():
    transform = OrthonormalWavelet("db2")
    x = torch.randn(1, 1, 16, 16, dtype=torch.complex128, generator=generator(3))
    torch.testing.assert_close(transform(x), torch.complex(transform(x.real), transform(x.imag)))


def test_levels_and_detail_mask():
    assert max_wavelet_levels((64, 64), "haar") == 6
    assert max_wavelet_levels((64, 64), "db4") == pywt.dwtn_max_level((64, 64), "db4") == 3
    assert max_wavelet_levels((48, 64), "haar") == 4  # 48 = 16 * 3
    transform = OrthonormalWavelet("haar", levels=2)
    mask = transform.detail_mask((5, 1, 16, 8))
    assert mask.shape == (16, 8) and mask.dtype == torch.bool
    assert not mask[:4, :2].any() and int(mask.sum()) == 16 * 8 - 8
    # one level by default even when the filter is longer than the axis
    assert OrthonormalWavelet("db4", spatial_dims=3).levels_for((16, 16, 6)) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="orthogonal"):
        OrthonormalWavelet("bior2.2")
    with pytest.raises(ValueError, match="wavelet"):
        OrthonormalWavelet("nope")
    with pytest.raises(ValueError, match="levels"):
        OrthonormalWavelet("haar", levels=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        OrthonormalWavelet("haar", spatial_dims=4)
    with pytest.raises(ValueError, match="divisible"):
        OrthonormalWavelet("haar", levels=3)(torch.zeros(1, 1, 12, 16))
    with pytest.raises(ValueError, match="divisible"):
        OrthonormalWavelet("haar")(torch.zeros(1, 1, 15, 16))
    with pytest.raises(TypeError, match="floating"):
        OrthonormalWavelet("haar")(torch.zeros(1, 1, 16, 16, dtype=torch.long))
