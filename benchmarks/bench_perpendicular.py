"""Benchmark TPDM sampling (:mod:`medgen.inferers.perpendicular`) and print JSON.

Two networks:

- ``tiny``: the parity NCSN++ architecture (TPDM's config shrunk to 32 px, nf 16, ch_mult (1, 2, 2), 1 res block,
  attention at 16; random weights), timed on whole :class:`PerpendicularSliceInferer` runs over a 32^3 volume:
  unconditional (no gradients) and MR-ZSR (DPS: two backward passes through the network per primary step);
- ``full`` (with ``--full``): TPDM's BMR_ZSR_256 NCSN++ (61.4M parameters, random weights) timed on one
  :func:`~medgen.diffusion.samplers.pc_step` of a minibatch of ``--full-slices`` 256x256 slices, with and without DPS, for ``--full-steps``
  steps (keep them small on a CPU: one step of 2 slices takes tens of seconds).

Reported per entry: seconds per PC step per slice (one corrector + one predictor network call, plus DPS backward
passes where applicable), and peak memory: ``resource`` max RSS of the process (monotone over the run, so later
entries include earlier ones) and, on CUDA, ``torch.cuda.max_memory_allocated`` (reset per entry).

Usage::

    python benchmarks/bench_perpendicular.py [--device cpu] [--threads 2] [--steps 2] [--full]
        [--full-slices 2] [--full-steps 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from common import peak_rss_mib, synchronize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgen.diffusion.sde import VESDE  # noqa: E402
from medgen.diffusion.consistency import DPS  # noqa: E402
from medgen.diffusion.priors import ScorePrior  # noqa: E402
from medgen.diffusion.samplers import pc_step  # noqa: E402
from medgen.inferers.perpendicular import PerpendicularSliceInferer  # noqa: E402
from medgen.networks.ncsnpp import NCSNpp  # noqa: E402
from medgen.physics.zaxis import ZAxisAverage  # noqa: E402

TINY = dict(image_size=32, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(16,))
FULL = dict(image_size=256, nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,))  # BMR_ZSR_256




def _memory(device: torch.device) -> dict:
    out = {"peak_rss_mb": round(peak_rss_mib(), 1)}
    if device.type == "cuda":
        out["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 1024**2, 1)
    return out


def _reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_tiny(device: torch.device, steps: int, size: int = 32, batch_size: int = 16) -> list[dict]:
    torch.manual_seed(0)
    network = NCSNpp(**TINY, init_scale=1.0).to(device).eval()
    results = []
    volume = torch.rand(1, 1, size, size, size, device=device)
    low = ZAxisAverage(4, axis=-1)(volume)
    for task, inputs, kwargs in (
        ("uncond", (size, size, size), {}),
        ("zsr", low, {"factor": 4, "dps_weight": 1.0}),
    ):
        inferer = PerpendicularSliceInferer(
            task, steps=steps, K=2, batch_size=batch_size, seed=0, progress=False, **kwargs
        )
        inferer(inputs, network, device=device) if task == "uncond" else inferer(inputs, network)  # warm-up
        _reset(device)
        synchronize(device)
        start = time.perf_counter()
        inferer(inputs, network, device=device) if task == "uncond" else inferer(inputs, network)
        synchronize(device)
        seconds = time.perf_counter() - start
        primary_steps = sum(i % 2 != 1 for i in range(steps))
        results.append(
            {
                "network": "tiny",
                "parameters": sum(p.numel() for p in network.parameters()),
                "task": task,
                "volume": [size] * 3,
                "batch_size": batch_size,
                "steps": steps,
                "primary_steps_with_dps": primary_steps if task == "zsr" else 0,
                "seconds_total": round(seconds, 4),
                "seconds_per_pc_step_per_slice": seconds / (steps * size),
                **_memory(device),
            }
        )
    return results


def bench_full(device: torch.device, slices: int, steps: int) -> list[dict]:
    torch.manual_seed(0)
    network = NCSNpp(**FULL, init_scale=1.0).to(device).eval()
    sde = VESDE(0.01, 378.0, 2000)
    prior = ScorePrior(network)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(slices, 1, 256, 256, generator=generator, device=device) * 2 + 0.5
    operator = ZAxisAverage(5, axis=-1, length=256)
    dps = DPS(operator, operator(torch.rand(slices, 1, 256, 256, device=device)), weight=4.0 * 5**0.5)

    results = []
    for name, term in (("pc_step", None), ("pc_step_dps", dps)):
        _reset(device)
        synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            pc_step(prior, x, 0.5, sde, corrector_consistency=term, predictor_consistency=term, generator=generator)
        synchronize(device)
        seconds = time.perf_counter() - start
        results.append(
            {
                "network": "full_bmr_zsr_256",
                "parameters": sum(p.numel() for p in network.parameters()),
                "measurement": name,
                "slices": slices,
                "image": [256, 256],
                "steps": steps,
                "seconds_total": round(seconds, 3),
                "seconds_per_pc_step_per_slice": seconds / (steps * slices),
                "estimated_hours_per_256_cube_2000_steps": seconds / (steps * slices) * 256 * 2000 / 3600,
                **_memory(device),
            }
        )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    parser.add_argument("--steps", type=int, default=2, help="PC steps of the tiny runs")
    parser.add_argument("--full", action="store_true", help="also time the full-size 256 NCSN++")
    parser.add_argument("--full-slices", type=int, default=2)
    parser.add_argument("--full-steps", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report = {
        "benchmark": "tpdm_perpendicular",
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "results": bench_tiny(device, args.steps),
    }
    if args.full:
        report["results"] += bench_full(device, args.full_slices, args.full_steps)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
