from __future__ import annotations

import pytest
import torch

import medgen.diffusion.gaussian as gaussian_module
from medgen.diffusion.gaussian import GaussianDiffusion, space_timesteps
from medgen.diffusion.schedules import cosine_beta_schedule, linear_beta_schedule
from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example


@pytest.fixture(scope="module")
def wdm():
    return load_parity("wdm_diffusion_step")


def _wdm_diffusion():
    # WDM's create_gaussian_diffusion returns a SpacedDiffusion over all 1000 steps (betas recomputed from abar)
    return GaussianDiffusion(linear_beta_schedule(1000), "start_x", "fixed_large").respace(range(1000))


def test_wdm_schedule_parity(wdm):
    diffusion = _wdm_diffusion()
    assert torch.equal(diffusion.betas, wdm["betas"])
    assert torch.equal(diffusion.alphas_cumprod, wdm["alphas_cumprod"])
    assert torch.equal(diffusion.timestep_map, torch.arange(1000))


def test_wdm_p_sample_parity(wdm):
    p = wdm["p_sample"]
    diffusion = _wdm_diffusion()
    seen = []

    def standin(x, t):  # x0-prediction: the unclipped pred_xstart IS the network output
        seen.append(t.clone())
        assert torch.equal(x, p["x_t"])
        return p["pred_xstart_noclip"]

    out = diffusion.p_sample(standin, p["x_t"], p["t"], generator=torch.Generator().manual_seed(5))
    assert (out["sample"] - p["sample_noclip"]).abs().max() <= 1e-5
    assert torch.equal(out["pred_xstart"], p["pred_xstart_noclip"])
    assert torch.equal(seen[0], p["t"])

    def wavelet_clip(coeffs):  # WDM's process_xstart: IDWT (LLL*3) -> clamp(-1, 1) -> DWT (LLL/3)
        return haar_dwt3d(haar_idwt3d(coeffs, lll_scale=3.0).clamp(-1, 1), lll_scale=3.0)

    out = diffusion.p_sample(
        standin, p["x_t"], p["t"], denoised_fn=wavelet_clip, generator=torch.Generator().manual_seed(5)
    )
    assert (out["sample"] - p["sample_clip"]).abs().max() <= 1e-5
    assert (out["pred_xstart"] - p["pred_xstart_clip"]).abs().max() <= 1e-5


def test_q_sample_and_posterior_closed_forms():
    diffusion = GaussianDiffusion(linear_beta_schedule(100))
    x0 = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 57])
    abar = diffusion.alphas_cumprod[t].view(2, 1, 1, 1)
    x_t = diffusion.q_sample(x0, t, noise)
    torch.testing.assert_close(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    # posterior of x_{t-1} by Bayes: prior N(sqrt(abar_prev) x0, 1 - abar_prev), likelihood N(sqrt(alpha) x, beta)
    k = 57
    beta, abar_prev = diffusion.betas[k], diffusion.alphas_cumprod[k - 1]
    prec = 1 / (1 - abar_prev) + (1 - beta) / beta
    mean = (abar_prev.sqrt() * x0[1] / (1 - abar_prev) + (1 - beta).sqrt() * x_t[1] / beta) / prec
    m, v, _ = diffusion.q_posterior_mean_variance(x0, x_t, t)
    torch.testing.assert_close(m[1], mean)
    torch.testing.assert_close(v[1].flatten()[0], 1 / prec)
    torch.testing.assert_close(diffusion.predict_xstart_from_eps(x_t, t, noise), x0)
    torch.testing.assert_close(diffusion.predict_eps_from_xstart(x_t, t, x0), noise)


def test_epsilon_model_p_sample_and_no_noise_at_t0():
    diffusion = GaussianDiffusion(cosine_beta_schedule(50), "epsilon", "fixed_small")
    x0 = torch.rand(2, 1, 3, 3) * 2 - 1
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 30])
    x_t = diffusion.q_sample(x0, t, eps)
    out = diffusion.p_sample(lambda x, s: eps, x_t, t, noise=torch.ones_like(x0))
    torch.testing.assert_close(out["pred_xstart"], x0, atol=1e-4, rtol=1e-4)
    m, _, log_v = diffusion.q_posterior_mean_variance(x0, x_t, t)
    torch.testing.assert_close(out["sample"][0], m[0], atol=1e-5, rtol=1e-5)  # t == 0: the mean, no noise
    torch.testing.assert_close(out["sample"][1], m[1] + torch.exp(0.5 * log_v[1]), atol=1e-4, rtol=1e-4)
    out = diffusion.p_sample(lambda x, s: eps, x_t, t, clip_denoised=True, noise=torch.zeros_like(x0))
    assert out["pred_xstart"].abs().max() <= 1


def test_learned_range_variance():
    diffusion = GaussianDiffusion(cosine_beta_schedule(10), "epsilon", "learned_range")
    x = torch.randn(1, 2, 3, 3)
    t = torch.tensor([5])
    for v, expected in ((-1.0, diffusion.posterior_log_variance_clipped[5]), (1.0, torch.log(diffusion.betas[5]))):
        out = diffusion.p_mean_variance(lambda x, s: torch.cat([torch.zeros_like(x), torch.full_like(x, v)], 1), x, t)
        torch.testing.assert_close(out["log_variance"], torch.full_like(x, expected.item()))
    with pytest.raises(ValueError, match="4 channels"):
        diffusion.p_mean_variance(lambda x, s: x, x, t)



