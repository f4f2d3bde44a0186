"""Peak memory of DPS through the network: chunked vector-Jacobian products (``medgen.diffusion.chunked``) vs one graph.

Cases (random weights; one JSON line each, then one line of ratios per method):

- ``padis``: one PaDIS DPS Langevin step (:func:`~medgen.diffusion.samplers.langevin_step`, DPS through
  :class:`~medgen.diffusion.priors.PatchPrior`, random offsets, patch 56) on a 256^2 image (pad 24, 25 patches) and a
  512^2 image (pad 48, 100 patches), with ``max_batch`` patches per chunk and with one graph (``max_batch=None``).
- ``tpdm``: one TPDM predictor-corrector step with DPS (:func:`~medgen.diffusion.samplers.pc_step`, k-space
  measurement, the minibatch's norms) on a minibatch of 8 and of 32 slices, the network wrapped in
  :class:`~medgen.diffusion.chunked.ChunkedNetwork` (``--tpdm-chunk`` slices per chunk) and unwrapped.

Memory, two measures of the step alone:

- ``allocator_peak_mib``: the peak of bytes live in torch's CPU allocator during the step above those live before it,
  from the allocation/free events of ``torch.profiler`` (``profile_memory=True``), summed in time order;
- ``graph_peak_mib``: the peak of bytes held by live autograd graphs (:class:`~medgen.diffusion.chunked.
  SavedTensorMeter`, deterministic);
- ``limit_graph_mib``: the limit the chunked figure is near: the graph of ONE chunk's network call alone.

CPU time of each step (``time.process_time``, one run: the recomputation's cost) is printed as well; the outputs of
the chunked and the one-graph step are compared (max difference relative to their scale).

Usage::

    python benchmarks/bench_memory.py [--cases padis tpdm] [--channels 32] [--max-batch 5] [--tpdm-chunk 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import emit, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgen.diffusion.chunked import ChunkedNetwork, SavedTensorMeter  # noqa: E402
from medgen.diffusion.consistency import DPS  # noqa: E402
from medgen.diffusion.priors import PatchPrior, ScorePrior  # noqa: E402
from medgen.diffusion.samplers import PCSettings, langevin_step, pc_step  # noqa: E402
from medgen.diffusion.sde import VESDE  # noqa: E402
from medgen.diffusion.views import CanvasCrop, CanvasView  # noqa: E402
from medgen.networks.ncsnpp import NCSNpp  # noqa: E402
from medgen.networks.songunet import PatchEDMPrecond  # noqa: E402
from medgen.physics.base import ComposedOperator  # noqa: E402
from medgen.physics.blur import Blur  # noqa: E402
from medgen.physics.mri import CartesianMRI  # noqa: E402

MIB = 1024.0**2


def allocator_peak(call: Callable[[], Any]) -> tuple[Any, float]:
    """``(call(), peak MiB)``: the peak of torch CPU allocator bytes live during ``call`` above those live before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return result, peak / MIB


def measure(step: Callable[[], torch.Tensor]) -> dict[str, Any]:
    """Both memory measures and the CPU time of one ``step``, plus its output."""
    step()  # warm-up: kernel selection, the allocator's first pages
    with SavedTensorMeter() as meter:
        start = time.process_time()
        out = step()
        seconds = time.process_time() - start
    _, allocator = allocator_peak(step)
    return {"out": out, "graph_peak_mib": round(meter.peak_bytes / MIB, 2), "allocator_peak_mib": round(allocator, 2),
            "cpu_s": round(seconds, 2)}


