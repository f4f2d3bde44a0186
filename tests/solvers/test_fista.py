"""Tests for medgen.solvers.fista: L1-wavelet FISTA and the wavelet soft-thresholding prox."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.blur import Blur
from medgen.solvers.fista import L1WaveletFISTA, wavelet_soft_threshold
from medgen.solvers.proximal import soft_threshold
from medgen.solvers.wavelets import OrthonormalWavelet
from tests.solvers.helpers import Identity, disk_phantom, generator


def test_soft_threshold_real_and_complex():
    x = torch.tensor([[-3.0, -0.5, 0.0, 0.2, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(soft_threshold(x, 1.0), torch.tensor([[-2.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64))
    z = torch.tensor([[3 + 4j, 0.3j, 0]], dtype=torch.complex128)
    torch.testing.assert_close(soft_threshold(z, 1.0), torch.tensor([[2.4 + 3.2j, 0, 0]], dtype=torch.complex128))
    per_item = soft_threshold(torch.ones(2, 3, dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64))
    torch.testing.assert_close(per_item, torch.tensor([[0.5] * 3, [0.0] * 3], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("wavelet", ["haar", "db4"])
def test_identity_operator_gives_soft_thresholded_details_exactly(dtype, wavelet):
    y = torch.randn(2, 1, 16, 16, dtype=dtype, generator=generator(0))
    transform = OrthonormalWavelet(wavelet)
    coefficients = transform(y)
    detail = transform.detail_mask(y.shape)
    expected = transform.adjoint(torch.where(detail, soft_threshold(coefficients, 0.3), coefficients))
    solver = L1WaveletFISTA(Identity(), lam=0.3, wavelet=wavelet, operator_norm=1.0)
    x = solver(y)
    torch.testing.assert_close(x, expected, atol=1e-13, rtol=0)
    torch.testing.assert_close(wavelet_soft_threshold(y, 0.3, transform), expected, atol=1e-13, rtol=0)
    assert int(solver.info.iterations.max()) <= 2
    # the approximation corner is kept unless asked
    kept = transform(x)[..., ~detail]
    torch.testing.assert_close(kept, coefficients[..., ~detail])
    shrunk = L1WaveletFISTA(Identity(), lam=0.3, wavelet=wavelet, operator_norm=1.0, shrink_approximation=True)(y)
    torch.testing.assert_close(shrunk, transform.adjoint(soft_threshold(coefficients, 0.3)), atol=1e-13, rtol=0)


def test_deblurring_reaches_the_proximal_fixed_point():
    op = Blur.gaussian(5, 1.0)
    truth = disk_phantom(16, 2)
    y = op(truth) + 0.01 * torch.randn(truth.shape, dtype=truth.dtype, generator=generator(1))
    lam = torch.tensor([1e-2, 3e-2], dtype=torch.float64)
    solver = L1WaveletFISTA(op, lam=lam, wavelet="haar", max_iter=400, tol=1e-10)
    x = solver(y)
    # minimiser <=> x = prox_{lam/L}(x - A^T (A x - y) / L) for any step 1/L
    step = 1.0
    fixed = wavelet_soft_threshold(x - step * op.adjoint(op(x) - y), lam * step, OrthonormalWavelet("haar"))
    torch.testing.assert_close(fixed, x, atol=1e-5, rtol=0)
    for b in range(2):  # items alone give the same
        alone = L1WaveletFISTA(op, lam=float(lam[b]), wavelet="haar", max_iter=400, tol=1e-10)(y[b : b + 1])
        torch.testing.assert_close(x[b : b + 1], alone, atol=1e-10, rtol=0)


def test_float32_keeps_dtype():
    y = torch.randn(1, 1, 8, 8, generator=generator(2))
    x = L1WaveletFISTA(Identity(), lam=0.1, wavelet="haar")(y)
    assert x.dtype == torch.float32 and x.device == y.device


def test_bad_arguments():
    with pytest.raises(ValueError, match="orthogonal"):
        L1WaveletFISTA(Identity(), lam=0.1, wavelet="bior2.2")
    with pytest.raises(ValueError, match="levels"):
        L1WaveletFISTA(Identity(), lam=0.1, levels=0)
    with pytest.raises(ValueError, match="operator_norm"):
        L1WaveletFISTA(Identity(), lam=0.1, operator_norm=-1.0)
    with pytest.raises(ValueError, match="divisible"):
        L1WaveletFISTA(Identity(), lam=0.1, wavelet="haar", levels=3)(torch.zeros(1, 1, 12, 12))
    with pytest.raises(ValueError, match="spatial axes"):
        L1WaveletFISTA(Identity(), lam=0.1, spatial_dims=3)(torch.zeros(2, 8, 8))
