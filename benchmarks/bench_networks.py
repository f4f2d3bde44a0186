"""medgen's networks against their official implementations, same weights; one JSON line per case.

Cases (float32, 1 torch thread unless ``--threads``, CPU time, medians of interleaved rounds, all in this process):

* ``ncsnpp``: TPDM's NCSN++ (score_sde ``BMR_ZSR_256`` model fields, ``init_scale=1`` so that the random residual
  branches are not near zero) against the official score_sde_pytorch ``models/ncsnpp.py``, imported from a checkout
  given by ``--score-sde-repo`` or ``$SCORE_SDE_REPO`` (never copied). The official network is built first
  (``torch.manual_seed(0)``); medgen's is :func:`medgen.networks.convert.from_official` of its state dict.
  ``data.image_size`` is the input size, because score_sde places attention by the feature size at run time:
  64 gives attention at 16x16 inside the third level (62,752,001 parameters, the configuration issue 11 measured),
  256 gives TPDM's 61,433,601-parameter network.

Each case times ``forward`` (no graph) and ``dps`` (forward, then ``torch.autograd.grad`` of the L2 norm of the output
with respect to the input, as TPDM's DPS step does) on noisy images ``x = data + sigma * noise`` with sigma drawn
log-uniformly in [0.01, 378]. Before timing, the outputs (and the input gradients) of medgen and the official network
are compared: ``max_abs_diff / max_abs`` of the official output must be <= 1e-5, else the case is reported as failed
and not timed.

Fields: ``medgen_ms``; ``official`` with ``ms``, ``speedup`` (official time / medgen time) and the agreement;
``limit``: medgen's own convolution calls (``conv2d``/``conv_transpose2d``, recorded in one forward) replayed alone on
their recorded inputs (for ``dps`` with the input gradient of each, as autograd computes it), with
``ratio`` = medgen time / limit time; ``gflop`` (matrix products and convolutions of medgen's call, backward
included, by ``torch.utils.flop_counter``'s formulas) and the achieved ``gflop_per_s``. ``--profile N`` prints the
N ops with the largest self CPU time of each contender to stderr.

Usage::

    python benchmarks/bench_networks.py [--score-sde-repo /path/to/score_sde_pytorch] [--rounds 5]
        [--cases ncsnpp_64 ncsnpp_256] [--modes forward dps] [--profile 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from common import emit, interleaved_medians, machine
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from medgen.networks.convert import from_official

AGREEMENT = 1e-5
# TPDM's BMR_ZSR_256 (configs/ve/BMR_ZSR_256.py over default_lsun_configs.py): every field score_sde's NCSNpp reads
TPDM_NCSNPP_CONFIG: dict[str, Any] = {
    "data.num_channels": 1,
    "data.centered": False,
    "model.name": "ncsnpp",
    "model.nf": 128,
    "model.ch_mult": (1, 2, 2, 2),
    "model.num_res_blocks": 4,
    "model.attn_resolutions": (16,),
    "model.dropout": 0.0,
    "model.resamp_with_conv": True,
    "model.conditional": True,
    "model.fir": True,
    "model.fir_kernel": [1, 3, 3, 1],
    "model.skip_rescale": True,
    "model.resblock_type": "biggan",
    "model.progressive": "none",
    "model.progressive_input": "residual",
    "model.progressive_combine": "sum",
    "model.attention_type": "ddpm",
    "model.embedding_type": "fourier",
    "model.fourier_scale": 16,
    "model.init_scale": 1.0,
    "model.conv_size": 3,
    "model.scale_by_sigma": True,
    "model.normalization": "GroupNorm",
    "model.nonlinearity": "swish",
    "model.sigma_min": 0.01,
    "model.sigma_max": 378.0,
    "model.num_scales": 2000,
    "training.continuous": True,
}
CASES = {"ncsnpp_64": (64, 6), "ncsnpp_256": (256, 1)}  # name -> (image size, batch)


def nested_namespace(flat: Mapping[str, Any]) -> types.SimpleNamespace:
    """``{"model.nf": 128}`` -> an object with ``.model.nf`` (as score_sde reads its ``ml_collections`` config)."""
    root = types.SimpleNamespace()
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for name in parents:
            if not hasattr(node, name):
                setattr(node, name, types.SimpleNamespace())
            node = getattr(node, name)
        setattr(node, leaf, value)
    return root


def load_score_sde(repo: str | None) -> tuple[Any | None, str]:
    """score_sde's ``models.ncsnpp`` module from a checkout, or ``(None, reason)``.

    score_sde's ``op`` package compiles CUDA extensions when imported; its ``upfirdn2d`` runs the pure-PyTorch
    ``upfirdn2d_native`` on CPU tensors and never touches them, so ``op/upfirdn2d.py`` is executed with the extension
    loader replaced by a stub, and registered as ``op`` (score_sde's ``models`` import only ``op.upfirdn2d``).
    """
    if not repo:
        return None, "unavailable: pass --score-sde-repo or set SCORE_SDE_REPO to a checkout of score_sde_pytorch"
    source = os.path.join(repo, "op", "upfirdn2d.py")
    if not os.path.isfile(os.path.join(repo, "models", "ncsnpp.py")) or not os.path.isfile(source):
        return None, f"unavailable: {repo} has no models/ncsnpp.py and op/upfirdn2d.py"
    spec = importlib.util.spec_from_file_location("op.upfirdn2d", source)
    upfirdn2d_module = importlib.util.module_from_spec(spec)
    with mock.patch("torch.utils.cpp_extension.load", lambda *args, **kwargs: None):
        spec.loader.exec_module(upfirdn2d_module)
    op_package = types.ModuleType("op")
    op_package.__path__ = []
    op_package.upfirdn2d = upfirdn2d_module.upfirdn2d
    sys.modules.update({"op": op_package, "op.upfirdn2d": upfirdn2d_module})
    sys.path.insert(0, repo)
    try:
        from models import ncsnpp
    except Exception as error:
        return None, f"unavailable: {type(error).__name__}: {error}"
    finally:
        sys.path.remove(repo)
    return ncsnpp, "yang-song/score_sde_pytorch models/ncsnpp.py"


class _FlopCounter(TorchDispatchMode):
    """Sums the floating-point operations of the matrix products and convolutions (``torch.utils.flop_counter``'s
    formulas) dispatched inside the context, backward passes included."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.overloadpacket in flop_registry:
            self.flops += flop_registry[func.overloadpacket](*args, **kwargs, out_val=out)
        return out


def gflop(call: Callable[[], Any]) -> float:
    """Billions of floating-point operations of ``call()`` in matrix products and convolutions."""
    with _FlopCounter() as counter:
        call()
    return counter.flops / 1e9


class _ConvRecorder(TorchFunctionMode):
    """Records every ``conv2d``/``conv_transpose2d`` call (function, arguments) made inside the context."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Callable, tuple, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv2d, F.conv_transpose2d):
            self.calls.append((func, tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args), kwargs))
        return func(*args, **kwargs)


def conv_replay(network: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor, dps: bool) -> Callable[[], None]:
    """A call running only the convolutions ``network(x, sigma)`` makes, on their recorded inputs.

    With ``dps`` each convolution also computes its input gradient (the work of the backward pass of a DPS step).
    """
    recorder = _ConvRecorder()
    with torch.no_grad(), recorder:
        network(x, sigma)
    calls = recorder.calls
    gradients = []
    for func, args, kwargs in calls:
        gradients.append(torch.ones_like(func(*args, **kwargs)) if dps else None)

    def replay() -> None:
        for (func, args, kwargs), gradient in zip(calls, gradients):
            if not dps:
                with torch.no_grad():
                    func(*args, **kwargs)
                continue
            inputs = args[0].requires_grad_(True)
            torch.autograd.grad(func(inputs, *args[1:], **kwargs), inputs, gradient)
            inputs.requires_grad_(False)

    return replay


def forward_call(network: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.no_grad():
            return network(x, sigma)

    return call


def dps_call(network: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        inputs = x.detach().requires_grad_(True)
        return torch.autograd.grad(torch.linalg.vector_norm(network(inputs, sigma)), inputs)[0]

    return call


def relative_max_diff(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a - reference).abs().max() / reference.abs().max())


def profile_table(name: str, call: Callable[[], Any], rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    call()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        call()
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)
    print(f"== {name}\n{table}", file=sys.stderr, flush=True)


def ncsnpp_case(name: str, official_module: Any, official_version: str, args: argparse.Namespace) -> None:
    size, batch = CASES[name]
    config = {**TPDM_NCSNPP_CONFIG, "data.image_size": size}
    generator = torch.Generator().manual_seed(1)
    sigma = 0.01 * (378.0 / 0.01) ** torch.rand(batch, generator=generator)
    x = torch.rand(batch, 1, size, size, generator=generator) + sigma[:, None, None, None] * torch.randn(
        batch, 1, size, size, generator=generator
    )
    torch.manual_seed(0)
    if official_module is not None:
        official = official_module.NCSNpp(nested_namespace(config)).eval()
        state_dict = official.state_dict()
    else:
        official = None
        from medgen.networks.ncsnpp import NCSNpp

        state_dict = NCSNpp.from_config(config).state_dict()
    network = from_official("score_sde_ncsnpp", state_dict, config)
    parameters = sum(p.numel() for p in network.parameters())

    for mode in args.modes:
        make = forward_call if mode == "forward" else dps_call
        calls = {"medgen": make(network, x, sigma), "limit": conv_replay(network, x, sigma, mode == "dps")}
        work = gflop(calls["medgen"])
        record: dict[str, Any] = {
            "benchmark": "networks", "case": f"{name}_{mode}", "network": "NCSNpp", "mode": mode,
            "shape": list(x.shape), "parameters": parameters,
        }
        if official is not None:
            calls["official"] = make(official, x, sigma)
            reference = calls["official"]()
            difference = relative_max_diff(calls["medgen"](), reference)
            record["official"] = {"version": official_version, "max_abs_diff_rel": difference}
            if not difference <= AGREEMENT:
                emit({**record, "error": f"outputs differ by {difference:.3g} of the official output's scale"})
                continue
        else:
            record["official"] = {"version": official_version}
        for contender in ("medgen", "official") if args.profile else ():
            if contender in calls:
                profile_table(f"{name}_{mode} {contender}", calls[contender], args.profile)
        times = interleaved_medians(calls, args.rounds)
        if "official" in times:
            record["official"].update(ms=times["official"], speedup=round(times["official"] / times["medgen"], 3))
        record.update(
            medgen_ms=times["medgen"],
            gflop=round(work, 1),
            gflop_per_s=round(work / times["medgen"] * 1e3, 1),
            limit={"name": "medgen's convolution calls alone" + (" with input gradients" if mode == "dps" else ""),
                   "ms": times["limit"], "ratio": round(times["medgen"] / times["limit"], 3)},
            rounds=args.rounds, **machine(),
        )
        emit(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-sde-repo", default=os.environ.get("SCORE_SDE_REPO"))
    parser.add_argument("--cases", nargs="+", default=["ncsnpp_64"], choices=sorted(CASES))
    parser.add_argument("--modes", nargs="+", default=["forward", "dps"], choices=["forward", "dps"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="print the top N ops of each contender to stderr")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    official_module, official_version = load_score_sde(args.score_sde_repo)
    for name in args.cases:
        ncsnpp_case(name, official_module, official_version, args)


if __name__ == "__main__":
    main()
