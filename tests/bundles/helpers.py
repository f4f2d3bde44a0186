"""Checks every medgen bundle test shares (MONAI bundle spec and model-zoo conventions)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MONAI_METADATA_FIELDS = (
    "version", "changelog", "monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task",
    "description", "authors", "copyright", "network_data_format", "intended_use", "references",
)  # fmt: skip


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during (MONAI wraps errors raised inside configs)."""
    chain = []
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def bundle_metadata(bundle: Path) -> dict[str, Any]:
    """``configs/metadata.json`` after checking the MONAI fields, the changelog entry and the medgen requirement."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    for key in MONAI_METADATA_FIELDS:
        assert meta.get(key), key
    assert meta["version"] in meta["changelog"]
    assert meta["required_packages_version"]["medgen"] == "0.1.0"
    return meta


def assert_apache_licence(bundle: Path) -> None:
    licence = (bundle / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence[:200]


def write_nifti(path: Path, data: Any, affine: Any = None) -> Path:
    """Write ``data`` as NIfTI with ``affine``; a matrix nibabel cannot store (NaN, singular) is written raw as the
    sform, as a broken file would carry it."""
    import nibabel as nib

    data = np.asarray(data)
    matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if np.isfinite(matrix).all() and abs(np.linalg.det(matrix[:3, :3])) > 0:
        nib.save(nib.Nifti1Image(data, matrix), str(path))
        return path
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(data.dtype)
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = matrix[0], matrix[1], matrix[2]
    nib.save(nib.Nifti1Image(data, None, header=header), str(path))
    return path


def assert_posterior_outputs(out: Path, prefix: str, num_samples: int) -> dict[str, Any]:
    """A ``num_samples > 1`` run wrote the posterior mean, a non-negative std NIfTI of the same grid and finite
    uncertainty scores; returns the metrics JSON."""
    import nibabel as nib

    metrics = json.loads((out / f"{prefix}_metrics.json").read_text())
    mean, std = nib.load(out / f"{prefix}.nii.gz"), nib.load(out / f"{prefix}_std.nii.gz")
    assert metrics["num_samples"] == num_samples and metrics["std_nifti"] == f"{prefix}_std.nii.gz"
    assert std.shape == mean.shape and np.allclose(std.affine, mean.affine)
    spread = std.get_fdata()
    assert spread.min() >= 0 and spread.max() > 0  # seeds differ, so the samples do
    scores = metrics["uncertainty"]
    assert 0 <= scores["coverage"] <= 1 and -1 <= scores["std_error_correlation"] <= 1 and scores["k"] == 2.0
    assert scores["mean_std"] == pytest.approx(float(spread.mean()), rel=1e-4)
    return metrics


def assert_beats_the_best_oracle_baseline(metrics: dict[str, Any], margin_db: float) -> float:
    """Issue 16: the output's PSNR is at least ``margin_db`` above the best oracle-tuned classical baseline
    (every ``baselines`` entry whose name ends in ``_oracle``) of a bundle's metrics JSON; returns the margin."""
    oracles = {name: scores["psnr"] for name, scores in metrics["baselines"].items() if name.endswith("_oracle")}
    assert oracles, f"no oracle baseline in {sorted(metrics['baselines'])}"
    margin = metrics["metrics"]["psnr"] - max(oracles.values())
    assert margin >= margin_db, (metrics["metrics"]["psnr"], oracles)
    return margin


def run_counting_calls(
    bundle: Path, network_type: type, output_dir: Path, **overrides: Any
) -> tuple[dict[str, Any], int]:
    """Run ``bundle``'s ``inference.json`` with ``overrides``; returns its metrics JSON and the number of forward
    calls of modules of ``network_type`` (the bundle's network class) during the run."""
    import torch
    from monai.bundle import run

    calls = {"n": 0}

    def count(module: Any, args: Any, output: Any) -> None:
        if type(module) is network_type:
            calls["n"] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
            output_dir=str(output_dir), progress=False, **overrides)
    finally:
        handle.remove()
    return json.loads(next(output_dir.glob("*_metrics.json")).read_text()), calls["n"]


def assert_fewer_calls_within(
    bundle: Path, network_type: type, tmp_path: Path, fast: dict[str, Any], seeds: tuple[int, ...] = (0,),
    min_ratio: float = 5.0, max_loss_db: float = 0.5,
) -> tuple[float, float]:
    """Issue 11: the ``fast`` settings make at least ``min_ratio`` times fewer network calls than the bundle's
    defaults on its shipped sample, within ``max_loss_db`` of their PSNR (means over the sampler ``seeds``); returns
    ``(calls ratio, PSNR change)``."""
    psnr: dict[str, list[float]] = {"default": [], "fast": []}
    calls: dict[str, int] = {}
    for seed in seeds:
        for name, overrides in (("default", {}), ("fast", fast)):
            metrics, calls[name] = run_counting_calls(bundle, network_type, tmp_path / f"{name}{seed}", seed=seed,
                                                      **overrides)
            psnr[name].append(metrics["metrics"]["psnr"])
    ratio, change = calls["default"] / calls["fast"], float(np.mean(psnr["fast"]) - np.mean(psnr["default"]))
    assert ratio >= min_ratio, calls
    assert change >= -max_loss_db, psnr
    return ratio, change
