from __future__ import annotations

import pytest
import torch

from medgen.diffusion.guidance import (
    classifier_free_guidance,
    denoised_from_score,
    dps_gradient,
    hfs_data_consistency,
    kspace_replacement,
    operator_residual,
    zsr_decoupled_projection,
    zsr_residual,
)
from medgen.diffusion.samplers import langevin_corrector, reverse_diffusion_predictor
from medgen.diffusion.sde import VESDE
from medgen.physics.mri import CartesianMRI, fft2_tpdm, fft2c
from medgen.physics.zaxis import ZAxisAverage, decoupling_matrix
from tests.conftest import load_parity


def test_tweedie_is_posterior_mean_for_gaussian_data():
    # x0 ~ N(0, I), x = x0 + sigma z: score = -x / (1 + sigma^2), E[x0 | x] = x / (1 + sigma^2)
    x = torch.randn(2, 1, 4, 4)
    sigma = torch.tensor([0.5, 3.0])
    s2 = (1 + sigma**2).view(2, 1, 1, 1)
    torch.testing.assert_close(denoised_from_score(x, -x / s2, sigma), x / s2)
    torch.testing.assert_close(denoised_from_score(x, -x, 1.0, mean_scale=2.0), torch.zeros_like(x))


def test_dps_gradient_analytic_unsquared_batch_norm():
    x = torch.randn(3, 1, 5, 5, requires_grad=True)
    mask = (torch.rand(1, 1, 5, 5) > 0.5).float()
    y = torch.randn(3, 1, 5, 5)
    x0 = 0.7 * x
    grad = dps_gradient(x, x0, lambda x0: mask * x0 - y, weight=2.0)
    r = mask * 0.7 * x.detach() - y
    torch.testing.assert_close(grad, 2.0 * 0.7 * mask * r / r.norm())  # one norm over the whole minibatch
    with pytest.raises(ValueError, match="requires_grad|require grad"):
        dps_gradient(torch.zeros(1), torch.zeros(1), lambda v: v)


def test_tpdm_csmri_dps_parity_with_network():
    """TPDM's CS-MRI DPS closures (corrector then predictor) through the tiny official NCSN++ (about 1 s with one
    torch thread)."""
    from medgen.networks.convert import from_official

    tiny, d = load_parity("ncsnpp_tiny"), load_parity("ve_pc_step_tiny")
    c = d["dps_csmri"]
    net = from_official("score_sde_ncsnpp", tiny["state_dict"], tiny["config"])
    sde = VESDE(d["sde"]["sigma_min"], d["sde"]["sigma_max"], d["sde"]["N"])
    t = d["vec_t"]

    def score_fn(x, t):  # continuous VE: the network takes sigma(t) and returns the score
        return net(x, sde.sigma(t))

    def dps_step(update, x, noise):
        x = x.detach().requires_grad_()
        x_next, x_next_mean, score = update(x, t, sde, score_fn, noise=noise, return_score=True)
        x0_hat = denoised_from_score(x, score, sde.sigma(t))
        g = dps_gradient(x, x0_hat, lambda x0: fft2_tpdm(x0) * c["mask"] - c["y_kspace"], weight=c["dps_weight"])
        return (x_next - g).detach(), (x_next_mean - g).detach()

    def corrector(x, t, sde, score_fn, **kw):
        return langevin_corrector(x, t, sde, score_fn, d["snr"], **kw)

    x1, x1_mean = dps_step(corrector, d["x_in"], c["noises"][0])
    x2, x2_mean = dps_step(reverse_diffusion_predictor, x1, c["noises"][1])
    pairs = ((x1, "corrector_x"), (x1_mean, "corrector_x_mean"), (x2, "predictor_x"), (x2_mean, "predictor_x_mean"))
    for ours, ref in pairs:
        assert (ours - c[ref]).abs().max() <= 1e-5 * c[ref].abs().max(), ref


