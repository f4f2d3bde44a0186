"""LinearOperator defaults (normal, CG pseudo-inverse), inner_product and the shared argument checks."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.base import LinearOperator, inner_product
from medgen.checks import check_choice, check_positive_int, check_tensor
from tests.physics.helpers import relative_adjoint_error


class MatrixOperator(LinearOperator):
    """``A x = M x`` on the last axis, for checking the defaults against dense linear algebra."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.matrix.conj()


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_cg_pseudo_inverse_equals_lstsq_minimum_norm(dtype):
    g = torch.Generator().manual_seed(0)
    # 6 x 9 of rank 4: under-determined and rank deficient, so only the minimum-norm solution is unique
    matrix = (torch.randn(6, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 9, generator=g, dtype=torch.float64))
    matrix = matrix.to(dtype)
    op = MatrixOperator(matrix)
    y = torch.randn(3, 6, generator=g, dtype=torch.float64).to(dtype)
    expected = y @ torch.linalg.pinv(matrix).T
    torch.testing.assert_close(op.pseudo_inverse(y, max_iter=100, tol=1e-14), expected, atol=1e-9, rtol=0)
    x = torch.randn(3, 9, generator=g, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(op.normal(x), x @ (matrix.conj().T @ matrix).T)
    assert relative_adjoint_error(op, x, y) < 1e-14
    with pytest.raises(ValueError, match="max_iter"):
        op.pseudo_inverse(y, max_iter=0)


def test_inner_product_is_real_hermitian():
    a = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex128)
    b = torch.tensor([2 - 1j, 1j], dtype=torch.complex128)
    expected = (torch.conj(a) * b).sum().real
    assert inner_product(a, b).item() == expected.item() == pytest.approx(-1.0)
    assert inner_product(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])).item() == 11.0


def test_checks_name_argument_expectation_and_value():
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        check_tensor([1.0], "x")
    with pytest.raises(ValueError, match=r"y must have at least 3 dims \(B, C, H\), got shape \(2, 2\)"):
        check_tensor(torch.zeros(2, 2), "y", min_ndim=3, layout="(B, C, H)")
    with pytest.raises(TypeError, match="z must be a real floating-point tensor, got dtype torch.complex64"):
        check_tensor(torch.zeros(2, dtype=torch.complex64), "z", real_floating=True)
    check_tensor(torch.zeros(1, 1, 1), "ok", min_ndim=3, real_floating=True)
    assert check_positive_int(3, "factor") == 3
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="factor must be a positive integer"):
            check_positive_int(bad, "factor")
    with pytest.raises(ValueError, match=r"mode must be one of \('a', 'b'\), got 'c'"):
        check_choice("c", "mode", ("a", "b"))


def test_image_shape_checks_a_measurement_against_its_operator():
    from medgen.physics.blur import Downsample

    down = Downsample(2)
    assert down.image_shape(torch.zeros(1, 1, 4, 3)) == (1, 1, 8, 6)
    from medgen.physics.mask import Inpainting

    with pytest.raises(ValueError, match="y of shape \\(1, 1, 4, 5\\) is not a measurement of Inpainting"):
        Inpainting(torch.ones(4, 4)).image_shape(torch.zeros(1, 1, 4, 5), "y")
