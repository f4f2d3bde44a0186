"""Shared fixtures: the parity tensors copied from the official code (see tests/data/parity/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
