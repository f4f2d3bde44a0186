"""One step of each method at full size, in float32 and in each precision/compilation variant; one JSON line per case.

Run by ``benchmarks/gpu_check.sh`` on a CUDA machine (``--device cuda``); ``--cpu-smoke`` runs the same code at tiny
sizes on the CPU. Per method, the step runs once in float32 (the reference), then once per variant of
:class:`~medgen.networks.precision.PrecisionSettings` (``bf16``, ``fp16``, ``compile``; the network wrapped by
:class:`~medgen.networks.precision.PrecisionNetwork`, exactly as the inferers wrap it), each after one untimed warm-up
call (compilation, kernel selection), from the same inputs and generator seed. Weights are random, with the layers the
official code initialises at zero redrawn (``bench_networks.revive_zero_layers``) so that every layer shows in the output:

- ``tpdm``: TPDM's NCSN++ (BMR_ZSR_256, 61.4M parameters), one MR-ZSR x4 step of the inferer on a minibatch of 6
  slices of 256^2 (corrector + predictor, DPS through the network);
- ``wdm``: WDM's ``ours_unet_128`` (57.9M) reverse step on 128^3 (64^3 x 8 Haar coefficients);
- ``padis``: PaDIS' ddpmpp patch denoiser (54.4M) on a 256^2 image (25 patches of 56^2), the input gradient of the
  residual norm (a DPS step);
- ``hfs``: HFS-SDE's DDPM U-Net, one predictor-corrector step at 320^2 with 15 coils;
- ``sdm``: the CTCA high-res slab SDM U-Net (README architecture, 474M), one network call on a 128x128x16 slab.

Fields: ``seconds`` (wall clock, CUDA synchronised), ``cpu_seconds``, ``peak_memory_mib``
(``torch.cuda.max_memory_allocated`` on CUDA, else the process's max RSS, monotone), ``max_abs_diff_rel`` (max
``|out - out_float32| / max |out_float32|``), or ``error`` when a variant fails (the others still run).

Usage::

    python benchmarks/gpu_check.py --device cuda [--methods tpdm wdm ...] [--variants fp32 bf16 fp16 compile]
    python benchmarks/gpu_check.py --cpu-smoke [--variants fp32 bf16 fp16]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_highfrequency import CASES as HFS_CASES  # noqa: E402
from bench_highfrequency import _problem as hfs_problem  # noqa: E402
from bench_networks import TPDM_NCSNPP_CONFIG, revive_zero_layers  # noqa: E402
from bench_patch import PADIS_DDPMPP_304  # noqa: E402
from bench_slab import configuration as sdm_configuration  # noqa: E402
from bench_wavelet import TINY_CONFIG as WDM_TINY  # noqa: E402
from bench_wavelet import WDM_UNET_128  # noqa: E402
from common import emit, machine, peak_rss_mib  # noqa: E402

from medgen.diffusion.priors import PatchPrior  # noqa: E402
from medgen.diffusion.samplers import pc_step  # noqa: E402
from medgen.inferers.highfrequency import HighFrequencySpaceInferer  # noqa: E402
from medgen.inferers.perpendicular import PerpendicularSliceInferer  # noqa: E402
from medgen.inferers.wavelet import WaveletDiffusionInferer  # noqa: E402
from medgen.networks.ddpm import DDPMUNet  # noqa: E402
from medgen.networks.guided_unet import GuidedUNet  # noqa: E402
from medgen.networks.ncsnpp import NCSNpp  # noqa: E402
from medgen.networks.precision import PrecisionNetwork, PrecisionSettings  # noqa: E402
from medgen.networks.sdm_unet import SDMUNet, one_hot_labels, reference_for_slab, slab_z_position_channel  # noqa: E402
from medgen.networks.songunet import PatchEDMPrecond  # noqa: E402

VARIANTS: dict[str, PrecisionSettings] = {
    "fp32": PrecisionSettings(),
    "bf16": PrecisionSettings(autocast_dtype=torch.bfloat16),
    "fp16": PrecisionSettings(autocast_dtype=torch.float16),
    "compile": PrecisionSettings(compile_network=True),
}
Step = Callable[[Any], torch.Tensor]  # step(network or wrapped network) -> output


def seeded(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


def tpdm(device: torch.device, full: bool) -> tuple[torch.nn.Module, Step, dict[str, Any]]:
    size = 256 if full else 32
    torch.manual_seed(0)
    if full:
        network = NCSNpp.from_config({**TPDM_NCSNPP_CONFIG, "data.image_size": size})
    else:
        network = NCSNpp(image_size=size, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), init_scale=1.0)
    network = network.to(device).eval()
    low = torch.rand(1, 1, 6, size, size // 4, generator=seeded(torch.device("cpu"))).to(device)
    inferer = PerpendicularSliceInferer("zsr", factor=4, steps=1, batch_size=6, seed=0, progress=False)
    return network, lambda net: inferer(low, net).as_tensor(), {"shape": [6, 1, size, size], "dps": True}


def wdm(device: torch.device, full: bool) -> tuple[torch.nn.Module, Step, dict[str, Any]]:
    size = 128 if full else 16
    torch.manual_seed(0)
    network = GuidedUNet.from_config(WDM_UNET_128 if full else WDM_TINY).to(device).eval()
    inferer = WaveletDiffusionInferer(progress=False)
    x = torch.randn(1, 8, size // 2, size // 2, size // 2, generator=seeded(device), device=device)
    t = torch.full((1,), 999, dtype=torch.long, device=device)

    def step(net: Any) -> torch.Tensor:
        with torch.no_grad():
            return inferer.reverse_step(net, x, t, generator=seeded(device))["sample"]

    return network, step, {"shape": [1, 1, size, size, size]}


def padis(device: torch.device, full: bool) -> tuple[torch.nn.Module, Step, dict[str, Any]]:
    size, patch, pad = (256, 56, 24) if full else (16, 8, 8)
    torch.manual_seed(0)
    config = PADIS_DDPMPP_304 if full else {**PADIS_DDPMPP_304, "img_resolution": size + 2 * pad,
                                            "model_channels": 16, "channel_mult": [1, 2]}
    network = PatchEDMPrecond.from_config(config).eval().to(device)
    canvas = size + 2 * pad
    x = torch.randn(1, 1, canvas, canvas, generator=seeded(device), device=device)

    def step(net: Any) -> torch.Tensor:
        xg = x.detach().requires_grad_(True)
        out = PatchPrior(net, patch, pad).denoise(xg, 0.5, generator=seeded(device))
        (grad,) = torch.autograd.grad(torch.linalg.vector_norm(out[..., pad:-pad, pad:-pad]), xg)
        return grad

    return network, step, {"shape": [1, 1, size, size], "dps": True}


def hfs(device: torch.device, full: bool) -> tuple[torch.nn.Module, Step, dict[str, Any]]:
    spec, coils = HFS_CASES["full" if full else "tiny"], 15 if full else 4
    size = spec["image_size"]
    torch.manual_seed(0)
    network = DDPMUNet(in_channels=2, image_size=size, **spec["network"]).to(device).eval()
    kspace, mask, maps, low = hfs_problem(size, coils, device, seeded(device))
    inferer = HighFrequencySpaceInferer(low, accelerated=True, seed=0, progress=False)
    measurement = inferer.measurement(kspace, mask, maps)
    sde, settings = inferer.make_sde(device), inferer.settings
    terms = measurement.term(settings.corrector_lam), measurement.term(settings.lam)

    def step(net: Any) -> torch.Tensor:
        generator = seeded(device)
        with torch.no_grad():
            x = inferer.initial_sample(measurement, sde, generator)
            t = torch.full((1,), 0.5, device=device)
            return pc_step(inferer.prior(net), x, t, sde, settings.pc, corrector_consistency=terms[0],
                           predictor_consistency=terms[1], generator=generator)[0]

    return network, step, {"shape": [1, coils, size, size]}


def sdm(device: torch.device, full: bool) -> tuple[torch.nn.Module, Step, dict[str, Any]]:
    config = sdm_configuration("readme" if full else "tiny", 128)
    torch.manual_seed(0)
    network = SDMUNet(**config["network"]).to(device).eval()
    size, depth, classes = config["in_plane"], config["slab_depth"], config["network"]["num_classes"]
    generator = seeded(torch.device("cpu"))
    labels = torch.randint(0, classes, (1, 1, size, size, depth), generator=generator)
    reference = reference_for_slab(torch.randn(1, *config["low_res"], generator=generator), 0, depth, depth)[None]
    x = torch.randn(1, 1, size, size, depth, generator=generator)
    y = torch.cat([one_hot_labels(labels, classes), slab_z_position_channel(0, depth, size)[None]], 1)
    x, y, reference, t = x.to(device), y.to(device), reference.to(device), torch.tensor([500], device=device)

    def step(net: Any) -> torch.Tensor:
        with torch.no_grad():
            return net(x, t, y, reference)

    return network, step, {"shape": [1, 1, size, size, depth]}


METHODS = {"tpdm": tpdm, "wdm": wdm, "padis": padis, "hfs": hfs, "sdm": sdm}


def timed(step: Step, network: Any, device: torch.device) -> tuple[torch.Tensor, float, float, float]:
    """``(output, seconds, cpu_seconds, peak_memory_mib)`` of one call after one warm-up call."""
    step(network)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = step(network)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    return out.detach(), seconds, cpu_seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (checks the script runs)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu" if args.cpu_smoke else args.device)
    full = not args.cpu_smoke
    variants = ["fp32", *(v for v in args.variants if v != "fp32")]
    for method in args.methods:
        network, step, info = METHODS[method](device, full)
        revive_zero_layers(network)  # random weights: zero-initialised output layers would hide every difference
        record = {"benchmark": "gpu_check", "method": method, "full_size": full, "device": str(device), **info,
                  "parameters": sum(p.numel() for p in network.parameters())}
        reference = None
        for variant in variants:
            settings = VARIANTS[variant]
            try:
                settings.check_device(device)
                wrapped = PrecisionNetwork(network, settings) if settings.active else network
                out, seconds, cpu_seconds, memory = timed(step, wrapped, device)
            except Exception as error:  # a failing variant is reported, the others still run
                emit({**record, "variant": variant, "error": f"{type(error).__name__}: {error}"[:500], **machine()})
                continue
            reference = out if reference is None else reference
            difference = float((out.float() - reference.float()).abs().max() / reference.float().abs().max())
            emit({**record, "variant": variant, "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4),
                  "peak_memory_mib": round(memory, 1), "max_abs_diff_rel": difference,
                  "finite": bool(torch.isfinite(out).all()), **machine()})


if __name__ == "__main__":
    main()
