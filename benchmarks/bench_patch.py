"""Benchmark one PaDIS whole-image denoiser call (:class:`medgen.diffusion.priors.PatchPrior`) and print JSON.

Two networks: the tiny parity SongUNet (``tests/data/parity/padis_songunet_tiny.pt``, 16x16 image, patch 8, pad 8)
and the full PaDIS ddpmpp configuration (``train.py --arch=ddpmpp --precond=pedm --pad_width=24``, 54.4M parameters,
random weights) on a 256x256 image with patch 56 and pad 24 (one call = 25 patches of 56x56 in one batch).

For each: seconds per call without gradients (Langevin/PC) and with the input gradient of a residual norm through the
denoiser (what each DPS inner iteration costs), and peak memory: ``resource`` max RSS of the process (monotone over
the run: read after the no-grad calls, then after the gradient calls) and, on CUDA,
``torch.cuda.max_memory_allocated`` of each kind of call.

Usage::

    python benchmarks/bench_patch.py [--device cpu] [--repeats 3] [--threads 2] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from common import peak_rss_mib, synchronize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgen.diffusion.priors import PatchPrior  # noqa: E402
from medgen.networks.convert import from_official  # noqa: E402
from medgen.networks.songunet import PatchEDMPrecond  # noqa: E402

# PaDIS train.py defaults with --arch=ddpmpp --precond=pedm --pad_width=24 (img_resolution = 256 + 2 * 24)
PADIS_DDPMPP_304 = dict(
    img_resolution=304, img_channels=3, out_channels=1, label_dim=0, use_fp16=False, sigma_min=0,
    sigma_max=float("inf"), sigma_data=0.5, model_type="SongUNet", four_channels=1, hash_channels=1,
    embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1,
    resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2], dropout=0.13,
)  # fmt: skip




def bench(name: str, network, image_size: int, patch_size: int, pad: int, repeats: int, device: torch.device) -> dict:
    denoiser = PatchPrior(network, patch_size, pad)
    canvas = denoiser.canvas_size(image_size)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(1, 1, canvas, canvas, generator=generator, device=device)
    sigma = 0.5
    results = {
        "name": name,
        "image_size": image_size,
        "patch_size": patch_size,
        "pad": pad,
        "patches_per_call": len(denoiser.patch_starts(image_size)) ** 2,
        "parameters": sum(p.numel() for p in network.parameters()),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def no_grad_call() -> None:
        with torch.no_grad():
            denoiser.denoise(x, sigma, generator=generator)

    def grad_call() -> None:
        xg = x.detach().requires_grad_(True)
        out = denoiser.denoise(xg, sigma, generator=generator)
        (grad,) = torch.autograd.grad(torch.linalg.vector_norm(out[..., pad:-pad, pad:-pad]), xg)
        assert grad.shape == x.shape

    for label, fn in (("no_grad", no_grad_call), ("with_input_grad", grad_call)):
        fn()  # warm-up (allocator, kernel selection)
        synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
        results[f"seconds_per_call_{label}"] = min(times)
        results[f"seconds_per_call_{label}_all"] = times
        results[f"max_rss_mb_after_{label}"] = peak_rss_mib()
        if device.type == "cuda":
            results[f"cuda_max_memory_allocated_mb_{label}"] = torch.cuda.max_memory_allocated(device) / 1024**2
            torch.cuda.reset_peak_memory_stats(device)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip-full", action="store_true", help="only the tiny network")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    report = {
        "benchmark": "padis_patch_denoiser",
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": [],
    }
    tiny = torch.load(ROOT / "tests/data/parity/padis_songunet_tiny.pt", map_location="cpu", weights_only=True)
    net = from_official("padis_edm", tiny["state_dict"], tiny["config"]).to(device)
    report["runs"].append(bench("tiny_parity_songunet", net, 16, 8, 8, args.repeats, device))
    if not args.skip_full:
        torch.manual_seed(0)
        net = PatchEDMPrecond.from_config(PADIS_DDPMPP_304).eval().to(device)
        report["runs"].append(bench("padis_ddpmpp_304", net, 256, 56, 24, args.repeats, device))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
