"""PSNR against network calls: sampler settings with fewer calls than each reconstruction bundle's default.

For ``tpdm_brain_mri`` (MR z-SR), ``padis_ct`` (8-view CT) and ``hfssde_mri`` (multi-coil MRI) a ladder of settings
(:data:`LADDERS`) runs through the bundle's own inference workflow (``bench_warm_start.run_bundle``: network calls
from a forward hook, CPU seconds, PSNR/SSIM from the metrics JSON). The rungs use:

- a better step rule: DDIM's update for VE states (``predictor="ddim"`` for TPDM, ``solver="ddim"`` for PaDIS),
  which keeps the state's noise at the schedule's level however far apart the levels are, optionally with DDS's
  conjugate-gradient correction of each denoised estimate instead of DPS (``consistency="dds"``,
  ``cg_iterations``: no gradient through the network);
- fewer steps and fewer corrector steps;
- a warm start from the bundle's reference-free classical reconstruction, noised to the start level
  (``benchmarks/bench_warm_start.py``).

``--seeds`` picks the phantoms: ``7`` is the shipped sample (the README's curve), other seeds are validation
phantoms made as in ``benchmarks/bench_quality.py`` (where settings are chosen); ``--sampler-seeds`` the sampler's
seeds (the bundle's ``seed`` key; one seed's PSNR moves by a few tenths of a dB, so differences below that need
several). Prints one JSON line per (bundle, phantom, sampler seed, rung), then a ``summary`` line per (bundle, rung):
mean calls, mean PSNR over phantoms and sampler seeds, and the change against the bundle's default (first rung) in
dB; ``five_x_within_half_db`` marks rungs with >= 5x fewer calls within 0.5 dB.

Usage::

    python benchmarks/bench_calls.py                                  # the shipped samples (seed 7)
    python benchmarks/bench_calls.py --bundles padis_ct --seeds 11 12  # validation
    python benchmarks/bench_calls.py --bundles tpdm_brain_mri --sampler-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import make_validation_sample, psnr_ssim  # noqa: E402
from bench_warm_start import BUNDLES, WARM_STARTS, run_bundle  # noqa: E402

SAMPLE_SEED = 7


def _warm(bundle: str, sigma: float) -> dict[str, Any]:
    return {**WARM_STARTS[bundle], "warm_start_sigma": sigma}


LADDERS: dict[str, dict[str, dict[str, Any]]] = {
    "tpdm_brain_mri": {
        "default (reverse diffusion, 200 steps)": {},
        "ddim, 200 steps": {"predictor": "ddim"},
        "ddim, 100 steps": {"predictor": "ddim", "steps": 100},
        "ddim, 40 steps, dps_weight 6": {"predictor": "ddim", "steps": 40, "dps_weight": 6.0},
        "ddim, no corrector, 80 steps, dps_weight 6": {"predictor": "ddim", "corrector_steps": 0, "steps": 80,
                                                       "dps_weight": 6.0},
        "ddim + dds, 40 steps": {"predictor": "ddim", "consistency": "dds", "steps": 40},
        "warm start 0.3 + ddim, 86 steps": {**_warm("tpdm_brain_mri", 0.3), "predictor": "ddim", "steps": 86},
        "warm start 0.5 + ddim, 74 steps": {**_warm("tpdm_brain_mri", 0.5), "predictor": "ddim", "steps": 74},
        "warm start 0.3 + ddim, 86 steps, K 3": {**_warm("tpdm_brain_mri", 0.3), "predictor": "ddim", "steps": 86,
                                                 "K": 3},
        "warm start 0.5 + ddim, 74 steps, K 3": {**_warm("tpdm_brain_mri", 0.5), "predictor": "ddim", "steps": 74,
                                                 "K": 3},
        "warm start 0.5 + ddim, 37 steps, K 3": {**_warm("tpdm_brain_mri", 0.5), "predictor": "ddim", "steps": 37,
                                                 "K": 3},
    },
    "padis_ct": {
        "default (dps, 40 levels x 5)": {},
        "dps, 40 levels x 2": {"inner_iterations": 2},
        "ddim, 100 levels": {"solver": "ddim", "inner_iterations": 1, "steps": 100},
        "ddim, 40 levels": {"solver": "ddim", "inner_iterations": 1},
        "ddim + dds (cg 5), 40 levels": {"solver": "ddim", "inner_iterations": 1, "cg_iterations": 5},
        "ddim + dds (cg 5), 20 levels": {"solver": "ddim", "inner_iterations": 1, "cg_iterations": 5, "steps": 20},
        "ddim + dds (cg 5), 10 levels": {"solver": "ddim", "inner_iterations": 1, "cg_iterations": 5, "steps": 10},
    },
    "hfssde_mri": {
        "default (N 100, corrector 1)": {},
        "N 50": {"steps": 50},
        "N 20": {"steps": 20},
        "warm start 0.5": _warm("hfssde_mri", 0.5),
        "warm start 0.2": _warm("hfssde_mri", 0.2),
    },
}
"""Per bundle: ``{rung name: config overrides}``; the first rung is the bundle's default."""


