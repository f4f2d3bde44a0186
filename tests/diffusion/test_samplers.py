from __future__ import annotations

import pytest
import torch

import medgen.diffusion.samplers as samplers_module
from medgen.diffusion.consistency import NormalizedGradient
from medgen.diffusion.samplers import euler_maruyama_predictor, langevin_corrector, reverse_diffusion_predictor
from medgen.diffusion.sde import HFSSDE, VESDE, VPSDE
from medgen.physics.mri import CartesianMRI, complex_to_channels
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example


def _recorded_scores(pairs):
    """A stand-in score network that returns the recorded score for each recorded input."""

    def score_fn(x, t):
        for x_rec, score in pairs:
            if torch.equal(x, x_rec):
                return score
        raise AssertionError("score requested for an input that was not recorded")

    return score_fn


def test_tpdm_ve_pc_step_parity():
    d = load_parity("ve_pc_step_tiny")
    sde = VESDE(d["sde"]["sigma_min"], d["sde"]["sigma_max"], d["sde"]["N"])
    t = torch.linspace(1, d["sde"]["eps"], d["sde"]["N"])[d["sde"]["step_index"]]
    assert t.item() == d["t"].item()
    score_fn = _recorded_scores([(d["x_in"], d["corrector_score"]), (d["corrector_x"], d["predictor_score"])])

    x, x_mean, score = langevin_corrector(
        d["x_in"], d["vec_t"], sde, score_fn, d["snr"], noise=d["noise_corrector"], return_score=True
    )
    assert (x - d["corrector_x"]).abs().max() <= 1e-5
    assert (x_mean - d["corrector_x_mean"]).abs().max() <= 1e-5
    assert torch.equal(score, d["corrector_score"])

    x, x_mean, score = reverse_diffusion_predictor(
        d["corrector_x"], d["vec_t"], sde, score_fn, noise=d["noise_predictor"], return_score=True
    )
    assert (x - d["predictor_x"]).abs().max() <= 1e-5
    assert (x_mean - d["predictor_x_mean"]).abs().max() <= 1e-5
    assert torch.equal(score, d["predictor_score"])

    # the same noises drawn from a generator seeded like the official global RNG
    g = torch.Generator().manual_seed(d["seed_before_corrector"])
    xc, _ = langevin_corrector(d["x_in"], d["vec_t"], sde, score_fn, d["snr"], generator=g)
    assert (xc - d["corrector_x"]).abs().max() <= 1e-5
    xp, _ = reverse_diffusion_predictor(d["corrector_x"], d["vec_t"], sde, score_fn, generator=g)
    assert (xp - d["predictor_x"]).abs().max() <= 1e-5


def test_langevin_norm_reductions():
    sde = VESDE(0.01, 10.0, 10)
    x = torch.randn(3, 1, 4, 4)
    scale = torch.tensor([1.0, 2.0, 5.0]).view(3, 1, 1, 1)
    score_fn = lambda x, t: -x * scale  # noqa: E731
    z = torch.randn(3, 1, 4, 4)
    g = -x * scale
    gn, zn = g.flatten(1).norm(dim=1), z.flatten(1).norm(dim=1)
    _, xm = langevin_corrector(x, 0.5, sde, score_fn, 0.2, noise=z, norm_reduction="batch_mean")
    step = 2 * (0.2 * zn.mean() / gn.mean()) ** 2
    torch.testing.assert_close(xm, x + step * g)
    xs, xm = langevin_corrector(x, 0.5, sde, score_fn, 0.2, noise=z, norm_reduction="per_sample")
    step = (2 * (0.2 * zn / gn) ** 2).view(3, 1, 1, 1)
    torch.testing.assert_close(xm, x + step * g)
    torch.testing.assert_close(xs, xm + torch.sqrt(2 * step) * z)
    # per-sample steps do not depend on the rest of the batch
    _, xm0 = langevin_corrector(x[:1], 0.5, sde, lambda x, t: -x, 0.2, noise=z[:1], norm_reduction="per_sample")
    torch.testing.assert_close(xm0, xm[:1])
    with pytest.raises(ValueError, match="norm_reduction"):
        langevin_corrector(x, 0.5, sde, score_fn, 0.2, norm_reduction="max")
    with pytest.raises(ValueError, match="n_steps"):
        langevin_corrector(x, 0.5, sde, score_fn, 0.2, n_steps=2, noise=z)


