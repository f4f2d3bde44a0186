"""Tests for medgen.solvers.linalg: per-item inner products, operator norms and measurement counts."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.base import inner_product
from medgen.physics.mri import CartesianMRI
from medgen.solvers.linalg import (
    batch_inner_product,
    batch_norm,
    num_measurements,
    operator_norm,
    operator_norm_bound,
    per_item,
)
from tests.solvers.helpers import MatrixOperator, generator


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_batch_inner_product_is_inner_product_per_item(dtype):
    a = torch.randn(3, 2, 5, dtype=dtype, generator=generator(0))
    b = torch.randn(3, 2, 5, dtype=dtype, generator=generator(1))
    expected = torch.stack([inner_product(a[i], b[i]) for i in range(3)])
    torch.testing.assert_close(batch_inner_product(a, b), expected)
    torch.testing.assert_close(batch_norm(a), torch.stack([a[i].norm() for i in range(3)]))


def test_per_item_shapes_and_dtype():
    like = torch.zeros(4, 2, 3, dtype=torch.complex64)
    out = per_item(torch.arange(4.0, dtype=torch.float64), like)
    assert out.shape == (4, 1, 1) and out.dtype == torch.float32
    assert per_item(2.0, like).shape == (4, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_operator_norm_per_item_matches_dense(dtype):
    matrices = torch.randn(3, 12, 7, dtype=dtype, generator=generator(2))
    matrices[1] *= 10.0
    op = MatrixOperator(matrices)
    like = torch.zeros(3, 1, 7, dtype=dtype)
    expected = torch.linalg.matrix_norm(matrices, ord=2)
    estimate = operator_norm(op, like, max_iter=500, tol=1e-10)
    torch.testing.assert_close(estimate, expected, rtol=1e-4, atol=0)
    # each item gets the norm it gets alone
    alone = operator_norm(MatrixOperator(matrices[1]), like[:1], max_iter=500, tol=1e-10)
    torch.testing.assert_close(estimate[1:2], alone, rtol=1e-12, atol=0)
    bound = operator_norm_bound(op, like)
    assert torch.all(bound >= 0.999 * expected)
    torch.testing.assert_close(operator_norm_bound(op, like, known=2.5), torch.full((3,), 2.5, dtype=torch.float64))


def test_operator_norm_of_a_callable_and_zero_operator():
    like = torch.zeros(2, 1, 4, dtype=torch.float64)
    torch.testing.assert_close(operator_norm(lambda v: 4.0 * v, like), torch.full((2,), 2.0, dtype=torch.float64))
    assert torch.all(operator_norm(lambda v: 0 * v, like) == 0)
    assert torch.all(operator_norm_bound(MatrixOperator(torch.zeros(3, 4, dtype=torch.float64)), like) == 1)


def test_num_measurements_counts_sampled_kspace():
    mask = torch.zeros(8, 8)
    mask[:, ::2] = 1
    maps = torch.randn(2, 3, 8, 8, dtype=torch.complex64, generator=generator(3))
    op = CartesianMRI(mask, maps)
    like = torch.zeros(2, 1, 8, 8, dtype=torch.complex64)
    torch.testing.assert_close(num_measurements(op, like), torch.full((2,), 2.0 * 3 * 32))


def test_operator_norm_bad_arguments():
    with pytest.raises(TypeError, match="like"):
        operator_norm(lambda v: v, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_iter"):
        operator_norm(lambda v: v, torch.zeros(2, 3), max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        operator_norm(lambda v: v, torch.zeros(2, 3), tol=0)
