"""Tests for medgen.solvers.parameter: noise estimates, the discrepancy target, lambda searches, oracle scores."""

from __future__ import annotations

import math

import pytest
import torch

from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI, complex_to_channels
from medgen.solvers.fista import L1WaveletFISTA
from medgen.solvers.parameter import (
    discrepancy_search,
    discrepancy_target,
    estimate_noise_std,
    least_squares_residual,
    oracle_search,
    psnr_per_item,
    squared_error,
)
from medgen.solvers.tv import TVPDHG
from tests.solvers.helpers import Identity, MatrixOperator, disk_phantom, generator


def _smooth(shape, dtype=torch.float64):
    rows = torch.linspace(0, 1, shape[-2], dtype=torch.float64)[:, None]
    cols = torch.linspace(0, 1, shape[-1], dtype=torch.float64)[None, :]
    return (torch.sin(3 * rows) * torch.cos(2 * cols)).expand(shape).to(dtype)


def test_wavelet_noise_estimate_of_a_smooth_signal_plus_noise():
    sigma = torch.tensor([0.05, 0.2], dtype=torch.float64)
    y = _smooth((2, 1, 64, 64)) + sigma[:, None, None, None] * torch.randn(2, 1, 64, 64, dtype=torch.float64,
                                                                            generator=generator(0))
    torch.testing.assert_close(estimate_noise_std(y), sigma, rtol=0.1, atol=0)
    assert float(estimate_noise_std(_smooth((1, 1, 64, 64)))) < 1e-3  # a noiseless smooth signal: near zero


def _blob(size: int) -> torch.Tensor:
    axis = torch.linspace(-1, 1, size, dtype=torch.float64)
    return torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / 0.1)[None, None]


def test_wavelet_noise_estimate_of_a_sinogram():
    op = ParallelBeamCT(32, 16)
    for image, low, high in ((_blob(32), 0.09, 0.11), (disk_phantom(32, 1), 0.09, 0.2)):
        y = op(image)
        noisy = y + 0.1 * torch.randn(y.shape, dtype=y.dtype, generator=generator(1))
        # a smooth object leaves the details to the noise; the disk's projected edges raise the estimate
        assert low < float(estimate_noise_std(noisy, op)) < high


def test_kspace_noise_estimate_complex_and_channel_layout():
    mask = torch.zeros(64, 64)
    mask[:, ::2] = 1
    op = CartesianMRI(mask)
    noise = 0.03 * torch.complex(torch.randn(1, 1, 64, 64, dtype=torch.float64, generator=generator(2)),
                                 torch.randn(1, 1, 64, 64, dtype=torch.float64, generator=generator(3)))
    y = op(_blob(64).to(torch.complex128)) + mask * noise
    estimate = estimate_noise_std(y, op)
    torch.testing.assert_close(estimate, torch.tensor([0.03], dtype=torch.float64), rtol=0.05, atol=0)
    channels = CartesianMRI(mask, channels=True)
    torch.testing.assert_close(estimate_noise_std(complex_to_channels(y), channels), estimate)
    assert float(estimate_noise_std(op(_blob(64).to(torch.complex128)), op)) < 1e-9  # noiseless and smooth
    edges = op(disk_phantom(64, 1).to(torch.complex128)) + mask * noise
    assert 0.03 < float(estimate_noise_std(edges, op)) < 0.05  # sharp edges leave signal in outer k-space


def test_noise_estimate_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        estimate_noise_std(torch.zeros(1, 1, 16, 16), method="fft")
    with pytest.raises(TypeError, match="CartesianMRI"):
        estimate_noise_std(torch.zeros(1, 1, 16, 16), Identity(), method="kspace")
    with pytest.raises(ValueError, match="noise_std"):
        estimate_noise_std(torch.zeros(1, 1, 4, 4))


