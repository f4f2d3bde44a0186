"""Blur and Downsample: scipy oracles, exact adjoints, closed-form pseudo-inverses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, signal

from medgen.physics.base import LinearOperator
from medgen.physics.blur import Blur, Downsample, gaussian_kernel, uniform_kernel
from tests.physics.helpers import relative_adjoint_error


def test_kernels():
    g = gaussian_kernel(7, 1.5, dtype=torch.float64)
    assert g.shape == (7, 7) and abs(float(g.sum()) - 1) < 1e-12
    torch.testing.assert_close(g, g.flip(0, 1))
    r = np.arange(7) - 3.0
    ref = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(g.numpy(), ref / ref.sum(), atol=1e-15)
    u = uniform_kernel(31)
    assert u.shape == (31, 31) and torch.allclose(u.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("kernel_shape", [(3, 3), (4, 5), (1, 6)])
def test_zero_boundary_matches_scipy_convolution(kernel_shape):
    g = torch.Generator().manual_seed(0)
    kernel = torch.rand(kernel_shape, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 12, 13, generator=g, dtype=torch.float64)
    y = Blur(kernel)(x)
    full = signal.convolve(x.numpy(), kernel.numpy()[None, None], mode="full")
    top, left = (kernel_shape[0] - 1) // 2, (kernel_shape[1] - 1) // 2
    np.testing.assert_allclose(y.numpy(), full[..., top : top + 12, left : left + 13], atol=1e-12)


def test_circular_boundary_matches_scipy_wrap():
    kernel = gaussian_kernel(5, 1.0, dtype=torch.float64)
    x = torch.randn(1, 1, 10, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = Blur(kernel, boundary="circular")(x)
    reference = ndimage.convolve(x[0, 0].numpy(), kernel.numpy(), mode="wrap")
    np.testing.assert_allclose(y[0, 0].numpy(), reference, atol=1e-12)
    # FFT form of the same operator
    op = Blur(kernel, boundary="circular")
    fft_form = torch.fft.ifft2(op.transfer_function(10, 9, dtype=torch.float64) * torch.fft.fft2(x)).real
    torch.testing.assert_close(fft_form, y)


@pytest.mark.parametrize("boundary", ["zero", "circular"])
@pytest.mark.parametrize("kernel_shape", [(5, 5), (4, 3)])
def test_blur_adjoint_dot_product(boundary, kernel_shape):
    g = torch.Generator().manual_seed(2)
    op = Blur(torch.rand(kernel_shape, generator=g, dtype=torch.float64), boundary=boundary)
    x = torch.randn(2, 2, 11, 14, generator=g, dtype=torch.float64)
    y = torch.randn(2, 2, 11, 14, generator=g, dtype=torch.float64)
    assert relative_adjoint_error(op, x, y) < 1e-12


def test_circular_pseudo_inverse_inverts_invertible_blur():
    op = Blur.gaussian(5, 0.7, boundary="circular").double()
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(op.pseudo_inverse(op(x)), x)


def test_circular_pseudo_inverse_drops_null_space():
    op = Blur.uniform(4, boundary="circular").double()  # box of 4 on 16 px: zeros in the transfer function
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    xd = op.pseudo_inverse(op(x))
    torch.testing.assert_close(op(xd), op(x))
    # the minimum-norm solution: orthogonal to the null space, so no larger than x
    assert xd.norm() <= x.norm()
    torch.testing.assert_close(op.pseudo_inverse(op(xd)), xd)


def test_zero_boundary_pseudo_inverse_is_cg():
    op = Blur.gaussian(3, 0.5).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(op.pseudo_inverse(op(x), max_iter=200, tol=1e-12), x, atol=1e-6, rtol=0)


def test_blur_dtype_device_autograd():
    op = Blur.gaussian(3, 1.0)  # float32 kernel buffer
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert op(x).dtype == torch.float64
    assert torch.autograd.gradcheck(op, (x,))
    assert op.to(torch.float64).kernel.dtype == torch.float64


@pytest.mark.parametrize("spatial_dims,shape", [(2, (2, 3, 12, 8)), (3, (1, 2, 8, 4, 12))])
def test_downsample(spatial_dims, shape):
    op = Downsample(4, spatial_dims=spatial_dims)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = op(x)
    pool = torch.nn.functional.avg_pool2d if spatial_dims == 2 else torch.nn.functional.avg_pool3d
    ref = pool(x.reshape(-1, 1, *shape[-spatial_dims:]), 4).reshape(y.shape)
    torch.testing.assert_close(y, ref)
    yy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    assert relative_adjoint_error(op, x, yy) < 1e-12
    torch.testing.assert_close(op(op.pseudo_inverse(yy)), yy)
    # the closed form equals the minimum-norm least-squares solution found by CG
    torch.testing.assert_close(op.pseudo_inverse(yy), LinearOperator.pseudo_inverse(op, yy, max_iter=50, tol=1e-12))


def test_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        Blur(torch.ones(3))
    with pytest.raises(ValueError, match="boundary"):
        Blur(torch.ones(3, 3), boundary="reflect")
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(5, 0.0)
    with pytest.raises(ValueError, match="factor"):
        Downsample(0)
    with pytest.raises(ValueError, match="divisible"):
        Downsample(3)(torch.zeros(1, 1, 8, 9))
    with pytest.raises(TypeError, match="floating-point"):
        Blur(torch.ones(3, 3))(torch.zeros(1, 1, 4, 4, dtype=torch.int64))
