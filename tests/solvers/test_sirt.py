"""Tests for medgen.solvers.sirt."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.blur import Downsample
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.solvers.sirt import SIRT
from tests.solvers.helpers import MatrixOperator, disk_phantom, generator


def _consistent_system(batch: int = 2):
    matrices = torch.rand(batch, 40, 15, dtype=torch.float64, generator=generator(0))
    truth = torch.rand(batch, 1, 15, dtype=torch.float64, generator=generator(1))
    op = MatrixOperator(matrices)
    return op, op(truth), truth


def test_converges_to_the_least_squares_solution_of_a_consistent_system():
    op, y, truth = _consistent_system()
    solver = SIRT(op, max_iter=20000, tol=1e-13)
    x = solver(y)
    lstsq = torch.linalg.lstsq(op.matrix, y.transpose(1, 2)).solution.transpose(1, 2)
    torch.testing.assert_close(lstsq, truth, atol=1e-10, rtol=0)
    torch.testing.assert_close(x, truth, atol=1e-6, rtol=0)
    assert solver.info.lam is None and solver.info.rule == "fixed"


def test_batch_items_are_independent():
    op, y, _ = _consistent_system(3)
    x = SIRT(op, max_iter=50, tol=1e-4)(y)
    for b in range(3):
        alone = SIRT(MatrixOperator(op.matrix[b]), max_iter=50, tol=1e-4)(y[b : b + 1])
        torch.testing.assert_close(x[b : b + 1], alone, atol=1e-12, rtol=0)


def test_zaxis_first_iterate_is_the_pseudo_inverse():
    op = ZAxisAverage(4, axis=-1)
    volume = torch.rand(2, 1, 4, 4, 16, dtype=torch.float64, generator=generator(2))
    x = SIRT(op, max_iter=1)(op(volume))
    torch.testing.assert_close(x, op.pseudo_inverse(op(volume)), atol=1e-12, rtol=0)


def test_box_and_stopping_rules_on_sparse_view_ct():
    op = ParallelBeamCT(16, 6)
    truth = disk_phantom(16, 2)
    y = op(truth)
    noisy = y + 0.2 * torch.randn(y.shape, dtype=y.dtype, generator=generator(3))
    boxed = SIRT(op, max_iter=30, box=(0.0, 1.0))
    x = boxed(noisy)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    early = SIRT(op, stopping="discrepancy", max_iter=500, tol=0.0)
    early(noisy, noise_std=0.2)
    assert bool(early.info.converged.all()) and torch.all(early.info.residual_norm <= early.info.target_residual)
    assert torch.all(early.info.iterations < 500)
    oracle = SIRT(op, stopping="oracle", max_iter=60, tol=0.0)
    best = oracle(noisy, reference=truth)
    for k in (5, 20, 60):
        other = SIRT(op, max_iter=k, tol=0.0)(noisy)
        assert torch.all(((best - truth) ** 2).mean(dim=(1, 2, 3)) <= ((other - truth) ** 2).mean(dim=(1, 2, 3)))


def test_float32_on_downsample():
    op = Downsample(2)
    image = torch.rand(1, 1, 8, 8, generator=generator(4))
    x = SIRT(op, max_iter=5)(op(image))
    assert x.dtype == torch.float32
    torch.testing.assert_close(op(x), op(image), atol=1e-6, rtol=0)


def test_bad_operators_and_settings():
    mri = CartesianMRI(torch.ones(4, 4))
    with pytest.raises(TypeError, match="real operator"):
        SIRT(mri)(torch.zeros(1, 1, 4, 4, dtype=torch.complex64))
    signed = MatrixOperator(torch.tensor([[1.0, -3.0], [0.5, 0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative"):
        SIRT(signed)(torch.zeros(1, 1, 2, dtype=torch.float64))
    op, _, _ = _consistent_system()
    with pytest.raises(ValueError, match="relaxation"):
        SIRT(op, relaxation=2.0)
    with pytest.raises(ValueError, match="box"):
        SIRT(op, box=(1.0, 0.0))
    with pytest.raises(ValueError, match="stopping"):
        SIRT(op, stopping="gcv")
    with pytest.raises(TypeError, match="unexpected"):
        SIRT(op, lam=0.1)