def test_discrepancy_target_and_least_squares_residual():
    noise = torch.tensor([0.1, 0.2], dtype=torch.float64)
    measured = torch.tensor([100.0, 400.0], dtype=torch.float64)
    torch.testing.assert_close(discrepancy_target(noise, measured, 1000, 1.0),
                               torch.tensor([1.0, 4.0], dtype=torch.float64))
    # only n = 25 noise components can be fitted, and mu adds in quadrature
    torch.testing.assert_close(discrepancy_target(noise, measured, 25, 2.0, torch.tensor([3.0, 0.0])),
                               torch.tensor([math.sqrt(9 + 1), 2.0], dtype=torch.float64))
    matrix = torch.randn(2, 20, 6, dtype=torch.float64, generator=generator(4))
    y = torch.randn(2, 1, 20, dtype=torch.float64, generator=generator(5))
    expected = torch.stack([torch.linalg.lstsq(matrix[b], y[b, 0]).residuals.sqrt()[0] if False else
                            (matrix[b] @ torch.linalg.lstsq(matrix[b], y[b, 0]).solution - y[b, 0]).norm()
                            for b in range(2)])
    torch.testing.assert_close(least_squares_residual(MatrixOperator(matrix), y), expected, atol=1e-10, rtol=0)


def test_psnr_and_squared_error():
    reference = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    reference[:, :, 0, 0] = 2.0
    x = reference + 0.1
    torch.testing.assert_close(squared_error(x, reference), torch.full((2,), 0.01, dtype=torch.float64))
    torch.testing.assert_close(psnr_per_item(x, reference), torch.full((2,), 10 * math.log10(4 / 0.01),
                                                                        dtype=torch.float64))
    phase = torch.exp(1j * torch.ones(2, 1, 4, 4, dtype=torch.float64))
    torch.testing.assert_close(squared_error(x * phase, reference), squared_error(x, reference))  # magnitude


def test_searches_on_a_monotone_toy_problem():
    # "solver": x = y / (1 + lam); residual = ||x - y|| = lam / (1 + lam) ||y||, increasing in lam
    y = torch.ones(2, 1, 4, dtype=torch.float64)

    def solve_at(lam, x_init):
        x = y / (1 + lam[:, None, None])
        return x, (x - y).flatten(1).norm(dim=1)

    scale = torch.ones(2, dtype=torch.float64)
    target = torch.tensor([0.5, 1.0], dtype=torch.float64)  # residual 0.5 <=> lam = 1/3; 1.0 <=> lam = 1
    x, lam, residual = discrepancy_search(solve_at, scale, target, (1e-4, 10.0), steps=20)
    torch.testing.assert_close(lam, torch.tensor([1 / 3, 1.0], dtype=torch.float64), rtol=1e-3, atol=0)
    assert torch.all(residual <= target)
    reference = y / 1.5  # best lam = 0.5 for both
    x, lam, _ = oracle_search(solve_at, scale, lambda x: squared_error(x, reference), (1e-3, 10.0), steps=12)
    torch.testing.assert_close(lam, torch.full((2,), 0.5, dtype=torch.float64), rtol=0.05, atol=0)


def test_lambda_searches_keep_batch_items_independent():
    truth = disk_phantom(16, 2)
    noisy = truth + torch.tensor([0.05, 0.15], dtype=torch.float64)[:, None, None, None] * torch.randn(
        truth.shape, dtype=truth.dtype, generator=generator(6))
    for rule, kwargs in (("discrepancy", {}), ("oracle", {"reference": truth})):
        solver = TVPDHG(Identity(), lam=rule, max_iter=60, search_steps=4)
        x = solver(noisy, **kwargs)
        for b in range(2):
            alone_kwargs = {key: value[b : b + 1] for key, value in kwargs.items()}
            alone = TVPDHG(Identity(), lam=rule, max_iter=60, search_steps=4)(noisy[b : b + 1], **alone_kwargs)
            torch.testing.assert_close(x[b : b + 1], alone, atol=1e-10, rtol=0)


def test_discrepancy_lambda_for_wavelet_denoising_is_close_to_the_oracle():
    truth = disk_phantom(32, 1)
    noisy = truth + 0.1 * torch.randn(truth.shape, dtype=truth.dtype, generator=generator(7))
    auto = L1WaveletFISTA(Identity(), lam="discrepancy", wavelet="haar", operator_norm=1.0, search_steps=12)
    x_auto = auto(noisy, reference=truth)  # noise estimated from the data
    assert 0.08 < float(auto.info.noise_std) < 0.12
    oracle = L1WaveletFISTA(Identity(), lam="oracle", wavelet="haar", operator_norm=1.0, search_steps=12)
    oracle(noisy, reference=truth)
    assert float(auto.info.psnr) > float(oracle.info.psnr) - 3.0
    assert float(auto.info.psnr) > float(psnr_per_item(noisy, truth)) + 2.0
    assert torch.all(auto.info.residual_norm <= auto.info.target_residual)
    assert x_auto.shape == truth.shape
