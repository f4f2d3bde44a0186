"""medgen.diffusion.warm_start: settings checks, the start step from noise levels, and the estimate."""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.warm_start import WarmStart
from medgen.physics.zaxis import ZAxisAverage
from medgen.solvers import make_solver


def test_cold_start_is_step_zero_and_has_no_fingerprint():
    warm = WarmStart()
    assert not warm.active and warm.first_step([3.0, 2.0, 1.0]) == 0 and warm.to_json() is None


def test_first_step_by_sigma_or_by_step():
    levels = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5])
    assert WarmStart("cgls", sigma=2.0).first_step(levels) == 2  # first level <= 2
    assert WarmStart("cgls", sigma=1.5).first_step(levels) == 3
    assert WarmStart("cgls", sigma=50.0).first_step(levels) == 0  # above the largest level: the full schedule
    assert WarmStart("cgls", start_step=4).first_step(levels) == 4
    with pytest.raises(ValueError, match="below the last step's noise level"):
        WarmStart("cgls", sigma=0.1).first_step(levels)
    with pytest.raises(ValueError, match="below the 5 steps"):
        WarmStart("cgls", start_step=5).first_step(levels)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sigma": 1.0}, ValueError, "need a warm_start estimate"),
        ({"estimate": "fbp", "sigma": 1.0}, ValueError, "one of \\('cgls'"),
        ({"estimate": 3, "sigma": 1.0}, TypeError, "method name or a tensor, got int"),
        ({"estimate": "sirt"}, ValueError, "exactly one of warm_start_sigma and warm_start_step"),
        ({"estimate": "sirt", "sigma": 1.0, "start_step": 2}, ValueError, "exactly one"),
        ({"estimate": "sirt", "sigma": -1.0}, ValueError, "warm_start_sigma must be a finite number > 0, got -1.0"),
        ({"estimate": "sirt", "start_step": -1}, ValueError, "warm_start_step must be an integer >= 0, got -1"),
    ],
)
def test_bad_settings_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        WarmStart(**kwargs)


def test_estimate_from_a_tensor_or_a_named_solver():
    op = ZAxisAverage(2, axis=-1)
    x = torch.rand(2, 1, 8, 8, 16, dtype=torch.float64)
    y = op(x)
    given = WarmStart(x.float(), sigma=1.0).reconstruct(op, y)
    assert given.dtype == torch.float64 and torch.equal(given, x.float().double())
    named = WarmStart("cgls", start_step=1, solver_settings={"max_iter": 30}).reconstruct(op, y)
    torch.testing.assert_close(named, make_solver("cgls", op, max_iter=30)(y))
    assert WarmStart(x, sigma=1.0).to_json()["estimate"].endswith("-(2, 1, 8, 8, 16)-torch.float64")
