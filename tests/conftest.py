"""Shared fixtures: the parity tensors copied from the official code (see tests/data/parity/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

PARITY_DIR = Path(__file__).parent / "data" / "parity"


def load_parity(name: str) -> dict[str, Any]:
    """Load ``tests/data/parity/<name>.pt`` (a dict of tensors and metadata)."""
    return torch.load(PARITY_DIR / f"{name}.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def parity():
    """``parity("ncsnpp_tiny")`` -> the parity dict."""
    return load_parity
