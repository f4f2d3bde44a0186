"""Speed and memory of the CTCA high-res slab sampler (:class:`medgen.inferers.slab.SlabPatchInferer`).

For each configuration, in a fresh subprocess (so the peak resident memory is that configuration's own):

- ``network_call_s``: seconds of ONE network call on one slab (batch 1, no guidance), median of ``--repeats`` after
  one warm-up call;
- ``network_call_cpu_s``: the same in process CPU seconds (all threads), less sensitive to a loaded machine;
- ``step_s``: seconds per sampler step of ``SlabPatchInferer`` on a volume of ``--slabs`` slabs (all slabs in one
  network call, tiled official layout), i.e. ``total / steps`` of a 2-step run (conditioning built once);
- ``peak_rss_mb``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the runs, ``model_rss_mb`` after building the
  network (weights included), on CUDA also ``cuda_max_allocated_mb`` (``torch.cuda.max_memory_allocated``).

Configurations (``--configs``):

- ``tiny``: the test-sized model (8 channels, 2 levels), slab 32x32x8;
- ``readme_narrow``: the README high-res architecture (channel_mult 1,2,3,4, 2 res blocks, attention at rates 8 and
  16, 64-channel heads, resblock_updown, scale-shift norm, learned sigma, 9 classes + z-position, reference branch) on
  a 128x128x16 slab with a reduced width (``--width``, default 32, and SPADE hidden width 32 instead of 128), because
  the 474M-parameter model needs minutes per call on a shared 2-core CPU;
- ``readme``: the README high-res model exactly (128 channels, SPADE hidden 128; 473,967,234 parameters) on
  128x128x16: opt in on a machine that can afford it.

Prints one JSON object: ``{"device", "torch", "threads", "results": [...]}``.

Usage::

    python benchmarks/bench_slab.py --configs tiny,readme_narrow
    python benchmarks/bench_slab.py --configs readme --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

README_HR = dict(channel_mult=(1, 2, 3, 4), num_res_blocks=2, attention_resolutions=(8, 16), num_classes=9,
                 position_channel=True, reference_channels=2, num_head_channels=64, use_scale_shift_norm=True,
                 resblock_updown=True, learn_sigma=True)


def configuration(name: str, width: int) -> dict[str, Any]:
    """Network arguments, slab in-plane size, slab depth and low-res reference size of a named configuration."""
    if name == "tiny":
        net = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=3, position_channel=True,
                   reference_channels=2, learn_sigma=True, use_scale_shift_norm=True, num_groups=4,
                   spade_hidden_channels=4)
        return dict(network=net, in_plane=32, slab_depth=8, low_res=(16, 16, 16))
    if name == "readme_narrow":
        net = dict(README_HR, model_channels=width, spade_hidden_channels=width,
                   num_head_channels=min(64, width), num_groups=min(32, width // 4 or 1))
        return dict(network=net, in_plane=128, slab_depth=16, low_res=(64, 64, 64))
    if name == "readme":
        return dict(network=dict(README_HR, model_channels=128), in_plane=128, slab_depth=16, low_res=(64, 64, 64))
    raise ValueError(f"unknown configuration {name!r}; choose tiny, readme_narrow or readme.")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(name: str, width: int, slabs: int, repeats: int, device: str) -> dict[str, Any]:
    """Measure one configuration in this process."""
    from medgen.inferers.slab import SlabPatchInferer
    from medgen.networks.sdm_unet import SDMUNet, one_hot_labels, reference_for_slab, slab_z_position_channel

    cfg = configuration(name, width)
    dev = torch.device(device)
    torch.manual_seed(0)
    net = SDMUNet(**cfg["network"]).to(dev).eval()
    params = sum(p.numel() for p in net.parameters())
    model_rss = rss_mb()
    size, depth = cfg["in_plane"], cfg["slab_depth"]
    classes = cfg["network"]["num_classes"]
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (1, 1, size, size, depth * slabs), generator=g)
    low_res = torch.randn(1, 1, *cfg["low_res"], generator=g)
    x = torch.randn(1, 1, size, size, depth, generator=g).to(dev)
    y = torch.cat([one_hot_labels(labels[..., :depth], classes), slab_z_position_channel(0, depth, size)[None]], 1)
    r = reference_for_slab(low_res[0], 0, depth, depth * slabs)[None]
    y, r, t = y.to(dev), r.to(dev), torch.tensor([500], device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times, cpu_times = [], []
    with torch.no_grad():
        net(x, t, y, r)  # warm-up (allocator, kernels)
        for _ in range(repeats):
            sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            net(x, t, y, r)
            sync()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    inferer = SlabPatchInferer(slab_depth=depth, timestep_respacing=2, seed=0, progress=False)
    sync()
    start = time.perf_counter()
    inferer(labels.to(dev), net, reference=low_res.to(dev))
    sync()
    step = (time.perf_counter() - start) / 2
    result = {
        "config": name,
        "parameters": params,
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg["network"].items()},
        "slab_shape": [size, size, depth],
        "slabs_per_step": slabs,
        "network_call_s": statistics.median(times),
        "network_call_all_s": times,
        "network_call_cpu_s": statistics.median(cpu_times),
        "step_s": step,
        "model_rss_mb": model_rss,
        "peak_rss_mb": rss_mb(),
    }
    if dev.type == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,readme_narrow", help="comma-separated: tiny, readme_narrow, readme")
    parser.add_argument("--width", type=int, default=32, help="model_channels of readme_narrow (README: 128)")
    parser.add_argument("--slabs", type=int, default=2, help="slabs per volume in the step measurement")
    parser.add_argument("--repeats", type=int, default=3, help="network calls timed per configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.single is not None:
        print(json.dumps(run_one(args.single, args.width, args.slabs, args.repeats, args.device)))
        return
    results = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        configuration(name, args.width)  # fail early on a bad name
        command = [sys.executable, __file__, "--single", name, "--width", str(args.width), "--slabs",
                   str(args.slabs), "--repeats", str(args.repeats), "--device", args.device,
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"device": args.device, "torch": torch.__version__, "threads": args.threads or
                      torch.get_num_threads(), "load_average": list(os.getloadavg()), "cpu_count": os.cpu_count(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
