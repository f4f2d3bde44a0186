"""medgen.diffusion.priors: the D(x, sigma) contract, VE <-> VP adapters, epsilon networks under DDPM schedules
(medgen's and MONAI's), classifier-free guidance, against the exact posterior mean of Gaussian data.

Data ``x0 ~ N(MU, S0^2)`` per pixel. VE: ``x = x0 + sigma n`` has score ``-(x - MU) / (S0^2 + sigma^2)`` and
``E[x0 | x] = MU + S0^2 (x - MU) / (S0^2 + sigma^2)``. VP: ``x = m x0 + s n`` with ``m = sqrt(1 - s^2)`` has score
``-(x - m MU) / (m^2 S0^2 + s^2)`` and ``E[x0 | x] = MU + m S0^2 (x - m MU) / (m^2 S0^2 + s^2)``.
"""

from __future__ import annotations

import pytest
import torch

import medgen.diffusion.priors as priors_module
from medgen.diffusion.gaussian import GaussianDiffusion
from medgen.diffusion.priors import (
    ClassifierFreeGuidance,
    DenoiserPrior,
    EpsilonPrior,
    Prior,
    ScorePrior,
    as_noise_model,
    as_prior,
    classifier_free_guidance,
    tweedie,
)
from medgen.diffusion.schedules import linear_beta_schedule
from tests.inferers.conftest import run_docstring_example

MU, S0 = 0.4, 0.3


def _item(sigma, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))


def ve_score(x, sigma, mu=MU):
    return -(x - mu) / (S0**2 + _item(sigma, x) ** 2)


def ve_mean(x, sigma, mu=MU):
    return mu + S0**2 * (x - mu) / (S0**2 + _item(sigma, x) ** 2)


def vp_score(x, s, mu=MU):
    s = _item(s, x)
    m = torch.sqrt(1 - s**2)
    return -(x - m * mu) / (m**2 * S0**2 + s**2)


def vp_mean(x, s, mu=MU):
    s = _item(s, x)
    m = torch.sqrt(1 - s**2)
    return mu + m * S0**2 * (x - m * mu) / (m**2 * S0**2 + s**2)


