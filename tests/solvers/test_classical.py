"""medgen.solvers.classical: solvers by name with a rule, reference-free and oracle baselines together."""

from __future__ import annotations

import pytest
import torch

from medgen.physics.zaxis import ZAxisAverage
from medgen.solvers import CGLS, SIRT, TVPDHG, ClassicalBaseline, make_solver, psnr_per_item, run_baselines


def _problem(seed: int = 0) -> tuple[ZAxisAverage, torch.Tensor, torch.Tensor]:
    """A piecewise-constant 16^3 volume, 2x z-averaged, with noise of std 0.05."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, 1, 16, 16, 16)
    x[..., 4:12, 3:10, 2:14] = 0.8
    x[..., 6:10, 6:14, 5:9] = 0.3
    op = ZAxisAverage(2, axis=-1)
    y = op(x) + 0.05 * torch.randn(op(x).shape, generator=generator)
    return op, x, y


def test_make_solver_puts_the_rule_where_each_method_takes_it():
    op = ZAxisAverage(2, axis=-1)
    assert isinstance(make_solver("cgls", op), CGLS) and make_solver("cgls", op).settings.lam == "discrepancy"
    sirt = make_solver("sirt", op, "oracle", max_iter=7)
    assert isinstance(sirt, SIRT) and sirt.settings.stopping == "oracle" and sirt.settings.max_iter == 7
    tv = make_solver("tv_pdhg", op, spatial_dims=3)
    assert isinstance(tv, TVPDHG) and tv.rule == "discrepancy"
    with pytest.raises(ValueError, match="method must be one of"):
        make_solver("tv", op)
    with pytest.raises(ValueError, match="rule must be one of"):
        make_solver("cgls", op, "fixed")
    with pytest.raises(ValueError, match="lam of 'cgls' is chosen by rule"):
        make_solver("cgls", op, lam=0.1)


def test_baseline_beats_the_pseudo_inverse_reference_free_and_the_oracle_is_an_upper_bound():
    op, x, y = _problem()
    baseline = ClassicalBaseline("tv_pdhg", op, name="tv", spatial_dims=3, box=(0.0, 1.0), max_iter=200,
                                 search_steps=8, search_range=(1e-6, 1.0))
    results = baseline(y, reference=x)
    assert set(results) == {"tv", "tv_oracle"} and set(baseline.info) == {"tv", "tv_oracle"}
    scores = {key: float(psnr_per_item(image, x)) for key, image in results.items()}
    pseudo_inverse = float(psnr_per_item(op.pseudo_inverse(y), x))
    assert scores["tv"] > pseudo_inverse + 2.0, (scores, pseudo_inverse)  # measured: 25.1 vs 22.1 dB
    assert scores["tv_oracle"] >= scores["tv"] - 0.05  # the oracle searches the same lambdas against the truth
    assert baseline.info["tv"]["rule"] == "discrepancy" and baseline.info["tv"]["noise_std"][0] > 0
    assert baseline.info["tv_oracle"]["psnr"][0] == pytest.approx(scores["tv_oracle"], abs=1e-3)
    # without a reference only the reference-free result
    assert set(baseline(y)) == {"tv"} and set(baseline.info) == {"tv"}


def test_run_baselines_collects_images_and_info_and_refuses_duplicates():
    op, x, y = _problem(1)
    baselines = [ClassicalBaseline("cgls", op, max_iter=50), ClassicalBaseline("sirt", op, max_iter=200)]
    images, info = run_baselines(baselines, y, x, transform=lambda t: 2 * t)
    assert set(images) == set(info) == {"cgls", "cgls_oracle", "sirt", "sirt_oracle"}
    torch.testing.assert_close(images["cgls"], 2 * baselines[0](y)["cgls"])
    with pytest.raises(ValueError, match="different names"):
        run_baselines([baselines[0], ClassicalBaseline("cgls", op)], y)
    with pytest.raises(TypeError, match="ClassicalBaseline"):
        run_baselines([object()], y)
