"""Sampling-loop overhead of TPDM: everything that is not the network's forward/backward, as a % of a step.

:class:`~medgen.inferers.perpendicular.PerpendicularSliceInferer` on a 32^3 volume (32 slices per step in minibatches
of 6, two network calls per minibatch) with a tiny NCSN++ (``nf=16``, ``ch_mult=(1, 2)``, one res block, no
attention; float32, 1 torch thread). Measured per step:

* ``overhead_ms``: the same call with the network replaced by a stand-in that costs next to nothing (the exact score
  of ``N(0, 1)`` data, two elementwise ops): its CPU time is the loop's own (setup, views, the predictor-corrector
  arithmetic, random draws, data consistency, progress/fingerprint; the stand-in's ops are included, so this is an
  upper bound). ``overhead_percent`` divides it by the step with the real network (``step_ms``, unprofiled).
* ``top_overhead_ops``: :mod:`torch.profiler` of one stand-in call, the ops with the most self CPU time and their
  share (``aten::normal_`` is TPDM's noise, drawn layout-preserving on permuted slice stacks as the official code does, which PyTorch serves with its serial
  kernel: about 6x a contiguous ``randn`` of the same size, and fixed by parity with the official draws).

Cases: ``uncond`` (no data term) and ``zsr`` (MR z-axis super-resolution x4 with DPS: a graph and an input gradient
per sub-step). Times are medians of ``--rounds`` calls after a warm-up.

Usage::

    python benchmarks/bench_loop_overhead.py [--steps 20] [--rounds 3] [--cases uncond zsr]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine  # noqa: E402

from medgen.inferers.perpendicular import PerpendicularSliceInferer  # noqa: E402
from medgen.networks.ncsnpp import NCSNpp  # noqa: E402

SIZE = 32
TARGET_PERCENT = 2.0


class StandIn(nn.Module):
    """The exact score ``-x / (1 + sigma^2)`` of standard normal data under VE noise: a network that costs nothing."""

    def __init__(self, sigmas: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("sigmas", sigmas)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (-1.0 - sigma.reshape(-1, *(1,) * (x.ndim - 1)) ** 2)


def make_call(case: str, network: nn.Module, steps: int) -> Any:
    """The inferer call of ``case`` (a closure without arguments)."""
    common = {"steps": steps, "seed": 0, "progress": False}
    if case == "uncond":
        inferer = PerpendicularSliceInferer("uncond", **common)
        return lambda: inferer((1, 1, SIZE, SIZE, SIZE), network)
    inferer = PerpendicularSliceInferer("zsr", factor=4, **common)
    low = torch.rand(1, 1, SIZE, SIZE, SIZE // 4, generator=torch.Generator().manual_seed(1))
    return lambda: inferer(low, network)


def cpu_ms_per_step(call: Any, rounds: int, steps: int) -> float:
    """Median CPU time per step over ``rounds`` calls (after one warm-up call)."""
    call()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        call()
        times.append((time.process_time() - start) * 1e3 / steps)
    return statistics.median(times)


def top_ops(call: Any, rows: int = 5) -> list[dict[str, Any]]:
    """The ``rows`` ops with the most self CPU time in one profiled call, with their share of all ops' time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    averages = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in averages)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in averages[:rows]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=["uncond", "zsr"], choices=["uncond", "zsr"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = NCSNpp(image_size=SIZE, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).eval()
    for case in args.cases:
        step_ms = cpu_ms_per_step(make_call(case, network, args.steps), args.rounds, args.steps)
        stand_in = make_call(case, StandIn(network.sigmas), args.steps)
        overhead_ms = cpu_ms_per_step(stand_in, args.rounds, args.steps)
        percent = 100.0 * overhead_ms / step_ms
        emit({
            "benchmark": "loop_overhead", "case": f"tpdm_{case}_{SIZE}", "steps": args.steps,
            "step_ms": round(step_ms, 3), "overhead_ms": round(overhead_ms, 3), "overhead_percent": round(percent, 2),
            "target_percent": TARGET_PERCENT, "met": percent <= TARGET_PERCENT,
            "top_overhead_ops": top_ops(stand_in),
            "rounds": args.rounds, **machine(),
        })


if __name__ == "__main__":
    main()
