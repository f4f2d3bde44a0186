from __future__ import annotations

import math

import pytest
import torch

from medgen.diffusion.gaussian import GaussianDiffusion
from medgen.diffusion.losses import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    edm_loss,
    hybrid_loss,
    normal_kl,
    pachify,
    patch_edm_loss,
    score_matching_loss,
    vb_terms_bpd,
    wavelet_diffusion_loss,
)
from medgen.diffusion.schedules import cosine_beta_schedule, linear_beta_schedule
from medgen.diffusion.sde import HFSSDE, VESDE, VPSDE
from tests.conftest import load_parity


def test_wdm_wavelet_loss_parity():
    d = load_parity("wdm_diffusion_step")
    tr = d["train"]
    diffusion = GaussianDiffusion(linear_beta_schedule(1000), "start_x", "fixed_large").respace(range(1000))

    def standin(x_t, t):  # returns the recorded network output for the recorded x_t
        assert (x_t - tr["x_t"]).abs().max() <= 1e-5 and torch.equal(t, tr["t"])
        return tr["model_output"]

    out = wavelet_diffusion_loss(diffusion, standin, tr["x_start"], tr["t"], generator=torch.Generator().manual_seed(7))
    assert (out["target"] - tr["x_start_dwt"]).abs().max() <= 1e-5
    assert (out["mse_wav"] - tr["mse_wav_per_channel"]).abs().max() <= 1e-5
    assert abs(out["loss"].item() - tr["loss"].item()) <= 1e-5
    with pytest.raises(ValueError, match="x0-predicting"):
        wavelet_diffusion_loss(GaussianDiffusion(linear_beta_schedule(1000)), standin, tr["x_start"], tr["t"])


def test_padis_pachify_parity():
    p = load_parity("padis_patch_positions")["train_pachify"]
    patches, positions, i, j = pachify(p["images"], p["patch_size"], torch.Generator().manual_seed(p["seed"]))
    assert torch.equal(i, p["i"]) and torch.equal(j, p["j"])
    assert torch.equal(patches, p["patches"])
    assert torch.equal(positions, p["images_pos"])
    whole, pos, i, _ = pachify(p["images"], 20)
    assert torch.equal(whole, p["images"]) and torch.equal(i, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="patch_size"):
        pachify(p["images"], 21)


