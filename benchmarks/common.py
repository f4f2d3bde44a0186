"""Measurement helpers shared by the benchmark scripts (run them as ``python benchmarks/bench_<name>.py``)."""

from __future__ import annotations

import importlib
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["peak_rss_mib", "synchronize", "interleaved_medians", "peer", "emit", "relative_l2", "machine"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0**2 if sys.platform == "darwin" else rss / 1024.0


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` so wall-clock timings are complete (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(calls: Mapping[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median CPU time (``time.process_time``, all threads of the process, in ms) of each call over ``rounds`` rounds.

    Every round runs each call once, in turn, so a slow phase of a shared machine hits all of them alike; one
    warm-up round (caches, FFT plans, allocator) is not counted.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(rounds + 1):
        for name, call in calls.items():
            start = time.process_time()
            call()
            if round_index:
                times[name].append((time.process_time() - start) * 1e3)
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def peer(module: str, distribution: str | None = None) -> tuple[Any | None, str]:
    """``(module, version)`` of an optional peer library, or ``(None, "unavailable: <reason>")``."""
    try:
        loaded = importlib.import_module(module)
    except Exception as error:  # a missing or broken optional dependency is reported, not fatal
        return None, f"unavailable: {type(error).__name__}: {error}".splitlines()[0][:200]
    try:
        from importlib.metadata import version

        return loaded, version(distribution or module)
    except Exception:
        return loaded, str(getattr(loaded, "__version__", "unknown"))


def relative_l2(a: Any, b: Any) -> float:
    """``||a - b|| / ||b||`` of two arrays or tensors (float64)."""
    a = torch.as_tensor(a).to(torch.complex128 if torch.as_tensor(a).is_complex() else torch.float64)
    b = torch.as_tensor(b).to(a.dtype)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def machine() -> dict[str, Any]:
    """Context printed with every benchmark: torch version, threads, CPU."""
    cpu = platform.processor() or platform.machine()
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu}


def emit(record: Mapping[str, Any]) -> None:
    """Print one JSON line (flushed, so partial runs keep their lines)."""
    print(json.dumps(record), flush=True)
