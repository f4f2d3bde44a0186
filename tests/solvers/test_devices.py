"""Every solver runs where its inputs are: the same result on `--device` (e.g. cuda) as on the CPU (skipped when
the device under test is the CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.solvers import CGLS, SIRT, TVPDHG, L1WaveletFISTA
from tests.solvers.helpers import disk_phantom, generator


def _problems():
    ct = ParallelBeamCT(16, 8)
    image = disk_phantom(16, 2)
    mask = torch.zeros(16, 16, dtype=torch.float64)
    mask[:, ::2] = 1
    mri = CartesianMRI(mask)
    noise = 0.01 * torch.randn(2, 1, 16, 16, dtype=torch.complex128, generator=generator(0))
    return [
        (SIRT, ct, ct(image), {"stopping": "discrepancy", "max_iter": 50, "box": (0, 1)}),
        (TVPDHG, ct, ct(image), {"lam": "discrepancy", "max_iter": 40, "search_steps": 3, "box": (0, 1)}),
        (CGLS, mri, mri(image.to(torch.complex128)) + mask * noise, {"lam": "discrepancy", "search_steps": 3}),
        (L1WaveletFISTA, mri, mri(image.to(torch.complex128)) + mask * noise,
         {"lam": 1e-3, "wavelet": "haar", "max_iter": 40}),
    ]


@pytest.mark.parametrize("index", range(4))
def test_info_is_json_serialisable(index):
    cls, op, y, settings = _problems()[index]
    _, info = cls(op, **settings).solve(y)
    record = json.loads(json.dumps(info.to_dict()))
    assert record["rule"] in ("fixed", "discrepancy") and len(record["iterations"]) == 2


@pytest.mark.parametrize("index", range(4))
def test_device_matches_cpu(index, device):
    if device.type == "cpu":
        pytest.skip("compares the --device run with the CPU run")
    cls, op, y, settings = _problems()[index]
    x = cls(op, **settings)(y)
    x_cuda = cls(op.to(device), **settings)(y.to(device))
    assert x_cuda.device.type == device.type
    torch.testing.assert_close(x_cuda.cpu(), x, atol=1e-8 * float(x.abs().max()), rtol=0)
