from __future__ import annotations

import math

import pytest
import torch

from medgen.diffusion.sde import HFSSDE, VESDE, VPSDE
from medgen.physics.mri import CartesianMRI, complex_to_channels
from tests.conftest import load_parity


@pytest.fixture(scope="module")
def hfs():
    return load_parity("hfs_sde")


def test_vesde_tpdm_values():
    sde = VESDE(0.01, 378.0, 2000)
    x = torch.randn(3, 1, 4, 4)
    t = torch.tensor([0.0, 0.5, 1.0])
    mean, std = sde.marginal_prob(x, t)
    assert torch.equal(mean, x)
    torch.testing.assert_close(std, torch.tensor([0.01, math.sqrt(0.01 * 378), 378.0]), rtol=1e-5, atol=0)
    drift, diffusion = sde.sde(x, t)
    assert torch.equal(drift, torch.zeros_like(x))
    torch.testing.assert_close(diffusion, std * math.sqrt(2 * math.log(37800)), rtol=1e-6, atol=0)
    # SMLD discretisation: G^2 = sigma_i^2 - sigma_{i-1}^2, sigma_{-1} = 0
    f, G = sde.discretize(x, torch.tensor([0.0, 0.5, 1.0]))
    s = sde.discrete_sigmas
    i = int(0.5 * 1999)
    expected = torch.stack([s[0], torch.sqrt(s[i] ** 2 - s[i - 1] ** 2), torch.sqrt(s[-1] ** 2 - s[-2] ** 2)])
    torch.testing.assert_close(G, expected)
    assert torch.equal(f, torch.zeros_like(x))
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    assert torch.equal(sde.prior_sampling((2, 1, 3, 3), generator=g), torch.randn(2, 1, 3, 3) * 378.0)


def test_vpsde_parity(hfs):
    sde = VPSDE(0.1, 20.0, 1000)
    for t, ref in hfs["vpsde"].items():
        mean, std = sde.marginal_prob(hfs["x0"], torch.tensor([t]))
        drift, diffusion = sde.sde(hfs["x0"], torch.tensor([t]))
        torch.testing.assert_close(mean, ref["mean"], atol=1e-6, rtol=0)
        torch.testing.assert_close(std, ref["std"], atol=1e-6, rtol=0)
        torch.testing.assert_close(drift, ref["drift"], atol=1e-5, rtol=0)
        torch.testing.assert_close(diffusion, ref["diffusion"], atol=1e-6, rtol=0)


def test_vpsde_discretize_is_ddpm_step():
    sde = VPSDE(0.1, 20.0, 100)
    x = torch.randn(2, 1, 3, 3)
    t = torch.tensor([1.0, 0.0])
    f, G = sde.discretize(x, t)
    beta = torch.tensor([20.0 / 100, 0.1 / 100])
    torch.testing.assert_close(G, beta.sqrt())
    torch.testing.assert_close(f, (torch.sqrt(1 - beta).view(2, 1, 1, 1) - 1) * x)
    torch.testing.assert_close(sde.langevin_alpha(t), 1 - beta)
    # HFS-SDE's accelerated-sampling quirk: N=100 indexes the 1000-long table -> alpha ~ 1
    quirk = VPSDE(0.1, 20.0, 100, table_size=1000)
    assert quirk.langevin_alpha(torch.tensor([1.0])).item() == pytest.approx(1 - (0.1 + 99 / 999 * 19.9) / 1000)
    with pytest.raises(ValueError, match="table_size"):
        VPSDE(0.1, 20.0, 100, table_size=10)