def test_operator_residual_and_hfs_data_consistency():
    d = load_parity("hfs_sde")
    op = CartesianMRI.from_hfs(d["atb_mask"], d["csm"])
    x = torch.randn(1, 2, 32, 32)
    y = op(torch.randn(1, 2, 32, 32))
    torch.testing.assert_close(operator_residual(op, y)(x), op(x) - y)
    score = torch.randn(1, 2, 32, 32)
    term = hfs_data_consistency(x, score, op, y, 2.5)
    g = op.adjoint(op(x) - y)
    torch.testing.assert_close(term, g / g.norm() * score.norm() * 2.5)
    assert hfs_data_consistency(x, score, op, op(x), 2.5).abs().max() == 0  # consistent data: no NaN
    with pytest.raises(TypeError, match="LinearOperator"):
        operator_residual(lambda v: v, y)


def test_kspace_replacement_single_and_multi_coil():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    truth = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
    mask = (torch.rand(8, 8) > 0.6).float()
    out = kspace_replacement(x, mask * fft2c(truth), mask)
    torch.testing.assert_close(mask * fft2c(out), mask * fft2c(truth))
    torch.testing.assert_close((1 - mask) * fft2c(out), (1 - mask) * fft2c(x))
    maps = torch.randn(1, 3, 8, 8, dtype=torch.complex64)
    maps = maps / torch.sqrt(torch.sum(maps.abs() ** 2, dim=1, keepdim=True))
    full = torch.ones(8, 8)
    out = kspace_replacement(x, full * fft2c(maps * truth), full, maps)
    torch.testing.assert_close(out, truth, atol=1e-5, rtol=1e-5)


def test_zsr_decoupled_projection_and_residual():
    op = ZAxisAverage(4, axis=-1)
    truth = torch.randn(3, 1, 6, 16)
    y = op(truth)
    y_dagger = op.pseudo_inverse(y, length=16)
    x = torch.randn(3, 1, 6, 16) * 5
    projected = zsr_decoupled_projection(x, y_dagger, op)
    torch.testing.assert_close(op(projected), y, atol=1e-5, rtol=1e-5)
    # TPDM's formula written out: blocks of 4 along z, v @ M, mask on the first coefficient of each block
    M = decoupling_matrix(4).float()
    dec = lambda v: (v.reshape(3, 1, 6, 4, 4) @ M).reshape(3, 1, 6, 16)  # noqa: E731
    cpl = lambda v: (v.reshape(3, 1, 6, 4, 4) @ torch.linalg.inv(M)).reshape(3, 1, 6, 16)  # noqa: E731
    m = torch.zeros(16)
    m[::4] = 1
    torch.testing.assert_close(projected, cpl(dec(y_dagger) * m + dec(x) * (1 - m)), atol=1e-5, rtol=1e-5)
    noise = torch.randn_like(x)
    sigma = torch.tensor([0.1, 0.2, 0.3])
    res = zsr_residual(x, y_dagger, op, sigma, noise)
    expected = cpl(dec(x) * m - (dec(y_dagger) + sigma.view(3, 1, 1, 1) * noise) * m)
    torch.testing.assert_close(res, expected, atol=1e-5, rtol=1e-5)
    assert zsr_residual(projected, y_dagger, op).abs().max() < 1e-5
    with pytest.raises(ValueError, match="noise"):
        zsr_residual(x, y_dagger, op, 0.5)


def test_classifier_free_guidance_first_channels():
    cond = torch.randn(2, 2, 4, 4, 4)
    uncond = torch.randn(2, 2, 4, 4, 4)
    out = classifier_free_guidance(cond, uncond, 3.0, channels=1)
    torch.testing.assert_close(out[:, :1], uncond[:, :1] + 3.0 * (cond[:, :1] - uncond[:, :1]))
    assert torch.equal(out[:, 1:], cond[:, 1:])  # learned-variance channel from the conditional pass
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 1.0), cond)
    with pytest.raises(ValueError, match="channels"):
        classifier_free_guidance(cond, uncond, 2.0, channels=3)
