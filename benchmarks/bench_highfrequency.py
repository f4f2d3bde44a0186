"""Speed and peak memory of one HFS-SDE predictor-corrector step (:class:`HighFrequencySpaceInferer`).

One step = Langevin corrector + Euler-Maruyama predictor at the same ``t``: 2 network calls, 2 data-consistency
gradients ``A^H (A x - y)`` on multi-coil k-space, 3 high-frequency projections. Two networks:

- ``tiny``: the DDPM U-Net of ``tests/data/parity/hfs_sde.pt`` (nf 64, ch_mult (1, 1), no residual blocks), 32x32;
- ``full``: HFS-SDE's released configuration (``configs/hfssde/ddpm_continuous.py``: nf 128, ch_mult (1, 2, 2, 2),
  2 residual blocks, 320x320, 2 channels; random weights, which cost the same as trained ones).

Each case runs in its own subprocess so the peak resident memory (``resource.getrusage(...).ru_maxrss``, the whole
process: Python, torch, weights and activations) belongs to that case alone; on CUDA ``torch.cuda.max_memory_allocated``
is reported too. Prints one JSON document.

Usage::

    python benchmarks/bench_highfrequency.py                       # both cases, CPU
    python benchmarks/bench_highfrequency.py --case full --device cuda --coils 15
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

from medgen.diffusion.samplers import pc_step  # noqa: E402
from medgen.inferers.highfrequency import HighFrequencySpaceInferer
from medgen.networks.ddpm import DDPMUNet
from medgen.physics.mri import fft2c

CASES: dict[str, dict[str, Any]] = {
    "tiny": {
        "image_size": 32,
        "network": {"nf": 64, "ch_mult": (1, 1), "num_res_blocks": 0, "attn_resolutions": (), "dropout": 0.0},
    },
    "full": {
        "image_size": 320,
        "network": {"nf": 128, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 2, "attn_resolutions": (16,), "dropout": 0.1},
    },
}


def _problem(size: int, coils: int, device: torch.device, generator: torch.Generator):
    """Random multi-coil k-space, unit-RSS maps, HFS-SDE's default masks (uniform stride 10 + 24 ACS; 16 low)."""
    shape = (1, coils, size, size)
    maps = torch.randn(shape, dtype=torch.complex64, generator=generator, device=device)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    image = torch.randn((1, 1, size, size), dtype=torch.complex64, generator=generator, device=device)
    centre = torch.arange((size - 24) // 2, (size + 24) // 2, device=device)
    outer = torch.tensor([c for c in range(size) if c not in set(centre.tolist())], device=device)
    mask = torch.zeros(size, size, device=device)
    mask[:, centre] = 1
    mask[:, outer[::10]] = 1
    low = torch.zeros(size, size, device=device)
    low[:, (size - 16) // 2 : (size + 16) // 2] = 1
    kspace = fft2c(maps * image) * mask
    return kspace / (1.5 * kspace.std()), mask, maps, low


def run_case(name: str, device: str, coils: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Time ``repeats`` PC steps (after ``warmup`` untimed ones) of case ``name`` in this process."""
    device_ = torch.device(device)
    spec = CASES[name]
    size = spec["image_size"]
    generator = torch.Generator(device=device_).manual_seed(0)
    network = DDPMUNet(in_channels=2, image_size=size, **spec["network"]).to(device_).eval()
    kspace, mask, maps, low = _problem(size, coils, device_, generator)
    inferer = HighFrequencySpaceInferer(low, accelerated=True, seed=0, progress=False)
    measurement = inferer.measurement(kspace, mask, maps)
    sde = inferer.make_sde(device_)
    prior, st = inferer.prior(network), inferer.settings
    corrector_term, predictor_term = measurement.term(st.corrector_lam), measurement.term(st.lam)
    if device_.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device_)
    times = []
    with torch.no_grad():
        x = inferer.initial_sample(measurement, sde, generator)
        t = torch.full((1,), 0.5, device=device_)
        for i in range(warmup + repeats):
            if device_.type == "cuda":
                torch.cuda.synchronize(device_)
            start = time.perf_counter()
            x_next, _ = pc_step(prior, x, t, sde, st.pc, corrector_consistency=corrector_term,
                                predictor_consistency=predictor_term, generator=generator)
            if device_.type == "cuda":
                torch.cuda.synchronize(device_)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    result = {
        "case": name,
        "image_size": size,
        "coils": coils,
        "batch": 1,
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in spec["network"].items()},
        "parameters": sum(p.numel() for p in network.parameters()),
        "network_calls_per_step": 2,
        "seconds_per_pc_step": min(times),
        "seconds_per_pc_step_all": times,
        "finite": bool(torch.isfinite(x_next).all()),
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if device_.type == "cuda":
        result["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(device_) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--case", choices=["all", *CASES], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--coils", type=int, default=15, help="receive coils (fastMRI knee: 15)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default: tiny 5, full 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: tiny 1, full 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.case != "all":
        repeats = args.repeats if args.repeats is not None else (5 if args.case == "tiny" else 1)
        warmup = args.warmup if args.warmup is not None else (1 if args.case == "tiny" else 0)
        print(json.dumps(run_case(args.case, args.device, args.coils, repeats, warmup)))
        return
    cases = []
    for name in CASES:
        command = [sys.executable, __file__, "--case", name, "--device", args.device, "--coils", str(args.coils)]
        for flag in ("repeats", "warmup", "threads"):
            if getattr(args, flag) is not None:
                command += [f"--{flag}", str(getattr(args, flag))]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode:
            raise RuntimeError(f"case {name!r} failed ({' '.join(command)}):\n{completed.stderr}")
        cases.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "pc_step (HighFrequencySpaceInferer's parts)",
        "device": args.device,
        "torch": torch.__version__,
        "threads": args.threads if args.threads is not None else torch.get_num_threads(),
        "cases": cases,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
