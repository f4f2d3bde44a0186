"""Classical reconstructions on the bundles' own shipped samples: the table of issue 16, measured with medgen.solvers.

For every case the measurement and the operator are built as the bundle builds them, and every classical method runs
twice: with its lambda (or iteration count) chosen by the ORACLE (highest PSNR against the reference: an upper bound
no user can reach) and by the reference-free generalised DISCREPANCY principle with the noise level estimated from
the measurement (see ``medgen.solvers.parameter``). Scores are computed the way each bundle computes them:

- ``tpdm_zsr4`` (``bundles/tpdm_brain_mri``, 4x z-averaged brain phantom, ``ZAxisAverage(4, axis=-1)``):
  ``medgen.engines.metrics.reconstruction_metrics`` (clip to [0, 1]; SSIM = mean over the three planes), with
  the bundle's fixed data range 1 (``psnr``/``ssim``) and with the data range of the reference, ``max - min`` (the
  convention of issue 16's table: ``psnr_ref_range``/``ssim_ref_range``).
- ``padis_8views`` / ``padis_20views`` (``bundles/padis_ct``, ``ParallelBeamCT.padis(64, views, 40, 128, 80)``,
  noiseless sinograms): ``medgen.engines.metrics.slice_metrics`` (clip to [0, 1], data range 1 = the
  reference's range).
- ``hfssde_r2.91`` / ``hfssde_r4`` (``bundles/hfssde_mri``, 8-coil k-space of 3 slices with its estimated maps,
  HFS-SDE's ``1.5 std(k)`` normalisation per slice, equispaced masks: stride 4 + 8 ACS = 22 of 64 columns, and
  ``mask_mode="acceleration"`` 16 of 64): ``medgen.engines.metrics.hfs_metrics`` (magnitudes, data range of the
  reference per slice, mean over slices).

Prints one JSON line per (case, method, rule): lambda (per item), iterations (all solves together), solves, PSNR,
SSIM, CPU seconds (``time.process_time``, 1 torch thread), then one ``summary`` line per case with the gap
``discrepancy - oracle`` in dB per method. Takes about 5-10 minutes on one CPU core.

Usage::

    python benchmarks/bench_classical.py                         # every case
    python benchmarks/bench_classical.py --cases padis_8views hfssde_r4
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import LoadImage
from scipy.interpolate import CubicSpline

from medgen.engines.metrics import hfs_metrics, reconstruction_metrics, slice_metrics
from medgen.engines.samples import load_kspace_sample
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.solvers import CGLS, SIRT, TVPDHG, L1WaveletFISTA, Solver
from medgen.transforms.intensity import KspaceStdNormalize
from medgen.transforms.kspace import make_mask

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
RULES = ("oracle", "discrepancy")

# solver settings shared by the cases: long solves (converged lambdas, not early-stopped iterates) and a wide search
TV_SEARCH = {"search_steps": 12, "search_range": (1e-7, 1.0)}


@dataclass
class Case:
    """One benchmark case: operator, measurement, reference, the bundle's metric and the methods to run."""

    operator: Any
    measurement: torch.Tensor
    reference: torch.Tensor
    metric: Callable[[torch.Tensor], dict[str, float]]
    baselines: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)
    solvers: dict[str, Callable[[str], Solver]] = field(default_factory=dict)


def _load(path: Path) -> torch.Tensor:
    """As the bundles load NIfTI: channel first, float32."""
    return LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path)).as_tensor()


def _z_interpolation(measurement: torch.Tensor, factor: int, length: int, kind: str) -> torch.Tensor:
    """Interpolate thick-slice means placed at their block centres ``factor k + (factor - 1) / 2`` along the last axis
    (constant beyond the first/last centre); ``kind`` is ``"linear"`` or ``"cubic"`` (natural cubic spline)."""
    values = measurement.double().numpy()
    centres = np.arange(values.shape[-1]) * factor + (factor - 1) / 2
    positions = np.clip(np.arange(length), centres[0], centres[-1])
    if kind == "linear":
        flat = values.reshape(-1, values.shape[-1])
        out = np.stack([np.interp(positions, centres, row) for row in flat]).reshape(*values.shape[:-1], length)
    else:
        out = CubicSpline(centres, values, axis=-1, bc_type="natural")(positions)
    return torch.from_numpy(out).to(measurement.dtype)


def tpdm_zsr4(root: Path) -> Case:
    sample = root / "tpdm_brain_mri" / "sample"
    y = _load(sample / "brain_phantom_seed7_z4.nii.gz")[None]  # (1, 1, 32, 32, 8), the bundle's "measurement"
    reference = _load(sample / "brain_phantom_seed7.nii.gz")[None]
    op = ZAxisAverage(4, axis=-1)
    reference_range = float(reference.max() - reference.min())

    def metric(x: torch.Tensor) -> dict[str, float]:
        fixed = reconstruction_metrics(x, reference)
        ranged = reconstruction_metrics(x, reference, data_range=reference_range)
        return {"psnr": fixed["psnr"], "ssim": fixed["ssim"]["mean"], "psnr_ref_range": ranged["psnr"],
                "ssim_ref_range": ranged["ssim"]["mean"]}

    length = reference.shape[-1]
    return Case(
        op, y, reference, metric,
        baselines={
            "pseudo_inverse": lambda: op.pseudo_inverse(y),
            "linear": lambda: _z_interpolation(y, 4, length, "linear"),
            "cubic": lambda: _z_interpolation(y, 4, length, "cubic"),
        },
        solvers={"tv_3d": lambda rule: TVPDHG(op, lam=rule, spatial_dims=3, box=(0.0, 1.0), max_iter=1500, tol=1e-6,
                                              **TV_SEARCH)},
    )