def check_ladder(bundle: str) -> None:
    """Refuse a rung whose override key the bundle's ``inference.json`` does not declare (it would be ignored)."""
    declared = json.loads((BUNDLES / bundle / "configs" / "inference.json").read_text())
    for name, overrides in LADDERS[bundle].items():
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise SystemExit(f"{bundle} rung {name!r}: keys {unknown} are not declared in its inference.json.")


def _inputs(bundle: str, seed: int, folder: Path) -> dict[str, str]:
    """The shipped sample (seed 7: the config's own inputs) or a validation phantom's."""
    if seed == SAMPLE_SEED:
        return {}
    with contextlib.redirect_stdout(sys.stderr):  # MONAI's log of the sample config
        return make_validation_sample(bundle, seed, folder / f"sample{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="*", choices=sorted(LADDERS), default=list(LADDERS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[SAMPLE_SEED], help="phantoms (7: the sample)")
    parser.add_argument("--sampler-seeds", nargs="*", type=int, default=[0], help="the bundles' seed key")
    parser.add_argument("--rungs", nargs="*", default=None, help="rung names to run (default: all; the default rung "
                        "always runs first)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"benchmark": "bench_calls", "torch": torch.__version__, "threads": 1, "seeds": args.seeds,
                      "sampler_seeds": args.sampler_seeds}), flush=True)
    for bundle in args.bundles:
        check_ladder(bundle)
        ladder = LADDERS[bundle]
        names = list(ladder)
        if args.rungs:
            unknown = set(args.rungs) - set(names)
            if unknown:
                parser.error(f"unknown rungs for {bundle}: {sorted(unknown)}; known: {names}")
            names = [names[0]] + [n for n in names[1:] if n in args.rungs]
        results: dict[str, list[tuple[int, float, float]]] = {}
        with tempfile.TemporaryDirectory() as folder:
            for seed in args.seeds:
                inputs = _inputs(bundle, seed, Path(folder))
                for sampler_seed in args.sampler_seeds:
                    for name in names:
                        overrides = {**inputs, **ladder[name], "seed": sampler_seed}
                        with tempfile.TemporaryDirectory() as out:
                            result = run_bundle(bundle, overrides, Path(out) / "out")
                        psnr, ssim = psnr_ssim(result["summary"]["metrics"])
                        results.setdefault(name, []).append((result["network_calls"], psnr, ssim))
                        print(json.dumps({"bundle": bundle, "seed": seed, "sampler_seed": sampler_seed, "rung": name,
                                          "overrides": ladder[name], "network_calls": result["network_calls"],
                                          "psnr": psnr, "ssim": ssim, "cpu_seconds": result["cpu_seconds"]}),
                              flush=True)
        default_calls = statistics.mean(r[0] for r in results[names[0]])
        default_psnr = statistics.mean(r[1] for r in results[names[0]])
        for name in names:
            calls = statistics.mean(r[0] for r in results[name])
            change = statistics.mean(r[1] for r in results[name]) - default_psnr
            print(json.dumps({
                "bundle": bundle, "summary": True, "rung": name, "seeds": args.seeds,
                "sampler_seeds": args.sampler_seeds, "mean_network_calls": calls,
                "calls_ratio": round(default_calls / calls, 2),
                "mean_psnr": round(statistics.mean(r[1] for r in results[name]), 3),
                "mean_ssim": round(statistics.mean(r[2] for r in results[name]), 4),
                "change_db": round(change, 3),
                "five_x_within_half_db": default_calls / calls >= 5 and change >= -0.5,
            }), flush=True)


if __name__ == "__main__":
    main()
