"""Shared fixtures: the parity tensors copied from the official code (see tests/data/parity/README.md) and the device
that device-taking tests run on (``--device cuda`` or ``MEDGEN_TEST_DEVICE=cuda``; default ``cpu``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import os

import pytest
import torch

PARITY_DIR = Path(__file__).parent / "data" / "parity"

# The test networks are tiny: with two intra-op threads their calls cost more in thread hand-offs than they gain, and
# on a shared 2-core machine they thrash (measured 5-100x slower per call under load). One thread keeps timings stable.
torch.set_num_threads(1)


def load_parity(name: str) -> dict[str, Any]:
    """Load ``tests/data/parity/<name>.pt`` (a dict of tensors and metadata)."""
    return torch.load(PARITY_DIR / f"{name}.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def parity():
    """``parity("ncsnpp_tiny")`` -> the parity dict."""
    return load_parity


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=os.environ.get("MEDGEN_TEST_DEVICE", "cpu"),
        help="device of the tests that take the `device` fixture (default: $MEDGEN_TEST_DEVICE or cpu)",
    )


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device under test (``--device`` / ``$MEDGEN_TEST_DEVICE``); a CUDA device on a machine without one fails
    loudly rather than silently testing the CPU."""
    name = torch.device(request.config.getoption("--device"))
    if name.type == "cuda" and not torch.cuda.is_available():
        pytest.fail(f"--device {name} was requested but torch.cuda.is_available() is False.")
    return name
