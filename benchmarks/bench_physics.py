"""Speed and peak memory of medgen's physics operators and wavelet transforms; prints one JSON object.

Each case runs in its own spawned process, so its peak resident memory (``resource.getrusage(...).ru_maxrss``, in MiB)
belongs to that case alone; ``baseline_rss_mib`` is that process's peak after importing torch, MONAI and medgen and
before building the case's inputs, so ``peak_rss_mib - baseline_rss_mib`` is what the case itself needed.
Times are the median (and min/max) of ``--repeats`` runs after one warm-up run, in milliseconds, float32 on the CPU
(``--device cuda`` synchronises around every run).

Cases (the sizes of the methods' defaults):

* ``ct``: :meth:`ParallelBeamCT.tpdm` at 256 x 256 (36 views, 363 detectors), batch 6: forward, adjoint, FBP.
* ``mri``: :class:`CartesianMRI` with 16 birdcage coils at 320 x 320 (equispaced 4x mask, 24 ACS lines): forward,
  adjoint.
* ``haar128`` / ``haar256``: :func:`haar_dwt3d` / :func:`haar_idwt3d` of one ``(1, 1, n, n, n)`` volume.
* ``zaxis``: :class:`ZAxisAverage` (factor 4, last axis) of one ``(1, 1, 256, 256, 256)`` volume: forward, adjoint,
  pseudo-inverse.

Usage::

    python benchmarks/bench_physics.py [--repeats 5] [--cases ct mri haar128 haar256 zaxis] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch

# imported before any measurement, so that a case's baseline memory already holds torch, MONAI and medgen
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.transforms.kspace import birdcage_sensitivity_maps, equispaced_mask
from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d

CASES = ("ct", "mri", "haar128", "haar256", "zaxis")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _time(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> dict[str, float]:
    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1e3

    run()  # warm-up: grid caches, FFT plans, allocator
    times = [run() for _ in range(repeats)]
    return {
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "max_ms": round(max(times), 2),
    }


def _build(case: str, device: torch.device) -> tuple[dict[str, Callable[[], torch.Tensor]], dict]:
    """The timed callables of one case and a description of its sizes."""
    g = torch.Generator(device=device).manual_seed(0)
    if case == "ct":
        op = ParallelBeamCT.tpdm(256).to(device)
        x = torch.rand(6, 1, 256, 256, generator=g, device=device)
        y = op(x)
        info = {"input": list(x.shape), "sinogram": list(y.shape), "views": op.num_angles}
        return {"forward": lambda: op(x), "adjoint": lambda: op.adjoint(y), "fbp": lambda: op.fbp(y)}, info
    if case == "mri":
        maps = birdcage_sensitivity_maps((320, 320), num_coils=16, device=device)[None]
        op = CartesianMRI(equispaced_mask(320, 4, acs_lines=24), maps).to(device)
        x = torch.randn(1, 1, 320, 320, dtype=torch.complex64, generator=g, device=device)
        y = op(x)
        info = {"image": list(x.shape), "kspace": list(y.shape), "dtype": "complex64"}
        return {"forward": lambda: op(x), "adjoint": lambda: op.adjoint(y)}, info
    if case in ("haar128", "haar256"):
        n = int(case[4:])
        x = torch.randn(1, 1, n, n, n, generator=g, device=device)
        c = haar_dwt3d(x)
        info = {"input": list(x.shape), "coefficients": list(c.shape)}
        return {"dwt": lambda: haar_dwt3d(x), "idwt": lambda: haar_idwt3d(c)}, info
    if case == "zaxis":
        op = ZAxisAverage(4, axis=-1).to(device)
        x = torch.randn(1, 1, 256, 256, 256, generator=g, device=device)
        y = op(x)
        info = {"input": list(x.shape), "measurement": list(y.shape), "factor": 4}
        return {
            "forward": lambda: op(x),
            "adjoint": lambda: op.adjoint(y),
            "pseudo_inverse": lambda: op.pseudo_inverse(y),
        }, info
    raise ValueError(f"case must be one of {CASES}, got {case!r}.")


def run_case(case: str, repeats: int, device: str, threads: int | None) -> dict:
    """Run one case in the current process and return its timings and peak memory."""
    if threads is not None:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    baseline = _rss_mib()
    with torch.no_grad():
        calls, info = _build(case, dev)
        timings = {name: _time(fn, repeats, dev) for name, fn in calls.items()}
    result = {**info, **timings, "peak_rss_mib": round(_rss_mib(), 1), "baseline_rss_mib": round(baseline, 1)}
    if dev.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per operation (after one warm-up)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each case process")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    context = multiprocessing.get_context("spawn")
    results = {}
    for case in args.cases:
        with context.Pool(1) as pool:  # a fresh process per case: its ru_maxrss is that case's peak
            results[case] = pool.apply(run_case, (case, args.repeats, args.device, args.threads))
    report = {
        "benchmark": "physics",
        "torch": torch.__version__,
        "device": args.device,
        "threads": args.threads or torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "units": {"time": "ms (median/min/max of repeats)", "memory": "MiB peak RSS of the case's process"},
        "cases": results,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
