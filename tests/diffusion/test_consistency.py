"""medgen.diffusion.consistency: DPS, normalised gradients, hard projections (k-space replacement, TPDM's decoupled
projection), range-null space and RePaint, each on any LinearOperator."""

from __future__ import annotations

import math

import pytest
import torch

from medgen.diffusion.consistency import (
    DPS,
    HardProjection,
    NormalizedGradient,
    RangeNullSpace,
    RePaint,
    StepContext,
    group_norms,
)
from medgen.diffusion.priors import tweedie
from medgen.diffusion.samplers import langevin_corrector, reverse_diffusion_predictor
from medgen.diffusion.sde import VESDE
from medgen.physics.base import LinearOperator
from medgen.physics.mri import CartesianMRI, fft2c
from medgen.physics.zaxis import ZAxisAverage, decoupling_matrix
from tests.conftest import load_parity


class Masking(LinearOperator):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self.mask * x

    def adjoint(self, y):
        return self.mask * y


def test_group_norms():
    t = torch.arange(24.0).reshape(2, 3, 4)
    assert group_norms(t, "batch") == torch.linalg.vector_norm(t)
    torch.testing.assert_close(group_norms(t, "item").flatten(), torch.linalg.vector_norm(t.reshape(2, -1), dim=1))
    torch.testing.assert_close(group_norms(t, 1), torch.linalg.vector_norm(t, dim=2, keepdim=True))
    z = torch.complex(t, -t)
    torch.testing.assert_close(group_norms(z, "batch"), math.sqrt(2) * torch.linalg.vector_norm(t))


def test_dps_analytic_unsquared_norms():
    x = torch.randn(3, 1, 5, 5, requires_grad=True)
    mask = (torch.rand(1, 1, 5, 5) > 0.5).float()
    y = torch.randn(3, 1, 5, 5)
    x0 = 0.7 * x
    (out,) = DPS(Masking(mask), y, weight=2.0).apply(StepContext(x_in=x, x0_hat=x0), torch.zeros(3, 1, 5, 5))
    r = mask * 0.7 * x.detach() - y
    torch.testing.assert_close(-out, 2.0 * 0.7 * mask * r / r.norm())  # one norm over the whole minibatch
    x0 = 0.7 * x
    (item,) = DPS(Masking(mask), y, weight=2.0, norm="item").apply(StepContext(x_in=x, x0_hat=x0), torch.zeros(3, 1, 5, 5))
    norms = torch.linalg.vector_norm(r.reshape(3, -1), dim=1).view(3, 1, 1, 1)
    torch.testing.assert_close(-item, 2.0 * 0.7 * mask * r / norms)  # the sum of per-item norms
    with pytest.raises(RuntimeError, match="requires grad"):
        DPS(Masking(mask), y).apply(StepContext(x_in=x.detach(), x0_hat=x0.detach()), x.detach())
    with pytest.raises(ValueError, match="weight"):
        DPS(Masking(mask), y, weight=float("nan"))
    with pytest.raises(TypeError, match="LinearOperator"):
        DPS(lambda v: v, y)


def test_tpdm_csmri_dps_parity_with_network():
    """TPDM's CS-MRI DPS closures (corrector then predictor) through the tiny official NCSN++, written with the
    primitive sub-steps and the DPS term (the perpendicular inferer's parity test runs the same through pc_step)."""
    from medgen.networks.convert import from_official

    tiny, d = load_parity("ncsnpp_tiny"), load_parity("ve_pc_step_tiny")
    c = d["dps_csmri"]
    net = from_official("score_sde_ncsnpp", tiny["state_dict"], tiny["config"])
    sde = VESDE(d["sde"]["sigma_min"], d["sde"]["sigma_max"], d["sde"]["N"])
    t = d["vec_t"]
    dps = DPS(CartesianMRI(c["mask"], convention="tpdm", real_image=True), c["y_kspace"], c["dps_weight"])

    def score_fn(x, t):  # continuous VE: the network takes sigma(t) and returns the score
        return net(x, sde.sigma(t))

    def dps_step(update, x, noise):
        x = x.detach().requires_grad_()
        x_next, x_next_mean, score = update(x, t, sde, score_fn, noise=noise, return_score=True)
        context = StepContext(x_in=x, x0_hat=tweedie(x, score, sde.sigma(t)))
        return dps.apply(context, x_next, x_next_mean)

    def corrector(x, t, sde, score_fn, **kw):
        return langevin_corrector(x, t, sde, score_fn, d["snr"], **kw)

    x1, x1_mean = dps_step(corrector, d["x_in"], c["noises"][0])
    x2, x2_mean = dps_step(reverse_diffusion_predictor, x1, c["noises"][1])
    pairs = ((x1, "corrector_x"), (x1_mean, "corrector_x_mean"), (x2, "predictor_x"), (x2_mean, "predictor_x_mean"))
    for ours, ref in pairs:
        assert (ours - c[ref]).abs().max() <= 1e-5 * c[ref].abs().max(), ref