def _state(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_score_and_denoiser_priors_agree_with_the_exact_posterior_mean():
    x = _state()
    sigma = torch.tensor([0.05, 0.7, 4.0], dtype=torch.float64)
    score_prior = ScorePrior(ve_score)
    denoiser_prior = DenoiserPrior(ve_mean)
    torch.testing.assert_close(score_prior.denoise(x, sigma), ve_mean(x, sigma), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(denoiser_prior.score(x, sigma), ve_score(x, sigma), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(tweedie(x, ve_score(x, sigma), sigma), ve_mean(x, sigma), rtol=1e-12, atol=1e-12)
    # a float sigma is shared by the batch
    torch.testing.assert_close(score_prior.denoise(x, 0.7), ve_mean(x, 0.7), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["score", "denoiser"])
def test_ve_prior_seen_by_a_vp_sampler_is_the_exact_vp_prior(kind):
    x = _state(1)
    s = torch.tensor([0.02, 0.5, 0.97], dtype=torch.float64)
    ve = ScorePrior(ve_score) if kind == "score" else DenoiserPrior(ve_mean)
    vp = as_noise_model(ve, "vp")
    assert vp.noise_model == "vp" and vp.network is ve.network
    torch.testing.assert_close(vp.denoise(x, s), vp_mean(x, s), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vp.score(x, s), vp_score(x, s), rtol=1e-10, atol=1e-12)
    assert as_noise_model(vp, "ve") is ve  # the round trip unwraps, and a prior of the right model is itself
    assert as_noise_model(ve, "ve") is ve


@pytest.mark.parametrize("kind", ["score", "denoiser"])
def test_vp_prior_seen_by_a_ve_sampler_is_the_exact_ve_prior(kind):
    x = _state(2) * 3
    sigma = torch.tensor([0.01, 1.0, 15.0], dtype=torch.float64)
    vp = ScorePrior(vp_score, noise_model="vp") if kind == "score" else DenoiserPrior(vp_mean, noise_model="vp")
    ve = as_noise_model(vp, "ve")
    torch.testing.assert_close(ve.denoise(x, sigma), ve_mean(x, sigma), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ve.score(x, sigma), ve_score(x, sigma), rtol=1e-10, atol=1e-12)
    # and the VE view of the VP view of it is the VP prior's own law again
    torch.testing.assert_close(as_noise_model(ve, "vp").denoise(x, 0.5), vp_mean(x, 0.5), rtol=1e-12, atol=1e-12)


def exact_epsilon(alphas_cumprod: torch.Tensor, calls: list | None = None, extra_channels: int = 0):
    """The exact epsilon network of the Gaussian data at integer timesteps: ``(x - m_t E[x0 | x]) / s_t``."""
    stds = torch.sqrt(1 - alphas_cumprod.double())

    def network(x, t):
        if calls is not None:
            calls.append(t.clone())
        s = stds[t].to(x.dtype)
        eps = (x - torch.sqrt(1 - _item(s, x) ** 2) * vp_mean(x, s)) / _item(s, x)
        return torch.cat([eps, torch.full_like(eps[:, :extra_channels], 7.0)], dim=1) if extra_channels else eps

    return network


def test_epsilon_prior_with_a_monai_ddpm_scheduler_is_exact_at_its_timesteps():
    from monai.networks.schedulers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, schedule="linear_beta")
    calls: list[torch.Tensor] = []
    prior = EpsilonPrior(exact_epsilon(scheduler.alphas_cumprod, calls, extra_channels=2), scheduler)
    assert prior.noise_model == "vp"
    low, high = prior.sigma_range
    assert low == pytest.approx(0.01, rel=1e-3) and 0.9999 < high < 1  # sqrt(1 - alphabar) at t = 0, 999 (float32)
    t = torch.tensor([0, 250, 999])
    s = torch.sqrt(1 - scheduler.alphas_cumprod.double()[t])
    x = _state(3)
    torch.testing.assert_close(prior.denoise(x, s), vp_mean(x, s), rtol=1e-9, atol=1e-9)
    assert calls[-1].dtype == torch.long and calls[-1].tolist() == t.tolist()  # learned-variance channels dropped
    # between two timesteps "nearest" rounds the log-std position; the VE view drives a VE sampler
    mid = torch.exp((torch.log(s[1:2]) + torch.log(torch.sqrt(1 - scheduler.alphas_cumprod.double()[251:252]))) / 2)
    assert prior.timestep(mid * 0.999).item() == 250 and prior.timestep(mid * 1.001).item() == 251
    sigma_ve = s / torch.sqrt(1 - s**2)
    torch.testing.assert_close(as_noise_model(prior, "ve").denoise(x, sigma_ve), ve_mean(x, sigma_ve), rtol=1e-8,
                               atol=1e-9)


def test_epsilon_prior_continuous_timesteps_and_gaussian_diffusion_tables():
    diffusion = GaussianDiffusion(linear_beta_schedule(100))
    calls: list[torch.Tensor] = []
    table = torch.as_tensor(diffusion.alphas_cumprod)
    prior = EpsilonPrior(lambda x, t: (calls.append(t), torch.zeros_like(x))[1], diffusion, timesteps="continuous")
    stds = torch.sqrt(1 - table.double())
    sigma = torch.exp((torch.log(stds[10:11]) * 3 + torch.log(stds[11:12])) / 4)  # a quarter of the way in log
    x = _state(4)
    torch.testing.assert_close(prior.denoise(x[:1], sigma), x[:1] / torch.sqrt(1 - sigma**2).view(1, 1, 1, 1))
    assert calls[-1].dtype == x.dtype and calls[-1].item() == pytest.approx(10.25, abs=1e-9)
    assert prior.timestep(stds[[0, 42, 99]]).tolist() == pytest.approx([0.0, 42.0, 99.0], abs=1e-9)
    assert prior.timestep(torch.tensor([1e-6, 2.0], dtype=torch.float64)).tolist() == pytest.approx([0.0, 99.0])


@pytest.mark.parametrize("rescale", [False, True])
def test_epsilon_prior_passes_a_respaced_process_its_original_timesteps(rescale):
    diffusion = GaussianDiffusion(linear_beta_schedule(100), rescale_timesteps=rescale).respace(range(0, 100, 10))
    calls: list[torch.Tensor] = []
    prior = EpsilonPrior(lambda x, t: (calls.append(t), torch.zeros_like(x))[1], diffusion)
    table = torch.sqrt(1 - torch.as_tensor(diffusion.alphas_cumprod).double())
    prior.denoise(torch.zeros(3, 1, 2, 2, dtype=torch.float64), table[[0, 4, 9]])
    expected = diffusion.model_timesteps(torch.tensor([0, 4, 9]))  # what its own samplers pass: 0, 40, 90 (x 10)
    assert calls[-1].dtype == (torch.float64 if rescale else torch.long)
    assert calls[-1].tolist() == pytest.approx(expected.tolist())
    assert expected.tolist() == ([0.0, 400.0, 900.0] if rescale else [0, 40, 90])


def test_epsilon_prior_rejects_bad_tables():
    with pytest.raises(TypeError, match="alphas_cumprod must be a 1-D tensor"):
        EpsilonPrior(lambda x, t: x, [0.9, 0.5])
    with pytest.raises(TypeError, match="network must be callable"):
        EpsilonPrior(3, torch.tensor([0.9, 0.5]))
    with pytest.raises(ValueError, match="timesteps"):
        EpsilonPrior(lambda x, t: x, torch.tensor([0.9, 0.5]), timesteps="linear")


def test_classifier_free_guidance_combines_two_exact_priors():
    x = _state(5)
    sigma = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    conditional = DenoiserPrior(lambda x, s: ve_mean(x, s, mu=0.8))
    unconditional = DenoiserPrior(lambda x, s: ve_mean(x, s, mu=0.2))
    guided = ClassifierFreeGuidance(conditional, unconditional, scale=3.0)
    expected = ve_mean(x, sigma, 0.2) + 3.0 * (ve_mean(x, sigma, 0.8) - ve_mean(x, sigma, 0.2))
    torch.testing.assert_close(guided.denoise(x, sigma), expected)
    # the guided prior has the guided score (Tweedie), and scale 1 is the conditional prior
    torch.testing.assert_close(guided.score(x, sigma), (expected - x) / _item(sigma, x) ** 2)
    torch.testing.assert_close(ClassifierFreeGuidance(conditional, unconditional, 1).denoise(x, sigma),
                               ve_mean(x, sigma, 0.8))
    with pytest.raises(ValueError, match="share a noise model"):
        ClassifierFreeGuidance(conditional, DenoiserPrior(ve_mean, noise_model="vp"), 2.0)
    with pytest.raises(ValueError, match="scale must be a finite number"):
        ClassifierFreeGuidance(conditional, unconditional, float("nan"))
    with pytest.raises(TypeError, match="must be Priors"):
        ClassifierFreeGuidance(ve_mean, unconditional, 2.0)


def test_classifier_free_guidance_function_guides_leading_channels_only():
    c, u = torch.full((1, 4, 2), 3.0), torch.full((1, 4, 2), 1.0)
    out = classifier_free_guidance(c, u, 2.0, channels=2)
    assert out[:, :2].unique().tolist() == [5.0] and out[:, 2:].unique().tolist() == [3.0]
    with pytest.raises(ValueError, match="channels must be in"):
        classifier_free_guidance(c, u, 2.0, channels=5)
    with pytest.raises(ValueError, match="same shape"):
        classifier_free_guidance(c, u[:, :3], 2.0)


def test_prior_contract_sigma_range_and_as_prior():
    class Neither(Prior):
        pass

    with pytest.raises(TypeError, match="must override denoise\\(\\) or score\\(\\)"):
        Neither().denoise(torch.zeros(1, 1, 2, 2), 1.0)
    with pytest.raises(TypeError, match="must override denoise\\(\\) or score\\(\\)"):
        Neither().score(torch.zeros(1, 1, 2, 2), 1.0)

    class Buffered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            log_range = torch.log(torch.tensor([378.0, 0.01], dtype=torch.float64))
            self.register_buffer("sigmas", torch.exp(torch.linspace(*log_range, 5, dtype=torch.float64)))

        def forward(self, x, sigma):
            return -x

    assert ScorePrior(Buffered()).sigma_range == (0.01, 378.0)
    bounded = torch.nn.Identity()
    bounded.sigma_min, bounded.sigma_max = 0.002, 80.0
    assert DenoiserPrior(bounded).sigma_range == (0.002, 80.0)
    assert ScorePrior(ve_score).sigma_range is None
    prior = ScorePrior(ve_score)
    assert as_prior(prior, DenoiserPrior) is prior
    assert isinstance(as_prior(ve_mean, DenoiserPrior), DenoiserPrior)
    with pytest.raises(TypeError, match="network must be a callable network or a medgen Prior"):
        as_prior(3, DenoiserPrior)
    with pytest.raises(ValueError, match="noise_model"):
        ScorePrior(ve_score, noise_model="subvp")
    with pytest.raises(ValueError, match="noise_model"):
        as_noise_model(prior, "edm")


def test_module_docstring_example_runs():
    namespace = run_docstring_example(priors_module.__doc__, "medgen.diffusion.priors")
    x, x0, vp = namespace["x"], namespace["x0"], namespace["vp"]
    sigma = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    torch.testing.assert_close(x0, 0.5 + 0.09 * (x - 0.5) / (0.09 + sigma**2))
    assert vp.noise_model == "vp"


def test_noise_model_adapter_converts_the_sigma_range():
    vp = EpsilonPrior(lambda x, t: x, torch.tensor([0.9999, 0.5, 1e-4], dtype=torch.float64))
    low, high = as_noise_model(vp, "ve").sigma_range
    assert low == pytest.approx(0.01 / (1 - 0.01**2) ** 0.5) and high == pytest.approx(0.99995 / (1 - 0.9999) ** 0.5)
    ve = DenoiserPrior(torch.nn.Identity())
    ve.network.sigma_min, ve.network.sigma_max = 0.01, 15.0
    assert as_noise_model(ve, "vp").sigma_range == pytest.approx((0.01 / (1 + 1e-4) ** 0.5, 15 / 226**0.5))


def test_epsilon_prior_docstring_example_drives_tpdm_on_the_ve_range_of_the_ddpm_schedule():
    pytest.importorskip("einops")  # MONAI's DiffusionModelUNet needs it
    namespace = run_docstring_example(EpsilonPrior.__doc__, "EpsilonPrior")
    assert namespace["x0_hat"].shape == (2, 1, 16, 16) and tuple(namespace["volume"].shape) == (1, 1, 16, 16, 16)
    sde = namespace["inferer"].sde(namespace["prior"])  # VE units, not the VP stds of the schedule
    assert sde.sigma_min == pytest.approx(0.01, rel=1e-3) and sde.sigma_max == pytest.approx(157.0, rel=1e-2)