def padis(views: int) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        sample = root / "padis_ct" / "sample"
        y = _load(sample / f"body_ct_seed7_z11_sino{views}.nii.gz").permute(3, 0, 1, 2)  # (1, 1, 128, views)
        reference = _load(sample / "body_ct_seed7_z11.nii.gz").permute(3, 0, 1, 2)  # (1, 1, 64, 64)
        op = ParallelBeamCT.padis(64, views=views, field_of_view=40.0, num_detectors=128, detector_width=80.0)

        def metric(x: torch.Tensor) -> dict[str, float]:
            scores = slice_metrics(x.permute(1, 2, 3, 0), reference.permute(1, 2, 3, 0))
            return {"psnr": scores["psnr"], "ssim": scores["ssim"]}

        return Case(
            op, y, reference, metric,
            baselines={"fbp": lambda: op.pseudo_inverse(y).clamp(0.0, 1.0)},
            solvers={
                "sirt": lambda rule: SIRT(op, stopping=rule, box=(0.0, 1.0), max_iter=10000, tol=1e-7),
                "tv_pdhg": lambda rule: TVPDHG(op, lam=rule, box=(0.0, 1.0), max_iter=3000, tol=1e-6, **TV_SEARCH),
            },
        )

    return build


def hfssde(mask_mode: str) -> Callable[[Path], Case]:
    def build(root: Path) -> Case:
        sample = root / "hfssde_mri" / "sample"
        data = load_kspace_sample(sample / "phantom_seed7_kspace.npz")
        full = data["kspace"]
        scale = torch.stack([KspaceStdNormalize(1.5).scale_of(k) for k in full]).reshape(-1, 1, 1, 1)
        mask = make_mask("equispaced", tuple(full.shape[-2:]), rng=0, acc=4, acs_lines=8, mode=mask_mode)
        op = CartesianMRI(mask, data["sensitivity_maps"])
        y = full / scale * mask
        reference = load_kspace_sample(sample / "phantom_seed7_reference.npz", ["image"])["image"]

        def metric(x: torch.Tensor) -> dict[str, float]:
            scores = hfs_metrics(x * scale, reference)
            return {"psnr": scores["psnr"], "ssim": scores["ssim"]}

        return Case(
            op, y, reference / scale, metric,
            baselines={"zero_filled": lambda: op.adjoint(y)},
            solvers={
                "cg_sense_tikhonov": lambda rule: CGLS(op, lam=rule, max_iter=200, tol=1e-6),
                "cg_sense_early_stop": lambda rule: CGLS(op, stopping=rule, max_iter=200, tol=1e-6),
                "l1_wavelet_db4": lambda rule: L1WaveletFISTA(op, lam=rule, wavelet="db4", max_iter=500, tol=1e-5),
                "tv_pdhg": lambda rule: TVPDHG(op, lam=rule, max_iter=1000, tol=1e-5),
            },
        )

    return build


CASES: dict[str, Callable[[Path], Case]] = {
    "tpdm_zsr4": tpdm_zsr4,
    "padis_8views": padis(8),
    "padis_20views": padis(20),
    "hfssde_r2.91": hfssde("stride"),
    "hfssde_r4": hfssde("acceleration"),
}


def _rounded(values: torch.Tensor | None, digits: int = 6) -> list[float] | None:
    if values is None:
        return None
    return [float(f"{v:.{digits}g}") for v in values.detach().cpu().double().flatten().tolist()]


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def run_case(name: str, case: Case) -> None:
    results: dict[str, dict[str, float]] = {}
    for method, make in case.baselines.items():
        start = time.process_time()
        x = make()
        seconds = time.process_time() - start
        _emit({"case": name, "method": method, "rule": "closed_form", **_scores(case.metric(x)), "seconds": seconds})
    for method, make in case.solvers.items():
        for rule in RULES:
            solver = make(rule)
            start = time.process_time()
            x, info = solver.solve(case.measurement, reference=case.reference if rule == "oracle" else None)
            seconds = time.process_time() - start
            scores = case.metric(x)
            results.setdefault(method, {})[rule] = scores["psnr"]
            _emit({
                "case": name,
                "method": method,
                "rule": rule,
                **_scores(scores),
                "lam": _rounded(info.lam),
                "iterations": info.iterations.tolist(),
                "best_iteration": None if info.best_iteration is None else info.best_iteration.tolist(),
                "solves": info.solves,
                "noise_std": _rounded(info.noise_std),
                "target_residual": _rounded(info.target_residual),
                "residual_norm": _rounded(info.residual_norm),
                "seconds": round(seconds, 2),
            })
    gaps = {method: round(r["discrepancy"] - r["oracle"], 2) for method, r in results.items()}
    best = max(results, key=lambda m: results[m]["oracle"]) if results else None
    _emit({"case": name, "summary": True, "discrepancy_minus_oracle_db": gaps, "best_oracle_method": best})


def _scores(scores: dict[str, float]) -> dict[str, float]:
    return {key: (round(value, 3) if math.isfinite(value) else value) for key, value in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--bundles", type=Path, default=BUNDLES, help="folder holding the bundles")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _emit({"benchmark": "bench_classical", "torch": torch.__version__, "threads": torch.get_num_threads()})
    for name in args.cases:
        run_case(name, CASES[name](args.bundles))


if __name__ == "__main__":
    main()
