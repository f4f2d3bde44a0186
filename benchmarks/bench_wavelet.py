"""Speed and memory of :class:`medgen.inferers.wavelet.WaveletDiffusionInferer` sampling steps; prints JSON.

Cases:

- ``tiny_32``: the tiny parity U-Net (``tests/data/parity/wdm_unet_tiny.pt`` config, random weights) on a 32^3 image
  (16^3 coefficients), a few full steps timed after one warm-up step;
- ``wdm_unet_128``: WDM's released ``ours_unet_128`` configuration (57.9M parameters, random weights) for ONE
  reverse step at 128^3 (64^3 x 8 coefficients; one CPU forward takes minutes on small machines).

Each step is :meth:`WaveletDiffusionInferer.reverse_step` (network call, image-space clipping, ancestral update).
Peak memory: ``resource`` max RSS of the process (CPU) and ``torch.cuda.max_memory_allocated`` (CUDA).

Usage::

    python benchmarks/bench_wavelet.py [--device cuda] [--tiny-steps 5] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch
from common import peak_rss_mib, synchronize

from medgen.inferers.wavelet import WaveletDiffusionInferer
from medgen.networks.guided_unet import GuidedUNet

TINY_CONFIG = dict(
    image_size=16, in_channels=8, model_channels=16, out_channels=8, num_res_blocks=1, attention_resolutions=(),
    dropout=0.0, channel_mult=(1, 2), conv_resample=True, dims=3, num_classes=None, use_checkpoint=False,
    use_fp16=False, num_heads=1, num_head_channels=-1, num_heads_upsample=-1, use_scale_shift_norm=False,
    resblock_updown=True, use_new_attention_order=False, num_groups=8, bottleneck_attention=False,
    resample_2d=False, additive_skips=True, decoder_device_thresh=0,
)
# WDM run.sh "ours_unet_128" (create_model arguments as UNetModel keywords)
WDM_UNET_128 = dict(TINY_CONFIG, image_size=128, model_channels=64, num_res_blocks=2, channel_mult=(1, 2, 2, 4, 4),
                    num_groups=32)




def bench(name: str, config: dict[str, Any], image_size: int, steps: int, device: torch.device) -> dict[str, Any]:
    """Time ``steps`` reverse steps (after one warm-up step when ``steps > 1``) at ``image_size^3``."""
    torch.manual_seed(0)
    net = GuidedUNet.from_config(config).to(device).eval()
    inferer = WaveletDiffusionInferer(progress=False)
    generator = torch.Generator(device=device).manual_seed(0)
    half = image_size // 2
    x = torch.randn(1, 8, half, half, half, generator=generator, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.no_grad():
        for i in range(steps + (1 if steps > 1 else 0)):
            t = torch.full((1,), 999 - i, dtype=torch.long, device=device)
            synchronize(device)
            start = time.perf_counter()
            x = inferer.reverse_step(net, x, t, generator=generator)["sample"]
            synchronize(device)
            times.append(time.perf_counter() - start)
    timed = times[1:] if steps > 1 else times
    result = {
        "case": name,
        "image_size": [image_size] * 3,
        "coefficient_shape": list(x.shape),
        "parameters": sum(p.numel() for p in net.parameters()),
        "timed_steps": len(timed),
        "seconds_per_step": sum(timed) / len(timed),
        "seconds_per_step_min": min(timed),
        "estimated_seconds_1000_steps": 1000 * sum(timed) / len(timed),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "finite": bool(torch.isfinite(x).all()),
    }
    if device.type == "cuda":
        result["cuda_max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny-steps", type=int, default=5)
    parser.add_argument("--skip-full", action="store_true", help="skip the 58M-parameter 128^3 step")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict[str, Any] = {
        "benchmark": "bench_wavelet",
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "results": [bench("tiny_32", TINY_CONFIG, 32, args.tiny_steps, device)],
    }
    if not args.skip_full:
        report["results"].append(bench("wdm_unet_128", WDM_UNET_128, 128, 1, device))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
