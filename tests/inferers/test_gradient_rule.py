"""The gradient rule of :mod:`medgen.inferers.base`: every inferer whose data consistency differentiates through the
network (DPS: TPDM and PaDIS) gives the same result called plainly, under ``torch.no_grad()`` (what MONAI's evaluators
do) and under ``torch.inference_mode()`` with an input made in inference mode, and leaves no gradient on the network.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest
import torch

from medgen.inferers import PatchDiffusionInferer, PerpendicularSliceInferer
from medgen.networks import from_official
from medgen.physics import ParallelBeamCT, ZAxisAverage
from tests.conftest import load_parity

CONTEXTS: dict[str, Callable[[], Any]] = {
    "plain": nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


def _volume(shape: tuple[int, ...]) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.6
    return (inside.float() * 0.7 + 0.1)[None, None]


def _tpdm(dps_weight: float) -> tuple[Any, Any, torch.Tensor]:
    tiny = load_parity("ncsnpp_tiny")
    network = from_official("score_sde_ncsnpp", tiny["state_dict"], tiny["config"])
    inferer = PerpendicularSliceInferer("zsr", factor=2, dps_weight=dps_weight, steps=3, batch_size=8, seed=0,
                                        progress=False)
    return inferer, network, ZAxisAverage(2)(_volume((8, 8, 8)))


def _padis(dps_weight: float) -> tuple[Any, Any, torch.Tensor]:
    tiny = load_parity("padis_songunet_tiny")
    network = from_official("padis_edm", tiny["state_dict"], tiny["config"])
    operator = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32)
    inferer = PatchDiffusionInferer(operator, patch_size=8, pad=8, num_steps=3, inner_iterations=2, sigma_min=0.01,
                                    sigma_max=1.0, zeta=dps_weight, solver="dps", seed=0, progress=False)
    return inferer, network, operator(_volume((16, 16)))


CASES = {"TPDM zsr DPS": _tpdm, "PaDIS sparse-view CT DPS": _padis}


@pytest.mark.parametrize("case", list(CASES))
def test_dps_inferers_give_one_result_under_no_grad_and_inference_mode(case):
    inferer, network, measurement = CASES[case](1.0)
    results = {}
    for name, context in CONTEXTS.items():
        with context():
            given = measurement.clone()  # under inference_mode this is an inference tensor, as a MONAI loader's
            results[name] = inferer(given, network).as_tensor().detach()
        assert all(p.grad is None for p in network.parameters()), f"{name}: gradients were left on the network"
    assert torch.isfinite(results["plain"]).all()
    assert torch.equal(results["no_grad"], results["plain"])
    assert torch.equal(results["inference_mode"], results["plain"])
    # the rule is not vacuous: without the gradient term the result differs
    undamped, network, measurement = CASES[case](0.0)
    with torch.no_grad():
        assert not torch.equal(undamped(measurement, network).as_tensor(), results["plain"])
