"""Tests for medgen.solvers.cgls: Tikhonov least squares / CG-SENSE, its stopping and lambda rules."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.solvers.cgls import CGLS
from tests.solvers.helpers import MatrixOperator, generator


def _dense_tikhonov(matrix, y, lam, x_ref=None):
    """``(M^H M + lam I)^-1 (M^H y + lam x_ref)`` for flattened items."""
    n = matrix.shape[-1]
    gram = matrix.mH @ matrix + lam * torch.eye(n, dtype=matrix.dtype)
    rhs = matrix.mH @ y
    if x_ref is not None:
        rhs = rhs + lam * x_ref
    return torch.linalg.solve(gram, rhs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_tikhonov_matches_dense_solve(dtype):
    matrix = torch.randn(30, 20, dtype=dtype, generator=generator(0))
    op = MatrixOperator(matrix)
    y = torch.randn(2, 1, 30, dtype=dtype, generator=generator(1))
    x_ref = torch.randn(2, 1, 20, dtype=dtype, generator=generator(2))
    solver = CGLS(op, lam=0.7, max_iter=200, tol=1e-13)
    x = solver(y, x_ref=x_ref)
    for b in range(2):
        expected = _dense_tikhonov(matrix, y[b, 0, :, None], 0.7, x_ref[b, 0, :, None])[:, 0]
        torch.testing.assert_close(x[b, 0], expected, atol=1e-10, rtol=0)
    assert solver.info.rule == "fixed" and bool(solver.info.converged.all())
    torch.testing.assert_close(solver.info.lam, torch.full((2,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(solver.info.residual_norm, torch.linalg.vector_norm(op(x) - y, dim=(1, 2)))


def test_per_item_lambda_and_batch_independence():
    matrices = torch.randn(3, 25, 12, dtype=torch.float64, generator=generator(3))
    op = MatrixOperator(matrices)
    y = torch.randn(3, 1, 25, dtype=torch.float64, generator=generator(4))
    lam = torch.tensor([0.0, 0.1, 5.0], dtype=torch.float64)
    x = CGLS(op, lam=lam, max_iter=100, tol=1e-12)(y)
    for b in range(3):
        expected = _dense_tikhonov(matrices[b], y[b, 0, :, None], float(lam[b]))[:, 0]
        torch.testing.assert_close(x[b, 0], expected, atol=1e-9, rtol=0)
        alone = CGLS(MatrixOperator(matrices[b]), lam=float(lam[b]), max_iter=100, tol=1e-12)(y[b : b + 1])
        torch.testing.assert_close(x[b : b + 1], alone, atol=1e-12, rtol=0)


def _tiny_mri(dtype=torch.complex128):
    mask = torch.zeros(8, 8, dtype=torch.float64)
    mask[:, ::3] = 1
    mask[:, 3:5] = 1
    maps = torch.randn(2, 3, 8, 8, dtype=torch.complex128, generator=generator(5))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    return CartesianMRI(mask, maps.to(dtype))


def _dense_of(op, item: int, n_side: int = 8, dtype=torch.complex128):
    """Dense matrix of item ``item`` of a batched operator, columns = A(e_j)."""
    columns = []
    for j in range(n_side * n_side):
        e = torch.zeros(2, 1, n_side, n_side, dtype=dtype)
        e.view(2, -1)[item, j] = 1
        columns.append(op(e)[item].reshape(-1))
    return torch.stack(columns, dim=1)


def test_cg_sense_matches_dense_tikhonov_on_tiny_mri():
    op = _tiny_mri()
    image = torch.randn(2, 1, 8, 8, dtype=torch.complex128, generator=generator(6))
    y = op(image) + 0.05 * op(torch.randn(2, 1, 8, 8, dtype=torch.complex128, generator=generator(7)))
    x = CGLS(op, lam=0.05, max_iter=300, tol=1e-13)(y)
    for b in range(2):
        dense = _dense_of(op, b)
        expected = _dense_tikhonov(dense, y[b].reshape(-1, 1), 0.05)[:, 0]
        torch.testing.assert_close(x[b].reshape(-1), expected, atol=1e-9, rtol=0)


def test_float32_and_device_of_input():
    op = _tiny_mri(torch.complex64)
    y = op(torch.randn(2, 1, 8, 8, dtype=torch.complex64, generator=generator(8)))
    x = CGLS(op, lam=0.1, max_iter=100, tol=1e-6)(y)
    assert x.dtype == torch.complex64 and x.device == y.device
    x64 = CGLS(_tiny_mri(), lam=0.1, max_iter=200, tol=1e-12)(y.to(torch.complex128))
    torch.testing.assert_close(x.to(torch.complex128), x64, atol=1e-4 * float(x64.abs().max()), rtol=0)


def test_device_matches_cpu(device):
    if device.type == "cpu":
        pytest.skip("compares the --device run with the CPU run")
    op = _tiny_mri()
    y = op(torch.randn(2, 1, 8, 8, dtype=torch.complex128, generator=generator(9)))
    x = CGLS(op, lam=0.1, max_iter=100, tol=1e-12)(y)
    x_cuda = CGLS(op.to(device), lam=0.1, max_iter=100, tol=1e-12)(y.to(device))
    assert x_cuda.device.type == device.type
    torch.testing.assert_close(x_cuda.cpu(), x, atol=1e-9, rtol=0)


def _noisy_problem(noise: float = 0.05):
    matrices = torch.randn(2, 40, 30, dtype=torch.float64, generator=generator(10))
    truth = torch.randn(2, 1, 30, dtype=torch.float64, generator=generator(11))
    op = MatrixOperator(matrices)
    y = op(truth) + noise * torch.randn(2, 1, 40, dtype=torch.float64, generator=generator(12))
    return op, y, truth


def test_early_stopping_by_discrepancy_stops_at_first_fitting_iterate():
    op, y, _ = _noisy_problem()
    solver = CGLS(op, stopping="discrepancy", max_iter=100, tol=0.0)
    solver(y, noise_std=0.05)
    info = solver.info
    assert info.rule == "discrepancy" and bool(info.converged.all())
    assert torch.all(info.residual_norm <= info.target_residual)
    for b in range(2):  # one iteration fewer does not fit yet
        k = int(info.iterations[b])
        fewer = CGLS(MatrixOperator(op.matrix[b]), max_iter=k - 1, tol=0.0)(y[b : b + 1]) if k > 1 else None
        if fewer is not None:
            assert float((op.matrix[b] @ fewer[0, 0] - y[b, 0]).norm()) > float(info.target_residual[b])


def test_oracle_iteration_count_is_the_best_iterate():
    op, y, truth = _noisy_problem(0.5)
    solver = CGLS(op, stopping="oracle", max_iter=30, tol=0.0)
    x = solver(y, reference=truth)
    best = solver.info.best_iteration
    for b in range(2):
        single = MatrixOperator(op.matrix[b])
        errors = [float(((CGLS(single, max_iter=k, tol=0.0)(y[b : b + 1]) - truth[b : b + 1]) ** 2).mean())
                  for k in range(1, 31)]
        assert int(best[b]) == 1 + min(range(30), key=errors.__getitem__)
        torch.testing.assert_close(((x[b] - truth[b]) ** 2).mean(), torch.tensor(min(errors), dtype=torch.float64))


def test_lambda_by_discrepancy_fits_to_the_noise_level():
    op, y, _ = _noisy_problem()
    solver = CGLS(op, lam="discrepancy", max_iter=200, tol=1e-12, search_steps=12)
    solver(y, noise_std=0.05)
    info = solver.info
    assert info.rule == "discrepancy" and info.solves == 12
    assert torch.all(info.residual_norm <= info.target_residual)
    assert torch.all(info.residual_norm >= 0.8 * info.target_residual)  # bisected close to the target, not below


def test_lambda_by_oracle_beats_fixed_lambdas():
    op, y, truth = _noisy_problem(0.5)
    solver = CGLS(op, lam="oracle", max_iter=200, tol=1e-12)
    x = solver(y, reference=truth)
    assert solver.info.psnr is not None
    for lam in (1e-3, 1e-1, 1.0, 10.0, 100.0):
        other = CGLS(op, lam=lam, max_iter=200, tol=1e-12)(y)
        assert torch.all(((x - truth) ** 2).mean(dim=(1, 2)) <= ((other - truth) ** 2).mean(dim=(1, 2)) * 1.0001)


def test_zaxis_minimum_norm_solution():
    op = ZAxisAverage(4, axis=-1)
    volume = torch.rand(1, 1, 4, 4, 16, dtype=torch.float64, generator=generator(13))
    x = CGLS(op, max_iter=10, tol=1e-12)(op(volume))
    torch.testing.assert_close(x, op.pseudo_inverse(op(volume)), atol=1e-12, rtol=0)


def test_bad_arguments_are_named():
    op = MatrixOperator(torch.randn(5, 4, dtype=torch.float64, generator=generator(14)))
    y = torch.zeros(2, 1, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match="operator"):
        CGLS(lambda x: x)
    with pytest.raises(ValueError, match="lam"):
        CGLS(op, lam=-1.0)
    with pytest.raises(ValueError, match="lam"):
        CGLS(op, lam="gcv")
    with pytest.raises(ValueError, match="stopping"):
        CGLS(op, stopping="never")
    with pytest.raises(ValueError, match="not both"):
        CGLS(op, lam="oracle", stopping="discrepancy")
    with pytest.raises(ValueError, match="max_iter"):
        CGLS(op, max_iter=0)
    with pytest.raises(TypeError, match="unexpected"):
        CGLS(op, lam=0.1, colour="red")
    with pytest.raises(ValueError, match="x0"):
        CGLS(op)(y, x0=torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x_ref"):
        CGLS(op, lam=0.1)(y, x_ref=torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="reference"):
        CGLS(op, lam="oracle")(y)
    with pytest.raises(ValueError, match="noise_std"):
        CGLS(op, lam="discrepancy")(y, noise_std=-1.0)
    with pytest.raises(ValueError, match="lam has 3 values"):
        CGLS(op, lam=torch.ones(3, dtype=torch.float64))(y)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        CGLS(op)([0.0])
    with pytest.raises(TypeError, match="prior"):
        CGLS(op)(y, prior=y)
