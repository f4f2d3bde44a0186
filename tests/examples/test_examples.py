"""examples/: every inferer in a plain MONAI pipeline (LoadImaged -> transforms -> SupervisedEvaluator -> SaveImaged)
runs at a few steps and writes what the bundle writes, bit for bit (same weights, settings and seed)."""

from __future__ import annotations

import runpy
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUNDLES = REPO / "bundles"


def example(name: str, monkeypatch: pytest.MonkeyPatch):
    """The ``main`` of ``examples/<name>.py`` (its folder on ``sys.path``, as when it runs as a script)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")["main"]


def bundle(name: str, output_dir: Path, **overrides) -> None:
    run(config_file=str(BUNDLES / name / "configs" / "inference.json"), bundle_root=str(BUNDLES / name),
        output_dir=str(output_dir), checkpoint_dir="", progress=False, **overrides)


def volume(path: Path) -> np.ndarray:
    return np.squeeze(nib.load(path).get_fdata(dtype=np.float32))


def same(a: Path, b: Path) -> None:
    left, right = volume(a), volume(b)
    assert left.shape == right.shape and np.array_equal(left, right)


def test_tpdm_zsr_example_equals_the_bundle(tmp_path, monkeypatch):
    written = example("tpdm_zsr", monkeypatch)(["--steps", "2", "--output_dir", str(tmp_path / "example")])
    bundle("tpdm_brain_mri", tmp_path / "bundle", steps=2)
    same(written, tmp_path / "bundle" / "tpdm_zsr_seed0.nii.gz")
    np.testing.assert_allclose(nib.load(written).affine, nib.load(BUNDLES / "tpdm_brain_mri" / "sample" /
                                                                  "brain_phantom_seed7.nii.gz").affine, atol=1e-6)


def test_wdm_example_equals_the_bundle_on_the_template_grid(tmp_path, monkeypatch):
    written = example("wdm_generate", monkeypatch)(["--steps", "2", "--output_dir", str(tmp_path / "example")])
    bundle("wdm_brain_mri", tmp_path / "bundle", steps=2)
    same(written, tmp_path / "bundle" / "wdm_seed0_0.nii.gz")
    template = BUNDLES / "tpdm_brain_mri" / "sample" / "brain_phantom_seed7.nii.gz"
    np.testing.assert_allclose(nib.load(written).affine, nib.load(template).affine)


def test_padis_example_equals_the_bundle(tmp_path, monkeypatch):
    main = example("padis_sparse_view_ct", monkeypatch)
    written = main(["--steps", "2", "--output_dir", str(tmp_path / "example")], inner_iterations=1, sigma_max=0.05)
    bundle("padis_ct", tmp_path / "bundle", steps=2, inner_iterations=1, sigma_max=0.05)
    same(written, tmp_path / "bundle" / "padis_sparse_view_ct_seed0.nii.gz")


def test_hfssde_example_equals_the_bundle(tmp_path, monkeypatch):
    written = example("hfssde_kspace", monkeypatch)(["--steps", "2", "--output_dir", str(tmp_path / "example")])
    bundle("hfssde_mri", tmp_path / "bundle", steps=2)
    same(written, tmp_path / "bundle" / "hfssde_hfs_equispaced_acc4_seed0.nii.gz")


def test_sdm_example_equals_the_bundle(tmp_path, monkeypatch):
    lowres, highres = example("sdm_ctca", monkeypatch)(["--steps", "2", "--output_dir", str(tmp_path / "example")])
    bundle("sdm_ctca", tmp_path / "bundle", steps=2)
    same(lowres, tmp_path / "bundle" / "sdm_seed0_lowres.nii.gz")
    same(highres, tmp_path / "bundle" / "sdm_seed0_highres.nii.gz")