def test_normalized_gradient_hfs_and_padis_forms():
    d = load_parity("hfs_sde")
    op = CartesianMRI.from_hfs(d["atb_mask"], d["csm"])
    x = torch.randn(1, 2, 32, 32)
    y = op(torch.randn(1, 2, 32, 32))
    score = torch.randn(1, 2, 32, 32)
    hfs = NormalizedGradient(op, y, 2.5, reference="score")
    g = op.adjoint(op(x) - y)
    torch.testing.assert_close(hfs.guidance(x, score), -(g / g.norm() * score.norm() * 2.5))
    consistent = NormalizedGradient(op, op(x), 2.5)
    assert consistent.guidance(x, score).abs().max() == 0  # consistent data: no NaN
    assert hfs.apply(StepContext(x_in=x), x)[0] is x  # the score form acts inside the update only
    padis = NormalizedGradient(op, y, 0.3, reference="residual")
    (out,) = padis.apply(StepContext(x_in=x, step_size=4.0), x)
    r = y - op(x)
    torch.testing.assert_close(out, x + 0.3 * 4.0 * op.adjoint(r) / r.norm())
    assert padis.guidance(x, score) is None


def test_hard_projection_is_kspace_replacement():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    truth = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    mask = (torch.rand(8, 8) > 0.6).float()
    single = CartesianMRI(mask)
    out = HardProjection(single, single(truth)).project(x)
    torch.testing.assert_close(mask * fft2c(out), mask * fft2c(truth))
    torch.testing.assert_close((1 - mask) * fft2c(out), (1 - mask) * fft2c(x))
    maps = torch.randn(1, 3, 8, 8, dtype=torch.complex64)
    maps = maps / torch.sqrt(torch.sum(maps.abs() ** 2, dim=1, keepdim=True))
    full = CartesianMRI(torch.ones(8, 8), maps)
    torch.testing.assert_close(HardProjection(full, full(truth)).project(x), truth, atol=1e-5, rtol=1e-5)


def test_hard_projection_is_tpdm_decoupled_projection_and_dps_is_its_residual():
    op = ZAxisAverage(4, axis=-1)
    truth = torch.randn(3, 1, 6, 16)
    y = op(truth)
    y_dagger = op.pseudo_inverse(y, length=16)
    x = torch.randn(3, 1, 6, 16) * 5
    projected = HardProjection(op, y).project(x)
    torch.testing.assert_close(op(projected), y, atol=1e-5, rtol=1e-5)
    # TPDM's formula written out: blocks of 4 along z, v @ M, mask on the first coefficient of each block
    M = decoupling_matrix(4).float()
    dec = lambda v: (v.reshape(3, 1, 6, 4, 4) @ M).reshape(3, 1, 6, 16)  # noqa: E731
    cpl = lambda v: (v.reshape(3, 1, 6, 4, 4) @ torch.linalg.inv(M)).reshape(3, 1, 6, 16)  # noqa: E731
    m = torch.zeros(16)
    m[::4] = 1
    torch.testing.assert_close(projected, cpl(dec(y_dagger) * m + dec(x) * (1 - m)), atol=1e-5, rtol=1e-5)
    # TPDM's decoupled residual has sqrt(factor) times the norm of A x - y: the inferer scales the DPS weight
    tpdm_residual = cpl(dec(x) * m - dec(y_dagger) * m)
    torch.testing.assert_close(tpdm_residual.norm(), 2.0 * (op(x) - y).norm(), rtol=1e-5, atol=0)
    # TPDM's noisy target: the measurement of noise at level sigma, y + sigma A z, has the official law
    x_in = x.clone().requires_grad_()
    g = torch.Generator().manual_seed(0)
    noisy = DPS(op, y, 1.0, noisy_target=True)
    (moved,) = noisy.apply(StepContext(x_in=x_in, x0_hat=x_in * 1.0, sigma=torch.full((3,), 0.5), generator=g), x)
    z = torch.empty_like(x).normal_(generator=torch.Generator().manual_seed(0))
    r = op(x) - (y + op(0.5 * z))
    torch.testing.assert_close(moved, x - op.adjoint(r) / r.norm(), atol=1e-5, rtol=1e-5)


