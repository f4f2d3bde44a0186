"""Tests for medgen.solvers.cg: batched conjugate gradients."""

from __future__ import annotations

import pytest
import torch

from medgen.solvers.cg import cg_solve
from medgen.solvers.stopping import DiscrepancyReached
from tests.solvers.helpers import generator


def _spd(batch: int, n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    m = torch.randn(batch, n, n, dtype=dtype, generator=generator(seed))
    return m.mH @ m + 0.5 * torch.eye(n, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_cg_solve_matches_dense_solve_per_item(dtype):
    matrices = _spd(3, 10, dtype, 0)
    matrices[2] *= 50.0  # another scale: per-item step sizes
    rhs = torch.randn(3, 1, 10, dtype=dtype, generator=generator(1))

    def normal(x):
        return (matrices @ x.transpose(1, 2)).transpose(1, 2)

    result = cg_solve(normal, rhs, max_iter=100, tol=1e-12)
    expected = torch.linalg.solve(matrices, rhs.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(result.x, expected, atol=1e-9, rtol=0)
    assert bool(result.converged.all()) and torch.all(result.iterations <= 10 + 2)
    assert torch.all(result.residual_norm <= 1e-12 * rhs.norm(dim=(1, 2)) * 1.0001)


def test_cg_solve_float32_and_start():
    matrices = _spd(2, 6, torch.float32, 2)
    rhs = torch.randn(2, 1, 6, generator=generator(3))

    def normal(x):
        return (matrices @ x.transpose(1, 2)).transpose(1, 2)

    expected = torch.linalg.solve(matrices.double(), rhs.double().transpose(1, 2)).transpose(1, 2)
    x0 = expected.float() + 1e-3
    result = cg_solve(normal, rhs, x0=x0, max_iter=50, tol=1e-6)
    assert result.x.dtype == torch.float32
    torch.testing.assert_close(result.x.double(), expected, atol=1e-4 * float(expected.abs().max()), rtol=0)


def test_cg_solve_items_stop_on_their_own():
    identity_like = torch.eye(4, dtype=torch.float64).expand(2, 4, 4).clone()
    identity_like[1] = _spd(1, 4, torch.float64, 4)[0]
    rhs = torch.randn(2, 1, 4, dtype=torch.float64, generator=generator(5))
    result = cg_solve(lambda x: (identity_like @ x.transpose(1, 2)).transpose(1, 2), rhs, tol=1e-10)
    assert result.iterations.tolist()[0] == 1 and result.iterations.tolist()[1] > 1


def test_cg_solve_extra_rule():
    matrices = _spd(1, 8, torch.float64, 6)
    rhs = torch.randn(1, 1, 8, dtype=torch.float64, generator=generator(7))
    rule = DiscrepancyReached(torch.tensor([0.5 * float(rhs.norm())], dtype=torch.float64), lambda s: s["rs"].sqrt())
    result = cg_solve(lambda x: (matrices @ x.transpose(1, 2)).transpose(1, 2), rhs, tol=0, rules=[rule])
    assert bool(result.converged.all()) and float(result.residual_norm) <= 0.5 * float(rhs.norm())


def test_cg_solve_bad_arguments():
    rhs = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="rhs"):
        cg_solve(lambda x: x, [1.0, 2.0])
    with pytest.raises(ValueError, match="x0"):
        cg_solve(lambda x: x, rhs, x0=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="max_iter"):
        cg_solve(lambda x: x, rhs, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        cg_solve(lambda x: x, rhs, tol=-1.0)
