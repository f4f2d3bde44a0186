"""Warm starts on the bundles' shipped samples: network calls saved and PSNR, against the cold default.

Each run is the bundle's own inference workflow (``configs/inference.json`` read by MONAI's ``ConfigParser``, its
``run`` expressions executed) with the defaults except the warm-start keys, writing into a temporary folder; the
metrics come from the run's metrics JSON (the bundle's PSNR/SSIM and baselines), the network calls from a forward
hook on the bundle's network, the CPU seconds from ``time.process_time`` (1 torch thread). The warm start is the
bundle's own reference-free classical baseline (``tpdm_brain_mri``: 3D TV-PDHG; ``padis_ct``: SIRT stopped by the
discrepancy principle; ``hfssde_mri``: CG-SENSE with lambda by the discrepancy principle), noised to the level of
the start step (:class:`medgen.diffusion.warm_start.WarmStart`).

Prints one JSON line per (bundle, setting). A full run takes about 10-15 CPU minutes.

Usage::

    python benchmarks/bench_warm_start.py
    python benchmarks/bench_warm_start.py --bundles hfssde_mri --sigmas 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"

WARM_STARTS: dict[str, dict[str, Any]] = {
    # the reference-free classical baseline each bundle already computes, in the inferer's layout and units
    "tpdm_brain_mri": {"warm_start": "$@classical_run[0]['tv_pdhg_3d']"},
    "padis_ct": {"warm_start": "sirt", "warm_start_settings": {"box": [0.0, 1.0], "max_iter": 6000, "tol": 1e-7}},
    "hfssde_mri": {"warm_start": "cgls", "warm_start_settings": {"max_iter": 200, "tol": 1e-6, "search_steps": 10}},
}
SIGMAS: dict[str, list[float]] = {"tpdm_brain_mri": [1.0, 0.3], "padis_ct": [0.5, 0.2], "hfssde_mri": [0.5, 0.2]}


def run_bundle(bundle: str, overrides: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """Run ``bundle``'s inference workflow with ``overrides``; returns metrics, network calls and CPU seconds."""
    root = BUNDLES / bundle
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.update({"bundle_root": str(root), "output_dir": str(output_dir), "progress": False, **overrides})
    network = parser.get_parsed_content("network")
    calls = {"n": 0}

    def count(module: Any, args: Any, output: Any) -> None:
        calls["n"] += 1

    modules = network.values() if isinstance(network, torch.nn.ModuleDict) else [network]
    handles = [module.register_forward_hook(count) for module in modules]
    start = time.process_time()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the bundle's own summary; stdout holds the JSON lines
            parser.get_parsed_content("run")
    finally:
        for handle in handles:
            handle.remove()
    seconds = time.process_time() - start
    summary = json.loads(next(output_dir.glob("*_metrics.json")).read_text())
    return {"summary": summary, "network_calls": calls["n"], "cpu_seconds": round(seconds, 1)}


def _scores(metrics: dict[str, Any]) -> dict[str, float]:
    ssim = metrics["ssim"]["mean"] if isinstance(metrics["ssim"], dict) else metrics["ssim"]
    return {"psnr": round(metrics["psnr"], 3), "ssim": round(ssim, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="*", choices=sorted(WARM_STARTS), default=list(WARM_STARTS))
    parser.add_argument("--sigmas", nargs="*", type=float, default=None, help="start levels (default per bundle)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"benchmark": "bench_warm_start", "torch": torch.__version__, "threads": 1}), flush=True)
    for bundle in args.bundles:
        cold_calls = None
        for sigma in [None, *(args.sigmas or SIGMAS[bundle])]:
            overrides = {} if sigma is None else {**WARM_STARTS[bundle], "warm_start_sigma": sigma}
            with tempfile.TemporaryDirectory() as folder:
                result = run_bundle(bundle, overrides, Path(folder) / "out")
            summary = result["summary"]
            cold_calls = result["network_calls"] if sigma is None else cold_calls
            record = {
                "bundle": bundle,
                "warm_start": None if sigma is None else str(WARM_STARTS[bundle]["warm_start"]),
                "warm_start_sigma": sigma,
                "steps": summary["steps"],
                "network_calls": result["network_calls"],
                "calls_saved": None if cold_calls is None else round(1 - result["network_calls"] / cold_calls, 3),
                **_scores(summary["metrics"]),
                "baselines": {name: _scores(m) for name, m in summary["baselines"].items()},
                "cpu_seconds": result["cpu_seconds"],
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
