"""The quality gap, one factor at a time, on VALIDATION phantoms (never the shipped sample, which stays held out).

For each reconstruction bundle, validation samples are made exactly as the shipped sample but from other phantom
seeds (default 11 and 12; the shipped sample is seed 7, training uses seeds 1000 and up):

- ``tpdm_brain_mri``: ``brain_mri_phantom((32, 32, 32), seed)`` and its ``ZAxisDownsample(4)`` (the README's recipe);
- ``padis_ct``: ``configs/make_sample.json`` with ``phantom_seed`` (slice 11, 8-view sinogram);
- ``hfssde_mri``: ``scripts/make_sample.py`` with ``seed`` (3 slices, 8 coils).

Every run is the bundle's own inference workflow (as ``benchmarks/bench_warm_start.py`` runs it) at its defaults
with ONE factor changed: the data-consistency weight (TPDM ``dps_weight``, PaDIS ``zeta``, HFS-SDE ``lam`` and
``corrector_lam``), the step count, the noise schedule (``sigma_max`` / ``snr``) and, where the bundle ships both,
the EMA weights (HFS-SDE ``use_ema``). Prints one JSON line per (bundle, seed, factor, value) with the bundle's
PSNR/SSIM and its classical baselines (reference-free and oracle), then one ``summary`` line per (bundle, factor,
value): the mean PSNR change against the defaults over the seeds and the mean margin over the best oracle baseline.

Usage::

    python benchmarks/bench_quality.py                                   # all bundles, seeds 11 12
    python benchmarks/bench_quality.py --bundles hfssde_mri --seeds 11 12 13
    # a second round around a chosen setting: every run with snr 0.16, then lam and snr varied
    python benchmarks/bench_quality.py --bundles hfssde_mri --base '{"snr": 0.16}' --factors '{"lam": [5.0], "snr": [0.08]}'
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_warm_start import BUNDLES, run_bundle  # noqa: E402

FACTORS: dict[str, dict[str, list[Any]]] = {
    "tpdm_brain_mri": {"dps_weight": [1.5, 6.0], "steps": [100], "sigma_max": [5.0]},
    "padis_ct": {"zeta": [0.03, 0.3], "steps": [20], "sigma_max": [2.0]},
    "hfssde_mri": {"lam": [1.0, 5.0], "corrector_lam": [0.02, 0.5], "steps": [50, 200], "snr": [0.16],
                   "use_ema": [True]},
}
"""Per bundle: ``{config key: values other than the default}``, each tried alone."""


def make_validation_sample(bundle: str, seed: int, folder: Path) -> dict[str, str]:
    """Write the validation sample of phantom ``seed`` into ``folder``; returns the bundle's input overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    if bundle == "tpdm_brain_mri":
        from monai.data import MetaTensor

        from medgen.data import brain_mri_phantom, save_nifti
        from medgen.transforms.resolution import ZAxisDownsample

        affine = np.eye(4)
        affine[:3, 3] = -15.5
        image = MetaTensor(torch.from_numpy(brain_mri_phantom((32, 32, 32), seed=seed))[None],
                           affine=torch.from_numpy(affine))
        reference, low = folder / f"brain_phantom_seed{seed}.nii.gz", folder / f"brain_phantom_seed{seed}_z4.nii.gz"
        save_nifti(image, reference)
        save_nifti(ZAxisDownsample(4)(image), low)
        return {"input_path": str(low), "reference_path": str(reference)}
    if bundle == "padis_ct":
        from monai.bundle import run

        root = BUNDLES / "padis_ct"
        run(config_file=str(root / "configs" / "make_sample.json"), bundle_root=str(root), sample_dir=str(folder),
            phantom_seed=seed)
        stem = folder / f"body_ct_seed{seed}_z11"
        return {"input_path": f"{stem}_sino8.nii.gz", "reference_path": f"{stem}.nii.gz"}
    script = BUNDLES / "hfssde_mri" / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("hfssde_make_sample", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kspace, reference = module.make_sample(folder, seed=seed)
    return {"input_path": str(kspace), "reference_path": str(reference)}


def psnr_ssim(metrics: dict[str, Any]) -> tuple[float, float]:
    """``(PSNR, SSIM)`` of a bundle's metrics entry (mean SSIM for a volume's per-slice record), rounded."""
    ssim = metrics["ssim"]["mean"] if isinstance(metrics["ssim"], dict) else metrics["ssim"]
    return round(metrics["psnr"], 3), round(ssim, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="*", choices=sorted(FACTORS), default=list(FACTORS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[11, 12])
    parser.add_argument("--base", type=json.loads, default={}, help="JSON overrides of every run (the new defaults)")
    parser.add_argument("--factors", type=json.loads, default=None, help="JSON {key: [values]} instead of FACTORS")
    args = parser.parse_args()
    if 7 in args.seeds:
        parser.error("seed 7 is the shipped, held-out sample: tune on other seeds.")
    torch.set_num_threads(1)
    print(json.dumps({"benchmark": "bench_quality", "torch": torch.__version__, "threads": 1, "seeds": args.seeds,
                      "base": args.base}), flush=True)
    for bundle in args.bundles:
        factors = FACTORS[bundle] if args.factors is None else args.factors
        settings = [(None, None)] + [(key, value) for key, values in factors.items() for value in values]
        psnr: dict[tuple[Any, Any], list[float]] = {}
        margin: dict[tuple[Any, Any], list[float]] = {}
        with tempfile.TemporaryDirectory() as folder:
            for seed in args.seeds:
                with contextlib.redirect_stdout(sys.stderr):  # MONAI's log of the sample config
                    inputs = make_validation_sample(bundle, seed, Path(folder) / f"sample{seed}")
                for key, value in settings:
                    overrides = {**inputs, **args.base, **({} if key is None else {key: value})}
                    with tempfile.TemporaryDirectory() as out:
                        result = run_bundle(bundle, overrides, Path(out) / "out")
                    summary = result["summary"]
                    scores = psnr_ssim(summary["metrics"])
                    baselines = {name: psnr_ssim(m) for name, m in summary["baselines"].items()}
                    best_oracle = max(p for name, (p, _) in baselines.items() if name.endswith("_oracle"))
                    psnr.setdefault((key, value), []).append(scores[0])
                    margin.setdefault((key, value), []).append(scores[0] - best_oracle)
                    print(json.dumps({
                        "bundle": bundle, "seed": seed, "factor": key, "value": value, "psnr": scores[0],
                        "ssim": scores[1], "baselines": baselines, "margin_over_best_oracle": round(
                            scores[0] - best_oracle, 3), "network_calls": result["network_calls"],
                        "cpu_seconds": result["cpu_seconds"],
                    }), flush=True)
        default = statistics.mean(psnr[(None, None)])
        for key, value in settings:
            print(json.dumps({
                "bundle": bundle, "summary": True, "factor": key, "value": value,
                "mean_psnr": round(statistics.mean(psnr[(key, value)]), 3),
                "mean_change_db": round(statistics.mean(psnr[(key, value)]) - default, 3),
                "mean_margin_over_best_oracle_db": round(statistics.mean(margin[(key, value)]), 3),
            }), flush=True)


if __name__ == "__main__":
    main()
