"""ZAxisAverage: parity with TPDM's physics/zsr.py and decouple/couple closures, adjoint, pseudo-inverse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.physics.zaxis import ZAxisAverage, decoupling_matrix
from tests.physics.helpers import relative_adjoint_error

OFFICIAL = Path(__file__).parents[1] / "data" / "tpdm_physics_official.pt"


@pytest.fixture(scope="module")
def official():
    return torch.load(OFFICIAL, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_parity_with_official_zsr(official, factor):
    x = official["zsr_x"]  # (2, 1, 3, 256), float32
    op = ZAxisAverage(factor)
    y = op(x)
    torch.testing.assert_close(y, official[f"zsr_A_f{factor}"], rtol=0, atol=1e-6)
    # official A_dagger returns (256 // f) * f samples
    torch.testing.assert_close(op.pseudo_inverse(y, length=y.shape[-1] * factor), official[f"zsr_A_dagger_f{factor}"])
    torch.testing.assert_close(op.decouple(x), official[f"zsr_decouple_f{factor}"], rtol=0, atol=1e-6)
    torch.testing.assert_close(op.couple(x), official[f"zsr_couple_f{factor}"], rtol=0, atol=1e-6)
    mask = official[f"zsr_mask_f{factor}"][..., : 256 - 256 % factor]
    torch.testing.assert_close(op.measured_mask(x)[..., : 256 - 256 % factor].expand_as(mask), mask)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 7])
def test_decoupling_matrix_orthonormal_first_column_mean(factor):
    for official in (True, False):
        m = decoupling_matrix(factor, official=official)
        tol = 1e-6 if official else 1e-12
        torch.testing.assert_close(m.T @ m, torch.eye(factor, dtype=torch.float64), rtol=0, atol=tol)
        torch.testing.assert_close(m[:, 0], torch.full((factor,), factor**-0.5, dtype=torch.float64), rtol=0, atol=tol)
    # Helmert and TPDM agree except for the sign of column 1 at factor 3
    sign = torch.ones(factor, dtype=torch.float64)
    if factor == 3:
        sign[1] = -1
    helmert = decoupling_matrix(factor, official=False)
    torch.testing.assert_close(decoupling_matrix(factor) * sign, helmert, atol=1e-6, rtol=0)


@pytest.mark.parametrize("remainder", ["crop", "partial"])
@pytest.mark.parametrize("axis,shape", [(-1, (2, 3, 5, 23)), (2, (2, 1, 22, 6, 4)), (-3, (1, 2, 17, 3, 4))])
def test_adjoint_dot_product(remainder, axis, shape):
    op = ZAxisAverage(4, axis=axis, remainder=remainder)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    assert relative_adjoint_error(op, x, y, length=shape[axis]) < 1e-12


def test_forward_values_and_remainder():
    x = torch.arange(10, dtype=torch.float64).view(1, 1, 10)
    torch.testing.assert_close(ZAxisAverage(4)(x), torch.tensor([[[1.5, 5.5]]], dtype=torch.float64))
    partial = ZAxisAverage(4, remainder="partial")(x)
    torch.testing.assert_close(partial, torch.tensor([[[1.5, 5.5, 8.5]]], dtype=torch.float64))
    adj = ZAxisAverage(4, remainder="partial").adjoint(torch.tensor([[[4.0, 8.0, 2.0]]]), length=10)
    torch.testing.assert_close(adj, torch.tensor([[[1.0] * 4 + [2.0] * 4 + [1.0, 1.0]]]))
    adj = ZAxisAverage(4).adjoint(torch.tensor([[[4.0, 8.0]]]), length=10)
    torch.testing.assert_close(adj, torch.tensor([[[1.0] * 4 + [2.0] * 4 + [0.0, 0.0]]]))


@pytest.mark.parametrize("remainder", ["crop", "partial"])
def test_pseudo_inverse_is_moore_penrose(remainder):
    op = ZAxisAverage(3, axis=1, remainder=remainder, length=11)
    g = torch.Generator().manual_seed(1)
    y = torch.randn(2, op.measured_length(11), 5, generator=g, dtype=torch.float64)
    xd = op.pseudo_inverse(y)
    assert xd.shape == (2, 11, 5)
    torch.testing.assert_close(op(xd), y)
    # minimum norm least squares: equals CG on the normal equations started from zero
    torch.testing.assert_close(xd, super(ZAxisAverage, op).pseudo_inverse(y, max_iter=50, tol=1e-12))


@pytest.mark.parametrize("remainder", ["crop", "partial"])
def test_decouple_couple_roundtrip_and_measured_coefficients(remainder):
    op = ZAxisAverage(5, axis=-2, remainder=remainder)
    x = torch.randn(2, 1, 23, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = op.decouple(x)
    mask = op.measured_mask(x)
    assert mask.shape == (1, 1, 23, 1)
    kept = x.clone()
    if remainder == "crop":
        kept[:, :, 20:] = 0
    torch.testing.assert_close(op.couple(c), kept)
    # measured coefficient = sqrt(block length) * block mean
    lengths = torch.tensor([5.0] * 4 + ([3.0] if remainder == "partial" else []), dtype=torch.float64)
    measured = c[:, :, mask.flatten().bool()]
    # atol: the partial block of 3 uses TPDM's factor-3 matrix, whose entries are float32-rounded
    torch.testing.assert_close(measured, op(x) * lengths.sqrt().view(1, 1, -1, 1), rtol=0, atol=1e-6)
    # TPDM's projection keeps the measured coefficients of A_dagger y and the rest from another tensor
    other = torch.randn_like(x)
    proj = op.couple(op.decouple(op.pseudo_inverse(op(x), length=23)) * mask + op.decouple(other) * (1 - mask))
    torch.testing.assert_close(op(proj), op(x))


def test_dtypes_devices_and_autograd():
    op = ZAxisAverage(2).to(torch.float64)
    x = torch.randn(1, 1, 4, 8, dtype=torch.float32, requires_grad=True)
    y = op(x)
    assert y.dtype == torch.float32
    assert op.decouple(x).dtype == torch.float32
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.5))


def test_bad_input():
    with pytest.raises(ValueError, match="factor"):
        ZAxisAverage(0)
    with pytest.raises(ValueError, match="remainder"):
        ZAxisAverage(2, remainder="pad")
    with pytest.raises(ValueError, match="axis"):
        ZAxisAverage(2, axis=4)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="fewer than factor"):
        ZAxisAverage(5)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="length"):
        ZAxisAverage(2).adjoint(torch.zeros(1, 3), length=10)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ZAxisAverage(2)([1.0, 2.0])