def chunk_graph_mib(network: Callable[..., torch.Tensor], *inputs: Any) -> float:
    """Bytes one network call's graph holds (the chunked step's floor)."""
    x = inputs[0].detach().requires_grad_(True)
    with SavedTensorMeter() as meter:
        out = network(x, *inputs[1:])
        del out
    return round(meter.peak_bytes / MIB, 2)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def padis_case(channels: int, max_batch: int) -> None:
    torch.manual_seed(0)
    network = PatchEDMPrecond(img_resolution=56, img_channels=1, model_channels=channels, channel_mult=[1, 2, 2],
                              num_blocks=1, attn_resolutions=[]).eval()
    sigma = 0.5
    peaks: dict[tuple[int, str], dict[str, Any]] = {}
    for image_size, pad in ((256, 24), (512, 48)):
        image = torch.rand(1, 1, image_size, image_size, generator=torch.Generator().manual_seed(0))
        blur = Blur.gaussian(5, 1.5)
        operator = ComposedOperator(blur, CanvasCrop(CanvasView(pad), image.shape))
        term = DPS(operator, blur(image), weight=1.0, norm="item")
        x = torch.randn(1, 1, image_size + 2 * pad, image_size + 2 * pad, generator=torch.Generator().manual_seed(1))
        outputs = {}
        for mode, batch in (("chunked", max_batch), ("one_graph", None)):
            prior = PatchPrior(network, 56, pad, max_batch=batch)

            def step(prior: PatchPrior = prior) -> torch.Tensor:
                generator = torch.Generator().manual_seed(2)
                return langevin_step(prior, x, sigma, sigma**2 / 2, consistency=term, generator=generator)

            record = measure(step)
            outputs[mode] = record.pop("out")
            patches = len(prior.patch_starts(image_size)) ** 2
            positions = torch.zeros(max_batch, 2, 56, 56)
            limit = chunk_graph_mib(network, torch.randn(max_batch, 1, 56, 56), sigma, positions)
            peaks[image_size, mode] = record
            emit({"benchmark": "memory", "case": "padis_dps_langevin_step", "image": image_size, "pad": pad,
                  "patches": patches, "mode": mode, "max_batch": batch, **record,
                  "limit_graph_mib": limit if mode == "chunked" else None, "model_channels": channels})
        emit({"benchmark": "memory", "case": "padis_dps_langevin_step", "image": image_size,
              "chunked_vs_one_graph_max_rel_diff": relative_difference(outputs["chunked"], outputs["one_graph"])})
    emit({
        "benchmark": "memory", "case": "padis_dps_langevin_step", "ratio": "512^2 / 256^2",
        **{f"{mode}_{measure_name}": round(peaks[512, mode][measure_name] / peaks[256, mode][measure_name], 3)
           for mode in ("chunked", "one_graph") for measure_name in ("allocator_peak_mib", "graph_peak_mib")},
    })


def tpdm_case(channels: int, chunk: int, size: int = 64) -> None:
    torch.manual_seed(0)
    network = NCSNpp(image_size=size, nf=channels, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(),
                     init_scale=1.0).eval()
    mask = (torch.rand(size, size, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    operator = CartesianMRI(mask)
    sde = VESDE(0.01, 378.0, 100)
    peaks: dict[tuple[int, str], dict[str, Any]] = {}
    for slices in (8, 32):
        truth = torch.rand(slices, 1, size, size, generator=torch.Generator().manual_seed(1))
        term = DPS(operator, operator(truth), weight=1.0)
        x = torch.randn(slices, 1, size, size, generator=torch.Generator().manual_seed(2)) * 5
        outputs = {}
        for mode, net in (("chunked", ChunkedNetwork(network, chunk)), ("one_graph", network)):
            prior = ScorePrior(net)

            def step(prior: ScorePrior = prior) -> torch.Tensor:
                generator = torch.Generator().manual_seed(3)
                return pc_step(prior, x, torch.tensor(0.1), sde, PCSettings(), corrector_consistency=term,
                               predictor_consistency=term, generator=generator)[0]

            record = measure(step)
            outputs[mode] = record.pop("out")
            limit = chunk_graph_mib(network, torch.randn(chunk, 1, size, size), torch.full((chunk,), 5.0))
            peaks[slices, mode] = record
            emit({"benchmark": "memory", "case": "tpdm_dps_pc_step", "slices": slices, "image": size, "mode": mode,
                  "chunk": chunk if mode == "chunked" else None, **record,
                  "limit_graph_mib": limit if mode == "chunked" else None, "nf": channels})
        emit({"benchmark": "memory", "case": "tpdm_dps_pc_step", "slices": slices,
              "chunked_vs_one_graph_max_rel_diff": relative_difference(outputs["chunked"], outputs["one_graph"])})
    emit({
        "benchmark": "memory", "case": "tpdm_dps_pc_step", "ratio": "32 / 8 slices",
        **{f"{mode}_{measure_name}": round(peaks[32, mode][measure_name] / peaks[8, mode][measure_name], 3)
           for mode in ("chunked", "one_graph") for measure_name in ("allocator_peak_mib", "graph_peak_mib")},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["padis", "tpdm"], choices=["padis", "tpdm"])
    parser.add_argument("--channels", type=int, default=32, help="PaDIS SongUNet model_channels / NCSN++ nf")
    parser.add_argument("--max-batch", type=int, default=5, help="PaDIS patches per chunk")
    parser.add_argument("--tpdm-chunk", type=int, default=4, help="TPDM slices per chunk")
    args = parser.parse_args()
    torch.set_num_threads(1)
    emit({"benchmark": "memory", **machine()})
    if "padis" in args.cases:
        padis_case(args.channels, args.max_batch)
    if "tpdm" in args.cases:
        tpdm_case(args.channels, args.tpdm_chunk)


if __name__ == "__main__":
    main()