def test_vp_euler_maruyama_and_langevin_alpha():
    sde = VPSDE(0.1, 20.0, 100)
    x = torch.randn(2, 1, 4, 4)
    t = torch.tensor([0.6, 0.6])
    z = torch.randn_like(x)
    score_fn = lambda x, t: -2 * x  # noqa: E731
    beta = 0.1 + 0.6 * 19.9
    x_next, x_mean = euler_maruyama_predictor(x, t, sde, score_fn, noise=z)
    expected_mean = x - (-0.5 * beta * x - beta * (-2 * x)) / 100
    torch.testing.assert_close(x_mean, expected_mean)
    torch.testing.assert_close(x_next, expected_mean + (beta / 100) ** 0.5 * z)
    _, xm = langevin_corrector(x, t, sde, score_fn, 0.1, noise=z)
    alpha = 1 - sde.discrete_betas[int(0.6 * 99)]
    step = 2 * alpha * (0.1 * z.flatten(1).norm(dim=1).mean() / (2 * x).flatten(1).norm(dim=1).mean()) ** 2
    torch.testing.assert_close(xm, x + step * (-2 * x))


def test_hfs_corrector_and_predictor_official_formulas():
    d = load_parity("hfs_sde")
    sde = HFSSDE(d["train_mask"])
    op = CartesianMRI.from_hfs(d["atb_mask"], d["csm"])
    y = complex_to_channels(d["atb"].to(torch.complex64))
    x = d["x_init"]["value"]
    t = torch.tensor([0.5])
    raw = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    score_fn = lambda x, t: raw - 0.3 * x  # noqa: E731
    z = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(4))
    P = sde.project

    def dc(x, s, lam):
        g = op.adjoint(op(x) - y)
        return g / g.norm() * s.norm() * lam

    # corrector (sampling.py LangevinCorrector.update_fn, HFS branch)
    grad = P(score_fn(x, t))
    alpha = sde.alphas[int(0.5 * 999)]
    step = (0.16 * z.norm() / grad.norm()) ** 2 * 2 * alpha
    expected_mean = x + step * (grad - dc(x, grad, 0.1))
    expected = expected_mean + torch.sqrt(step * 2) * P(z)
    xc, xcm = langevin_corrector(
        x, t, sde, score_fn, 0.16, noise=z, guidance=NormalizedGradient(op, y, 0.1).guidance
    )
    torch.testing.assert_close(xcm, expected_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xc, expected, atol=1e-5, rtol=1e-5)

    # predictor (sde_lib.HFS_SDE.reverse RSDE.sde): un-projected score, projected noise
    beta = 0.1 + 0.5 * 19.9
    s = score_fn(x, t)
    drift = -0.5 * beta * P(x) - beta * (s - dc(x, s, 2.5))
    expected_mean = x - drift / 1000
    expected = expected_mean + (beta / 1000) ** 0.5 * P(z)
    xp, xpm, score = euler_maruyama_predictor(
        x, t, sde, score_fn, noise=z, guidance=NormalizedGradient(op, y, 2.5).guidance, return_score=True
    )
    torch.testing.assert_close(xpm, expected_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xp, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(score, s)


def test_hfs_reverse_diffusion_keeps_low_frequencies_without_guidance():
    d = load_parity("hfs_sde")
    sde = HFSSDE(d["train_mask"], project_reverse_score=True)
    x = d["x_init"]["value"]
    g = torch.Generator().manual_seed(0)
    x_next, _ = reverse_diffusion_predictor(x, 0.3, sde, lambda x, t: -x, generator=g)
    torch.testing.assert_close(x_next - sde.project(x_next), x - sde.project(x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ full parity through the tiny official networks
def _hfs_setup():
    from medgen.networks.convert import from_official

    d = load_parity("hfs_sde")
    net = from_official("score_sde_ddpm", d["model_state_dict"], d["config"])
    sde = HFSSDE(d["train_mask"])

    def score_fn(x, t):  # HFS-SDE: the network's time input is the marginal std, its output is the score
        return net(x, sde.marginal_prob(torch.zeros_like(x), t)[1])

    op = CartesianMRI.from_hfs(d["atb_mask"], d["csm"])
    y = complex_to_channels(d["atb"].to(torch.complex64))
    cfg = d["config"]["sampling"]

    def corrector(x, t, sde, generator):
        dc = NormalizedGradient(op, y, cfg["corrector_mse"]).guidance
        return langevin_corrector(x, t, sde, score_fn, cfg["snr"], generator=generator, guidance=dc)

    def predictor(x, t, sde, generator):
        dc = NormalizedGradient(op, y, cfg["mse"]).guidance
        return euler_maruyama_predictor(x, t, sde, score_fn, generator=generator, guidance=dc)

    return d, sde, corrector, predictor, y


@torch.no_grad()
def test_hfs_pc_steps_parity_with_network():
    d, sde, corrector, predictor, _ = _hfs_setup()
    for key in ("pc_step_t1", "pc_step_t05"):
        r = d[key]
        t = torch.tensor([r["t"]])
        xc, xcm = corrector(r["x_in"], t, sde, torch.Generator().manual_seed(r["seed_corrector"]))
        xp, xpm = predictor(xc, t, sde, torch.Generator().manual_seed(r["seed_predictor"]))
        for ours, ref in ((xc, "x_after_corrector"), (xcm, "x_mean_after_corrector")):
            assert (ours - r[ref]).abs().max() <= 1e-5 * r[ref].abs().max(), (key, ref)
        for ours, ref in ((xp, "x_after_predictor"), (xpm, "x_mean_after_predictor")):
            assert (ours - r[ref]).abs().max() <= 1e-5 * r[ref].abs().max(), (key, ref)


# The full accelerated N=5 sampler is pinned through the inferer: tests/inferers/test_highfrequency.py.


def test_module_docstring_example_runs():
    """The PC example samples N(0, 1) data from its exact score: the result has unit variance."""
    x_mean = run_docstring_example(samplers_module.__doc__, "medgen.diffusion.samplers")["x_mean"]
    assert x_mean.shape == (4, 1, 16, 16)
    assert abs(float(x_mean.std()) - 1.0) < 0.1 and abs(float(x_mean.mean())) < 0.1


# ------------------------------------------------------------------------------------------------------------- DDIM
def test_ddim_update_closed_forms():
    from medgen.diffusion.samplers import ddim_update

    g = torch.Generator().manual_seed(0)
    x0, x, z = (torch.randn(3, 1, 4, 4, generator=g) for _ in range(3))
    sigma, nxt = 2.0, 0.5
    deterministic, mean0 = ddim_update(x0, (x - x0) / sigma, sigma, nxt, 0.0, z)
    assert torch.allclose(deterministic, x0 + nxt / sigma * (x - x0), atol=1e-6) and torch.equal(deterministic, mean0)
    ancestral, mean1 = ddim_update(x0, (x - x0) / sigma, sigma, nxt, 1.0, z)
    assert torch.allclose(mean1, x0 + nxt**2 / sigma**2 * (x - x0), atol=1e-6)  # q(x' | x, x0)'s mean
    assert torch.allclose(ancestral - mean1, nxt * (1 - nxt**2 / sigma**2) ** 0.5 * z, atol=1e-6)
    last, _ = ddim_update(x0, (x - x0) / sigma, sigma, 0.0, 1.0, z)
    assert torch.equal(last, x0)
    sigmas = torch.tensor([2.0, 2.0, 1.0])
    per_item, _ = ddim_update(x0, (x - x0) / sigmas.view(-1, 1, 1, 1), sigmas, torch.tensor([0.5, 0.5, 0.5]), 0.0, z)
    assert torch.allclose(per_item[:2], deterministic[:2]) and torch.allclose(per_item[2], x0[2] + 0.5 * (x[2] - x0[2]))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_update_keeps_the_state_on_the_schedule_where_reverse_diffusion_does_not(eta):
    # x = x0 + sigma n with the exact x0: after one big step the noise left must have std sigma' for every eta
    from medgen.diffusion.samplers import ddim_update

    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(1, 1, 256, 256, generator=g)
    sigma, nxt = 10.0, 1.0
    x = x0 + sigma * torch.randn(x0.shape, generator=g)
    new, _ = ddim_update(x0, (x - x0) / sigma, sigma, nxt, eta, torch.randn(x0.shape, generator=g))
    assert abs((new - x0).std().item() / nxt - 1) < 0.01
    # the reverse-diffusion predictor (same mean) adds sqrt(sigma^2 - sigma'^2) ~ sigma of noise on such a step
    sde = VESDE(nxt, sigma, 2)
    score = (x0 - x) / sigma**2
    rd, rd_mean = reverse_diffusion_predictor(x, torch.tensor(1.0), sde, lambda *_: score, generator=g)
    assert torch.allclose(rd_mean, x0 + nxt**2 / sigma**2 * (x - x0), atol=1e-4)
    assert (rd - x0).std().item() > 9 * nxt


def test_ddim_predictor_shares_the_reverse_diffusion_mean_and_needs_a_ve_sde():
    from medgen.diffusion.samplers import ddim_predictor

    sde = VESDE(0.01, 50.0, 10)
    g = torch.Generator().manual_seed(2)
    x, score = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    t = torch.tensor([0.7, 0.3])
    _, mean_rd = reverse_diffusion_predictor(x, t, sde, lambda *_: score, noise=torch.zeros_like(x))
    new, mean_ddim, returned = ddim_predictor(x, t, sde, lambda *_: score, noise=torch.zeros_like(x),
                                              return_score=True)
    assert torch.allclose(mean_ddim, mean_rd, atol=1e-5) and torch.equal(new, mean_ddim) and returned is score
    sigma, nxt = sde.step_sigmas(t)
    x0 = x + sigma.reshape(-1, 1, 1, 1) ** 2 * score
    _, mean_eta0 = ddim_predictor(x, t, sde, lambda *_: score, eta=0.0)
    assert torch.allclose(mean_eta0, x0 + (nxt / sigma).reshape(-1, 1, 1, 1) * (x - x0), atol=1e-4)
    with pytest.raises(TypeError, match="VE-SDE"):
        ddim_predictor(x, t, VPSDE(), lambda *_: score)


def test_pc_settings_check_eta_and_ddim_pc_step_makes_one_call_per_sub_step():
    from medgen.diffusion.priors import ScorePrior
    from medgen.diffusion.samplers import PCSettings, pc_step

    with pytest.raises(ValueError, match="eta"):
        PCSettings(predictor="ddim", eta=1.5)
    calls = []

    def net(x, sigma):
        calls.append(sigma)
        return -x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    sde = VESDE(0.01, 10.0, 5)
    x = start = sde.prior_sampling((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    gain = 1.0
    for i, t in enumerate(torch.linspace(1, 1e-5, 5)):
        x, x_mean = pc_step(ScorePrior(net), x, t, sde, PCSettings(corrector_steps=0, predictor="ddim", eta=0.0),
                            generator=torch.Generator().manual_seed(i))
        # N(0, 1) data, exact score at the network's sigma(t): x0 = a x, x' = (a + sigma'/sigma (1 - a)) x
        sigma, nxt = (float(v) for v in sde.step_sigmas(t))
        a = 1 - sigma**2 / (1 + float(sde.sigma(t)) ** 2)
        gain *= a + nxt / sigma * (1 - a)
    assert len(calls) == 5 and torch.equal(x, x_mean)
    assert torch.allclose(x, gain * start, rtol=1e-4, atol=1e-6)


def test_ddim_step_with_dds_on_the_device_under_test_matches_the_cpu(device):
    # the run gpu_check.sh makes on CUDA: DDIM + DDS (CG through the CT operator) and DDIM + DPS (a graph through the
    # denoiser), deterministic (eta 0, so the devices' different random streams do not enter), against the CPU
    from medgen.diffusion.consistency import DPS, ConjugateGradientDenoised
    from medgen.diffusion.priors import DenoiserPrior
    from medgen.diffusion.samplers import ddim_step
    from medgen.physics.ct import ParallelBeamCT

    def denoiser(x, sigma):  # exact MMSE denoiser of N(0.5, 0.1 I)
        return (0.1 * x + sigma**2 * 0.5) / (0.1 + sigma**2)

    g = torch.Generator().manual_seed(0)
    truth, x = torch.rand(2, 1, 16, 16, generator=g), 0.5 + 0.8 * torch.randn(2, 1, 16, 16, generator=g)
    results = {}
    for where in (torch.device("cpu"), device):
        op = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32).to(where)
        y = op(truth.to(where))
        for name, term in (("dds", ConjugateGradientDenoised(op, y, 3)), ("dps", DPS(op, y, 0.5, norm="item")),
                           ("none", None)):
            results[where.type, name] = ddim_step(DenoiserPrior(denoiser), x.to(where), 0.8, 0.3, 0.0,
                                                  consistency=term, generator=torch.Generator(device=where)).cpu()
    for name in ("dds", "dps", "none"):
        assert torch.allclose(results["cpu", name], results[device.type, name], atol=1e-5), name
    # the data terms did something: both fit the measurement better than the prior alone
    op = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32)
    misfit = {name: (op(results["cpu", name]) - op(truth)).norm().item() for name in ("dds", "dps", "none")}
    assert misfit["dds"] < misfit["dps"] < misfit["none"], misfit