def test_learned_and_fixed_variances():
    """``learned``: the extra channels are log sigma^2; ``fixed_large``: beta_t, with the posterior variance at t=0."""
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    t = torch.tensor([0, 6])
    learned = GaussianDiffusion(cosine_beta_schedule(10), "epsilon", "learned")
    log_var = torch.randn_like(x)
    out = learned.p_mean_variance(lambda x, s: torch.cat([torch.zeros_like(x), log_var], 1), x, t)
    torch.testing.assert_close(out["log_variance"], log_var)
    torch.testing.assert_close(out["variance"], log_var.exp())
    large = GaussianDiffusion(cosine_beta_schedule(10), "epsilon", "fixed_large")
    out = large.p_mean_variance(lambda x, s: torch.zeros_like(x), x, t)
    torch.testing.assert_close(out["variance"][0].flatten()[0], large.posterior_variance[1])
    torch.testing.assert_close(out["variance"][1].flatten()[0], large.betas[6])
    small = GaussianDiffusion(cosine_beta_schedule(10), "epsilon", "fixed_small")
    out = small.p_mean_variance(lambda x, s: torch.zeros_like(x), x, t)
    torch.testing.assert_close(out["variance"][1].flatten()[0], small.posterior_variance[6])


def test_previous_x_mean_type():
    """A ``previous_x`` model outputs the posterior mean itself; ``pred_xstart`` is the x0 with that posterior mean."""
    diffusion = GaussianDiffusion(linear_beta_schedule(20), "previous_x", "fixed_small")
    x0 = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([9])
    x_t = diffusion.q_sample(x0, t, torch.randn_like(x0))
    mean, _, _ = diffusion.q_posterior_mean_variance(x0, x_t, t)
    out = diffusion.p_mean_variance(lambda x, s: mean, x_t, t)
    torch.testing.assert_close(out["mean"], mean)
    torch.testing.assert_close(out["pred_xstart"], x0)


def test_ddim_eta_one_has_the_posterior_variance():
    """DDIM's sigma at eta = 1 is the DDPM posterior standard deviation (Song et al. 2021, eq. 16)."""
    diffusion = GaussianDiffusion(linear_beta_schedule(30), "epsilon", "fixed_small")
    x0 = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    eps = torch.randn_like(x0)
    noise = torch.randn_like(x0)
    t = torch.tensor([12])
    x_t = diffusion.q_sample(x0, t, eps)
    deterministic = diffusion.ddim_sample(lambda x, s: eps, x_t, t, eta=1.0, noise=torch.zeros_like(x0))["sample"]
    noisy = diffusion.ddim_sample(lambda x, s: eps, x_t, t, eta=1.0, noise=noise)["sample"]
    torch.testing.assert_close(noisy - deterministic, diffusion.posterior_variance[12].sqrt() * noise)


def test_respacing_and_ddim():
    assert space_timesteps(100, "ddim10") == list(range(0, 100, 10))
    assert space_timesteps(300, [10, 15, 20])[:3] == [0, 11, 22]
    assert len(space_timesteps(300, "10,15,20")) == 45
    with pytest.raises(ValueError, match="cannot divide"):
        space_timesteps(10, [20])
    base = GaussianDiffusion(linear_beta_schedule(100), "epsilon", "fixed_small")
    keep = space_timesteps(100, "ddim10")
    spaced = base.respace(keep)
    assert spaced.num_timesteps == 10
    torch.testing.assert_close(spaced.alphas_cumprod, base.alphas_cumprod[keep])
    seen = []
    x0 = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = torch.tensor([7])
    x_t = spaced.q_sample(x0, t, eps)

    def model(x, s):
        seen.append(int(s))
        return eps

    out = spaced.ddim_sample(model, x_t, t, eta=0.0)
    assert seen == [70]  # the network sees the original timestep
    abar_prev = base.alphas_cumprod[60]
    torch.testing.assert_close(out["sample"], abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps)
    # respacing a respaced process composes the timestep maps; rescale_timesteps scales to 1000
    twice = spaced.respace([0, 5, 9])
    assert twice.timestep_map.tolist() == [0, 50, 90]
    rescaled = GaussianDiffusion(linear_beta_schedule(100), rescale_timesteps=True).respace(keep)
    assert rescaled.model_timesteps(torch.tensor([7])).item() == pytest.approx(700.0)


def test_validation():
    with pytest.raises(ValueError, match="model_mean_type"):
        GaussianDiffusion(cosine_beta_schedule(10), "noise")
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(torch.tensor([0.1, 1.5]))
    diffusion = GaussianDiffusion(cosine_beta_schedule(10))
    with pytest.raises(ValueError, match="integer tensor"):
        diffusion.q_sample(torch.zeros(2, 1, 2, 2), torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match="use_timesteps"):
        diffusion.respace([20])


def test_module_docstring_example_runs():
    """The example runs as written; with ``x0 = 0`` predicted, the last (noise-free) posterior mean is exactly 0."""
    x = run_docstring_example(gaussian_module.__doc__, "medgen.diffusion.gaussian")["x"]
    assert x.shape == (1, 8, 4, 4, 4) and torch.equal(x, torch.zeros_like(x))
