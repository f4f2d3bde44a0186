from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medgen.diffusion.schedules import (
    cosine_beta_schedule,
    geometric_sigmas,
    karras_sigmas,
    linear_beta_schedule,
    named_beta_schedule,
)
from tests.conftest import load_parity


def test_linear_schedule_matches_wdm_alphas_cumprod():
    d = load_parity("wdm_diffusion_step")
    betas = linear_beta_schedule(1000)
    assert betas.dtype == torch.float64
    assert torch.equal(torch.cumprod(1 - betas, 0), d["alphas_cumprod"])
    assert torch.equal(named_beta_schedule("linear", 1000), betas)
    # rescaled for other lengths: same end points as 1000 steps scaled by 1000/T
    assert linear_beta_schedule(250)[-1].item() == pytest.approx(0.08)


def test_cosine_schedule_alpha_bar():
    betas = cosine_beta_schedule(1000)
    alpha_bar = torch.cumprod(1 - betas, 0)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for i in (0, 10, 500, 900):
        assert alpha_bar[i].item() == pytest.approx(f((i + 1) / 1000) / f(0), rel=1e-9)
    assert betas.max().item() <= 0.999
    with pytest.raises(ValueError, match="schedule name"):
        named_beta_schedule("quadratic", 10)


def test_geometric_sigmas_score_sde():
    s = geometric_sigmas(2000, 0.01, 378.0)
    assert s[0].item() == pytest.approx(0.01, rel=1e-6) and s[-1].item() == pytest.approx(378.0, rel=1e-6)
    expected = torch.exp(torch.linspace(np.log(0.01), np.log(378.0), 2000))
    assert torch.equal(s, expected)
    assert torch.equal(geometric_sigmas(5, 1.0, 2.0, descending=True), geometric_sigmas(5, 1.0, 2.0).flip(0))
    with pytest.raises(ValueError, match="sigma_min"):
        geometric_sigmas(5, 2.0, 1.0)


def test_karras_sigmas_edm_formula():
    s = karras_sigmas(18, 0.002, 80.0)
    assert s.shape == (19,) and s[-1] == 0 and s.dtype == torch.float64
    i = np.arange(18)
    ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(s[:-1].numpy(), ref, rtol=1e-14)
    assert s[0].item() == pytest.approx(80.0) and s[-2].item() == pytest.approx(0.002)
    assert karras_sigmas(3, 0.1, 1.0, append_zero=False).shape == (3,)
    with pytest.raises(ValueError, match="n must"):
        karras_sigmas(1, 0.1, 1.0)