def test_edm_loss_formula_and_draw_order():
    images = torch.randn(3, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    loss = edm_loss(lambda x, s: 0.5 * x, images, generator=g)
    g = torch.Generator().manual_seed(0)
    sigma = (torch.randn(3, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    n = torch.randn(3, 1, 4, 4, generator=g)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(loss, weight * (0.5 * (images + sigma * n) - images) ** 2)
    # the ideal denoiser of a point mass has zero loss
    assert edm_loss(lambda x, s: images, images, sigma=torch.ones(3)).abs().max() == 0



def test_patch_edm_loss_is_pachify_then_edm_loss():
    """PaDIS's Patch_EDMLoss: corners, then sigma, then noise from one generator; the net gets the patch positions."""
    images = torch.randn(2, 1, 12, 12)
    seen = {}

    def net(x, sigma, x_pos=None, class_labels=None):
        seen["x_pos"], seen["class_labels"] = x_pos, class_labels
        return 0.5 * x

    labels = torch.tensor([1, 0])
    loss = patch_edm_loss(net, images, 5, class_labels=labels, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    patches, positions, _, _ = pachify(images, 5, g)
    expected = edm_loss(lambda x, s: 0.5 * x, patches, generator=g)
    torch.testing.assert_close(loss, expected)
    assert loss.shape == (2, 1, 5, 5)
    assert torch.equal(seen["x_pos"], positions) and seen["class_labels"] is labels


@pytest.mark.parametrize("sde", [VESDE(0.01, 50.0, 100), VPSDE(0.1, 20.0, 100)])
def test_score_matching_optimal_score_for_point_mass(sde):
    # data = a single point x0: the exact score of p_t is -(x - mean) / std^2 and the loss is 0
    x0 = torch.randn(2, 1, 4, 4)

    def exact(x, t):
        mean, std = sde.marginal_prob(x0, t)
        return -(x - mean) / std.view(-1, 1, 1, 1) ** 2

    assert score_matching_loss(sde, exact, x0, generator=torch.Generator().manual_seed(1)).item() < 1e-8
    t = torch.tensor([0.5, 0.2])
    z = torch.randn_like(x0)
    loss = score_matching_loss(sde, lambda x, t: torch.zeros_like(x), x0, t=t, noise=z)
    torch.testing.assert_close(loss, (z**2).mean())


def test_hfs_score_matching_official_formula():
    d = load_parity("hfs_sde")
    sde = HFSSDE(d["train_mask"])
    x0 = d["x0"]
    g = torch.Generator().manual_seed(9)
    w = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    score_fn = lambda x, t: w * x * t.view(-1, 1, 1, 1)  # noqa: E731
    loss = score_matching_loss(sde, score_fn, x0, generator=g)
    # official losses.get_sde_loss_fn: t = rand*(1-eps)+eps, then z; x_t = mean + std*Mhat(z)
    g = torch.Generator().manual_seed(9)
    t = torch.rand(1, generator=g) * (1 - 1e-5) + 1e-5
    z = torch.randn(1, 2, 32, 32, generator=g)
    mean, std = sde.marginal_prob(x0, t)
    x_t = mean + std.view(-1, 1, 1, 1) * sde.project(z)
    expected = torch.mean((std.view(-1, 1, 1, 1) * sde.project(score_fn(x_t, t)) + sde.project(z)) ** 2)
    torch.testing.assert_close(loss, expected)


def test_normal_kl_matches_torch_distributions():
    m1, m2 = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    lv1, lv2 = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, torch.exp(0.5 * lv1)), torch.distributions.Normal(m2, torch.exp(0.5 * lv2))
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)


def test_discretized_gaussian_log_likelihood():
    x = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
    means = torch.zeros_like(x)
    log_scales = torch.full_like(x, math.log(0.5))
    exact = torch.log(torch.special.ndtr((x + 1 / 255) / 0.5) - torch.special.ndtr((x - 1 / 255) / 0.5))
    ll = discretized_gaussian_log_likelihood(x, means, log_scales)
    torch.testing.assert_close(ll, exact, atol=0, rtol=2e-3)  # the tanh CDF approximation
    edges = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    ll = discretized_gaussian_log_likelihood(edges, zeros, zeros)
    expected = torch.log(torch.special.ndtr(torch.tensor([-1 + 1 / 255, -1 + 1 / 255], dtype=torch.float64)))
    torch.testing.assert_close(ll, expected, atol=1e-3, rtol=0)
    grid = torch.linspace(-5, 5, 101)
    assert (approx_standard_normal_cdf(grid) - torch.special.ndtr(grid)).abs().max() < 3e-4


def test_vb_terms_and_hybrid_loss():
    diffusion = GaussianDiffusion(cosine_beta_schedule(20), "start_x", "learned_range")
    x0 = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 2 - 1
    t = torch.tensor([5, 12])
    x_t = diffusion.q_sample(x0, t, torch.randn_like(x0))
    exact = torch.cat([x0, -torch.ones_like(x0)], 1)  # true x0 and v = -1 (posterior variance): KL = 0
    torch.testing.assert_close(vb_terms_bpd(diffusion, exact, x0, x_t, t), torch.zeros(2, dtype=torch.float64))
    largest = torch.cat([x0, torch.ones_like(x0)], 1)  # v = +1: variance beta_t
    log_post, log_beta = diffusion.posterior_log_variance_clipped[t], torch.log(diffusion.betas[t])
    expected = 0.5 * (-1 + log_beta - log_post + torch.exp(log_post - log_beta)) / math.log(2)
    torch.testing.assert_close(vb_terms_bpd(diffusion, largest, x0, x_t, t), expected)
    t0 = torch.tensor([0, 0])
    nll = vb_terms_bpd(diffusion, exact, x0, diffusion.q_sample(x0, t0, torch.zeros_like(x0)), t0)
    assert torch.all(nll > 0)

    eps_diffusion = GaussianDiffusion(cosine_beta_schedule(20), "epsilon", "learned_range")
    noise = torch.randn(2, 1, 4, 4)
    out_eps = (noise + 0.1).requires_grad_()
    out_var = torch.zeros(2, 1, 4, 4, requires_grad=True)
    terms = hybrid_loss(eps_diffusion, lambda x, s: torch.cat([out_eps, out_var], 1), x0.float(), t, noise=noise)
    torch.testing.assert_close(terms["mse"], torch.full((2,), 0.01))
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    terms["vb"].sum().backward()
    assert out_eps.grad is None or out_eps.grad.abs().max() == 0  # the bound trains only the variance
    assert out_var.grad.abs().max() > 0
    rescaled = hybrid_loss(
        eps_diffusion,
        lambda x, s: torch.cat([out_eps, out_var], 1).detach(),
        x0.float(),
        t,
        noise=noise,
        rescale_vb=True,
    )
    torch.testing.assert_close(rescaled["vb"], terms["vb"].detach() * 20 / 1000)
    fixed = GaussianDiffusion(cosine_beta_schedule(20), "epsilon", "fixed_small")
    assert "vb" not in hybrid_loss(fixed, lambda x, s: noise, x0.float(), t, noise=noise)


def test_hfs_score_matching_parity_with_network():
    from medgen.networks.convert import from_official

    d = load_parity("hfs_sde")
    net = from_official("score_sde_ddpm", d["model_state_dict"], d["config"])
    sde = HFSSDE(d["train_mask"])

    def score_fn(x, t):  # network label = the marginal std
        return net(x, sde.marginal_prob(torch.zeros_like(x), t)[1])

    with torch.no_grad():
        loss = score_matching_loss(sde, score_fn, d["x0"], generator=torch.Generator().manual_seed(d["loss"]["seed"]))
    assert abs(loss.item() - d["loss"]["value"].item()) <= 1e-5 * d["loss"]["value"].item()
