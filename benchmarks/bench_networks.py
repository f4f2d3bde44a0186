"""medgen's networks against their official implementations, same weights; one JSON line per case.

Cases (float32, 1 torch thread unless ``--threads``, CPU time, medians of interleaved rounds, all in this process):

* ``ncsnpp_64``, ``ncsnpp_256``: TPDM's NCSN++ (score_sde ``BMR_ZSR_256`` model fields, ``init_scale=1`` so that the
  random residual branches are not near zero) on 6 images of 64^2 / 1 image of 256^2, against score_sde_pytorch's
  ``models/ncsnpp.py``, imported from a checkout given by ``--score-sde-repo`` or ``$SCORE_SDE_REPO``.
  ``data.image_size`` is the input size, because score_sde places attention by the feature size at run time:
  64 gives attention at 16x16 inside the third level (62,752,001 parameters, the configuration issue 11 measured),
  256 gives TPDM's 61,433,601-parameter network. Inputs: ``[0, 1]`` images plus noise of std sigma, log-uniform in
  [0.01, 378].
* ``ddpm_320``: HFS-SDE's DDPM U-Net (``configs/hfssde/ddpm_continuous.py``, 2 channels, 320^2, batch 1) against
  HFS-SDE's ``models/ddpm.py``, imported from a checkout given by ``--hfs-sde-repo`` or ``$HFS_SDE_REPO``. Inputs:
  standard normal (real, imaginary) images and a std label in (0, 1), dropout off (eval mode). The layers the DDPM
  U-Net initialises at scale 1e-10 are redrawn at the default scale (:func:`revive_zero_layers`).

The official code is imported from the checkout, never copied; the official network is built first
(``torch.manual_seed(0)``) and medgen's is :func:`medgen.networks.convert.from_official` of its state dict. Each case
times ``forward`` (no graph) and ``dps`` (forward, then ``torch.autograd.grad`` of the L2 norm of the output with
respect to the input, as TPDM's DPS step does). Before timing, the outputs (and the input gradients) of medgen and the
official network are compared: ``max_abs_diff / max_abs`` of the official output must be <= 1e-5, else the case is
reported as failed and not timed; ``float64_error`` gives, for the forward pass, each float32 output's distance
(same measure) from medgen's network evaluated in float64.

Fields: ``medgen_ms``; ``official`` with ``ms``, ``speedup`` (official time / medgen time) and the agreement;
``limit``: medgen's own convolution calls (``conv2d``/``conv_transpose2d``, recorded in one forward) replayed alone on
their recorded inputs (for ``dps`` with the input gradient of each, as autograd computes it), with
``ratio`` = medgen time / limit time; ``gflop`` (matrix products and convolutions of medgen's call, backward
included, by ``torch.utils.flop_counter``'s formulas) and the achieved ``gflop_per_s``. ``--profile N`` prints the
N ops with the largest self CPU time of each contender to stderr.

Usage::

    python benchmarks/bench_networks.py [--score-sde-repo /path/to/score_sde_pytorch]
        [--hfs-sde-repo /path/to/HFS-SDE] [--rounds 5] [--cases ncsnpp_64 ncsnpp_256 ddpm_320]
        [--modes forward dps] [--profile 15]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from common import emit, interleaved_medians, machine
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import medgen.networks
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
# HFS-SDE's configs/hfssde/ddpm_continuous.py over configs/default_fastMRI_configs.py
HFS_DDPM_CONFIG: dict[str, Any] = {
    "data.image_size": 320,
    "data.num_channels": 2,
    "data.centered": False,
    "model.name": "ddpm",
    "model.nf": 128,
    "model.ch_mult": (1, 2, 2, 2),
    "model.num_res_blocks": 2,
    "model.attn_resolutions": (16,),
    "model.dropout": 0.1,
    "model.resamp_with_conv": True,
    "model.conditional": True,
    "model.scale_by_sigma": False,
    "model.normalization": "GroupNorm",
    "model.nonlinearity": "swish",
    "model.sigma_min": 0.01,
    "model.sigma_max": 348.0,
    "model.num_scales": 1000,
    "training.continuous": True,
}


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


def import_from_checkout(repo: str, module: str, stubs: Mapping[str, types.ModuleType]) -> Any:
    """Import ``module`` (e.g. ``models.ncsnpp``) from a checkout, with ``stubs`` standing in for some of its imports.

    score_sde and HFS-SDE both name their package ``models``: earlier imports of that name are set aside while
    importing and restored afterwards (the imported modules keep their own references).
    """
    top = module.split(".")[0]
    shadowed = {name: mod for name, mod in sys.modules.items() if name == top or name.startswith(f"{top}.")}
    saved = {name: sys.modules.get(name) for name in (*shadowed, *stubs)}
    for name in shadowed:
        del sys.modules[name]
    sys.modules.update(stubs)
    sys.path.insert(0, repo)
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(repo)
        for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")] + list(stubs):
            sys.modules.pop(name, None)
        sys.modules.update({name: mod for name, mod in saved.items() if mod is not None})


def load_score_sde(repo: str | None) -> tuple[Any | None, str]:
    """score_sde's ``models.ncsnpp`` module from a checkout, or ``(None, reason)``.

    score_sde's ``op`` package compiles CUDA extensions when imported; its ``upfirdn2d`` runs the pure-PyTorch
    ``upfirdn2d_native`` on CPU tensors and never touches them, so ``op/upfirdn2d.py`` is executed with the extension
    loader replaced by a stub and stands in for ``op`` (score_sde's ``models`` use only ``op.upfirdn2d``).
    """
    if not repo:
        return None, "unavailable: pass --score-sde-repo or set SCORE_SDE_REPO to a checkout of score_sde_pytorch"
    source = os.path.join(repo, "op", "upfirdn2d.py")
    if not os.path.isfile(os.path.join(repo, "models", "ncsnpp.py")) or not os.path.isfile(source):
        return None, f"unavailable: {repo} has no models/ncsnpp.py and op/upfirdn2d.py"
    try:
        spec = importlib.util.spec_from_file_location("op.upfirdn2d", source)
        upfirdn2d_module = importlib.util.module_from_spec(spec)
        with mock.patch("torch.utils.cpp_extension.load", lambda *args, **kwargs: None):
            spec.loader.exec_module(upfirdn2d_module)
        op_package = types.ModuleType("op")
        op_package.__path__ = []
        op_package.upfirdn2d = upfirdn2d_module.upfirdn2d
        module = import_from_checkout(repo, "models.ncsnpp", {"op": op_package, "op.upfirdn2d": upfirdn2d_module})
    except Exception as error:
        return None, f"unavailable: {type(error).__name__}: {error}"
    return module, "yang-song/score_sde_pytorch models/ncsnpp.py"


def load_hfs_sde(repo: str | None) -> tuple[Any | None, str]:
    """HFS-SDE's ``models.ddpm`` module from a checkout, or ``(None, reason)``.

    Its ``models/model_utils.py`` imports ``sde_lib``, which imports the MRI utilities of the repository; the network
    uses none of them, so an empty ``sde_lib`` stands in.
    """
    if not repo:
        return None, "unavailable: pass --hfs-sde-repo or set HFS_SDE_REPO to a checkout of Aboriginer/HFS-SDE"
    if not os.path.isfile(os.path.join(repo, "models", "ddpm.py")):
        return None, f"unavailable: {repo} has no models/ddpm.py"
    try:
        module = import_from_checkout(repo, "models.ddpm", {"sde_lib": types.ModuleType("sde_lib")})
    except Exception as error:
        return None, f"unavailable: {type(error).__name__}: {error}"
    return module, "Aboriginer/HFS-SDE models/ddpm.py"


OFFICIAL_LOADERS: dict[str, tuple[Callable[[str | None], tuple[Any | None, str]], str, str]] = {
    # key -> (loader, command-line option, official class name)
    "score_sde": (load_score_sde, "score_sde_repo", "NCSNpp"),
    "hfs_sde": (load_hfs_sde, "hfs_sde_repo", "DDPM"),
}


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


@dataclass(frozen=True)
class Case:
    """One network at one input size: its medgen converter kind, its official config and how to draw inputs."""

    network: str  # the medgen class, for the record
    kind: str  # medgen.networks.convert.from_official kind
    official: str  # key of OFFICIAL_LOADERS
    config: dict[str, Any]
    batch: int
    inputs: Callable[[int, int, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def ve_inputs(batch: int, channels: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """TPDM's network inputs: ``[0, 1]`` images plus VE noise of std sigma, log-uniform in [0.01, 378]."""
    sigma = 0.01 * (378.0 / 0.01) ** torch.rand(batch, generator=generator)
    clean = torch.rand(batch, channels, size, size, generator=generator)
    return clean + sigma[:, None, None, None] * torch.randn(clean.shape, generator=generator), sigma


def hfs_inputs(batch: int, channels: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """HFS-SDE's network inputs: std-normalised (real, imaginary) images and the marginal std label in (0, 1)."""
    return torch.randn(batch, channels, size, size, generator=generator), torch.rand(batch, generator=generator)


CASES: dict[str, Case] = {
    "ncsnpp_64": Case("NCSNpp", "score_sde_ncsnpp", "score_sde", {**TPDM_NCSNPP_CONFIG, "data.image_size": 64}, 6,
                      ve_inputs),
    "ncsnpp_256": Case("NCSNpp", "score_sde_ncsnpp", "score_sde", {**TPDM_NCSNPP_CONFIG, "data.image_size": 256}, 1,
                       ve_inputs),
    "ddpm_320": Case("DDPMUNet", "score_sde_ddpm", "hfs_sde", HFS_DDPM_CONFIG, 1, hfs_inputs),
}


def revive_zero_layers(network: torch.nn.Module) -> None:
    """Redraw the weights score_sde initialises at scale 1e-10 (``init_scale=0``: the output convolution and each
    residual branch's last layer) at the default scale, so that the output depends on every layer and the agreement
    check compares real numbers; the DDPM U-Net has no ``init_scale`` option."""
    with torch.no_grad():
        for parameter in network.parameters():
            if parameter.ndim >= 2 and float(parameter.abs().max()) < 1e-6:
                fan = (parameter.shape[0] + parameter.shape[1]) / 2 * parameter[0, 0].numel()
                parameter.uniform_(-((3 / fan) ** 0.5), (3 / fan) ** 0.5)


def network_case(name: str, case: Case, official_module: Any, official_version: str, args: argparse.Namespace) -> None:
    config = case.config
    size, channels = config["data.image_size"], config["data.num_channels"]
    x, label = case.inputs(case.batch, channels, size, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    if official_module is not None:
        official = getattr(official_module, OFFICIAL_LOADERS[case.official][2])(nested_namespace(config)).eval()
        revive_zero_layers(official)
        network = from_official(case.kind, official.state_dict(), config)
    else:
        official = None
        network = getattr(medgen.networks, case.network).from_config(config).eval()
        revive_zero_layers(network)
    parameters = sum(p.numel() for p in network.parameters())

    for mode in args.modes:
        make = forward_call if mode == "forward" else dps_call
        calls = {"medgen": make(network, x, label), "limit": conv_replay(network, x, label, mode == "dps")}
        work = gflop(calls["medgen"])
        record: dict[str, Any] = {
            "benchmark": "networks", "case": f"{name}_{mode}", "network": case.network, "mode": mode,
            "shape": list(x.shape), "parameters": parameters,
        }
        if official is not None:
            calls["official"] = make(official, x, label)
            reference = calls["official"]()
            output = calls["medgen"]()
            difference = relative_max_diff(output, reference)
            record["official"] = {"version": official_version, "max_abs_diff_rel": difference}
            if mode == "forward":  # both float32 results against the same arithmetic in float64
                exact = forward_call(copy.deepcopy(network).double(), x.double(), label.double())()
                record["float64_error"] = {"medgen": relative_max_diff(output.double(), exact),
                                           "official": relative_max_diff(reference.double(), exact)}
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
    parser.add_argument("--hfs-sde-repo", default=os.environ.get("HFS_SDE_REPO"))
    parser.add_argument("--cases", nargs="+", default=["ncsnpp_64"], choices=sorted(CASES))
    parser.add_argument("--modes", nargs="+", default=["forward", "dps"], choices=["forward", "dps"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="print the top N ops of each contender to stderr")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    officials: dict[str, tuple[Any | None, str]] = {}
    for name in args.cases:
        key = CASES[name].official
        if key not in officials:
            loader, option, _ = OFFICIAL_LOADERS[key]
            officials[key] = loader(getattr(args, option))
        network_case(name, CASES[name], *officials[key], args)


if __name__ == "__main__":
    main()