def test_hfs_marginal_forward_sde_prior_perturbed_parity(hfs):
    sde = HFSSDE(hfs["train_mask"], 0.1, 20.0, 1000)
    x0 = hfs["x0"]
    for t in hfs["t_values"].tolist():
        mean, std = sde.marginal_prob(x0, torch.tensor([t]))
        torch.testing.assert_close(mean, hfs["marginal"][t]["mean"], atol=1e-6, rtol=0)
        torch.testing.assert_close(std, hfs["marginal"][t]["std"], atol=1e-6, rtol=0)
        drift, diffusion = sde.sde(x0, torch.tensor([t]))
        torch.testing.assert_close(drift, hfs["forward_sde"][t]["drift"], atol=1e-5, rtol=0)
        torch.testing.assert_close(diffusion, hfs["forward_sde"][t]["diffusion"], atol=1e-6, rtol=0)
    p = hfs["perturbed"]
    torch.testing.assert_close(sde.perturb(x0, torch.tensor([p["t"]]), p["z"]), p["value"], atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(hfs["prior"]["seed"])
    assert torch.equal(sde.prior_sampling((1, 2, 32, 32), generator=g), hfs["prior"]["sample"])


def test_hfs_conditional_prior_parity(hfs):
    sde = HFSSDE(hfs["train_mask"])
    op = CartesianMRI.from_hfs(hfs["train_mask"], hfs["csm"])
    low = op.adjoint(complex_to_channels(hfs["atb"].to(torch.complex64)))
    g = torch.Generator().manual_seed(hfs["x_init"]["seed"])
    x = sde.conditional_prior_sampling(low, generator=g)
    torch.testing.assert_close(x, hfs["x_init"]["value"], atol=1e-5, rtol=0)


def test_hfs_projector_and_low_frequency_invariance(hfs):
    sde = HFSSDE(hfs["train_mask"])
    x = torch.randn(2, 2, 32, 32)
    px = sde.project(x)
    torch.testing.assert_close(sde.project(px), px, atol=1e-6, rtol=0)  # idempotent
    y = torch.randn(2, 2, 32, 32)
    torch.testing.assert_close((sde.project(x) * y).sum(), (x * sde.project(y)).sum(), atol=1e-4, rtol=0)  # symmetric
    # low frequencies of the marginal mean and of the discretised step equal those of x
    mean, _ = sde.marginal_prob(x, torch.tensor([0.7, 0.2]))
    torch.testing.assert_close(mean - sde.project(mean), x - px, atol=1e-5, rtol=0)
    f, G = sde.discretize(x, torch.tensor([0.7, 0.2]))
    torch.testing.assert_close(sde.project(f), f, atol=1e-6, rtol=0)
    assert G.shape == (2,)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        sde.project(torch.randn(1, 2, 16, 16))


def test_reverse_sde_and_probability_flow():
    sde = VPSDE(0.1, 20.0, 50)
    x = torch.randn(2, 1, 4, 4)
    t = torch.tensor([0.3, 0.8])

    def score_fn(x, t):
        return -x * (1 + t.view(-1, 1, 1, 1))

    drift, diffusion = sde.sde(x, t)
    rdrift, rdiff = sde.reverse(score_fn).sde(x, t)
    torch.testing.assert_close(rdrift, drift - diffusion.view(-1, 1, 1, 1) ** 2 * score_fn(x, t))
    torch.testing.assert_close(rdiff, diffusion)
    odrift, odiff = sde.reverse(score_fn, probability_flow=True).sde(x, t)
    torch.testing.assert_close(odrift, drift - 0.5 * diffusion.view(-1, 1, 1, 1) ** 2 * score_fn(x, t))
    assert torch.equal(odiff, torch.zeros(2))
    f, G = sde.discretize(x, t)
    rf, rG = sde.reverse(score_fn).discretize(x, t)
    torch.testing.assert_close(rf, f - G.view(-1, 1, 1, 1) ** 2 * score_fn(x, t))
    assert sde.reverse(score_fn).N == 50 and sde.reverse(score_fn).T == 1.0


def test_hfs_reverse_projects_score_on_request(hfs):
    sde = HFSSDE(hfs["train_mask"])
    x = torch.randn(1, 2, 32, 32)
    s = torch.randn(1, 2, 32, 32)
    t = torch.tensor([0.4])
    official, _ = sde.reverse(lambda x, t: s).sde(x, t)
    exact, _ = sde.reverse(lambda x, t: s, project_score=True).sde(x, t)
    beta = 0.1 + 0.4 * 19.9
    torch.testing.assert_close(official, -0.5 * beta * sde.project(x) - beta * s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exact, -0.5 * beta * sde.project(x) - beta * sde.project(s), atol=1e-5, rtol=1e-5)


def test_argument_validation():
    with pytest.raises(ValueError, match="N must"):
        VESDE(0.01, 1.0, 0)
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(1.0, 0.5)
    with pytest.raises(TypeError, match="low_frequency_mask"):
        HFSSDE([[1, 0]])
    with pytest.raises(ValueError, match="shape"):
        VESDE().marginal_prob(torch.zeros(2, 1, 2, 2), torch.zeros(3))


def test_vesde_table_size_reads_the_smallest_sigmas():
    """HFS-SDE's accelerated VE baseline: a 1000-long sigma table sampled with N=300 steps."""
    full = VESDE(0.01, 348.0, N=1000)
    accelerated = VESDE(0.01, 348.0, N=300, table_size=1000)
    assert torch.equal(accelerated.discrete_sigmas, full.discrete_sigmas)
    x = torch.zeros(1, 1, 2, 2)
    t = torch.tensor([1.0])
    _, g = accelerated.discretize(x, t)
    expected = torch.sqrt(full.discrete_sigmas[299] ** 2 - full.discrete_sigmas[298] ** 2)
    assert torch.allclose(g, expected.expand(1))
    with pytest.raises(ValueError, match="table_size"):
        VESDE(0.01, 348.0, N=300, table_size=100)