def test_range_null_space_and_repaint():
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., :3] = 1
    known = torch.rand(2, 1, 6, 6)
    op = Masking(mask)
    x0 = torch.randn(2, 1, 6, 6)
    term = RangeNullSpace(op, op(known))
    torch.testing.assert_close(term.denoised(x0), mask * known + (1 - mask) * x0)
    assert term.apply(StepContext(x_in=x0), x0)[0] is x0
    repaint = RePaint(mask, known)
    state = torch.randn(2, 1, 6, 6)
    (clean,) = repaint.apply(StepContext(x_in=state), state)
    torch.testing.assert_close(clean, mask * known + (1 - mask) * state)
    (noised,) = repaint.apply(StepContext(x_in=state, noise_to_level=lambda v: v + 10.0), state)
    torch.testing.assert_close(noised, mask * (known + 10) + (1 - mask) * state)
    assert repaint.restrict(slice(1, 2)).known.shape[0] == 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RePaint(mask * 2, known)


def test_conjugate_gradient_denoised_is_dds_krylov_correction():
    from medgen.diffusion.consistency import ConjugateGradientDenoised
    from medgen.physics.ct import ParallelBeamCT
    from medgen.solvers.cg import cg_solve

    op = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32)
    g = torch.Generator().manual_seed(0)
    truth, x0 = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    y = op(truth)
    residuals = []
    for iterations in (1, 3, 10):
        corrected = ConjugateGradientDenoised(op, y, iterations).denoised(x0)
        residuals.append(torch.linalg.vector_norm(op(corrected) - y).item())
    assert residuals[0] > residuals[1] > residuals[2]  # measured: the residual falls with every step
    # it is CG on A^H A delta = A^H (y - A x0) from delta = 0, per batch item (item 1 alone gives the same)
    expected = x0 + cg_solve(op.normal, op.adjoint(y - op(x0)), max_iter=3, tol=1e-30).x
    alone = ConjugateGradientDenoised(op, y[1:], 3).denoised(x0[1:])
    assert torch.allclose(ConjugateGradientDenoised(op, y, 3).denoised(x0), expected, atol=1e-5)
    assert torch.allclose(alone, expected[1:], atol=1e-5)
    # the state itself is left alone; the correction only lives in the range of A^H
    state = torch.randn(2, 1, 16, 16, generator=g)
    assert ConjugateGradientDenoised(op, y, 3).apply(StepContext(x_in=state), state)[0] is state
    with pytest.raises(ValueError, match="iterations"):
        ConjugateGradientDenoised(op, y, 0)


def test_ddim_predictor_denoised_hook_keeps_the_network_noise():
    from medgen.diffusion.samplers import ddim_predictor

    sde = VESDE(0.01, 10.0, 10)
    g = torch.Generator().manual_seed(3)
    x, score = torch.randn(1, 1, 8, 8, generator=g), torch.randn(1, 1, 8, 8, generator=g)
    t = torch.tensor(0.6)
    shift = torch.full_like(x, 0.25)
    _, plain = ddim_predictor(x, t, sde, lambda *_: score, eta=0.0)
    _, hooked = ddim_predictor(x, t, sde, lambda *_: score, eta=0.0, denoised=lambda x0: x0 + shift)
    assert torch.allclose(hooked - plain, shift, atol=1e-5)  # x0 moved, eps (hence the rest) unchanged
