"""Measurement helpers shared by the benchmark scripts (run them as ``python benchmarks/bench_<name>.py``)."""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_rss_mib", "synchronize"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0**2 if sys.platform == "darwin" else rss / 1024.0


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` so wall-clock timings are complete (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
