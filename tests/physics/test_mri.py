"""Tests for medgen.physics.mri: centred FFTs and the Cartesian MRI operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.physics.mri import fft2_tpdm, fft2c, ifft2_tpdm, ifft2c


def test_fft2c_matches_numpy_centred_orthonormal():
    x = torch.randn(2, 3, 8, 7, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.vector_norm(fft2c(x)), torch.linalg.vector_norm(x))


def test_fft2c_other_dims():
    x = torch.randn(4, 6, 5, dtype=torch.complex128)
    ref = fft2c(x.permute(2, 0, 1)).permute(1, 2, 0)
    torch.testing.assert_close(fft2c(x, dims=(0, 1)), ref)


def test_tpdm_convention_unnormalised():
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    ref = np.fft.fftshift(np.fft.fft2(x.numpy()), axes=(-2, -1))
    np.testing.assert_allclose(fft2_tpdm(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(ifft2_tpdm(fft2_tpdm(x)).real, x, atol=1e-12, rtol=0)
