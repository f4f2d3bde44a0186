"""bundles/tpdm_ct: metadata and sample (HU volume, sinograms that are its projections), sparse-view inference through
``python -m monai.bundle run`` from another directory (HU output with the input's affine, FBP/SIRT/TV baselines, no
overwrite), a DICOM series as the reference, training two iterations into a temporary bundle copy (and resuming), the
training planes, verify_net_in_out, the official 256^3 configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, run, verify_net_in_out

from medgen.engines.metrics import reconstruction_metrics
from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint
from medgen.networks.ncsnpp import NCSNpp
from medgen.physics.ct import ParallelBeamCT
from tests.bundles.helpers import (
    assert_apache_licence,
    assert_beats_the_best_oracle_baseline,
    bundle_metadata,
    exception_chain,
    sha1,
)

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "tpdm_ct"
CONFIGS = BUNDLE / "configs"
MODELS = {role: BUNDLE / "models" / f"{role}.pt" for role in ("primary", "auxiliary")}
SAMPLE = BUNDLE / "sample" / "body_ct_seed7.nii.gz"


def test_metadata_files_weights_and_sample():
    meta = bundle_metadata(BUNDLE)
    assert any("2303.08440" in r for r in meta["references"])
    inputs = meta["network_data_format"]["inputs"]
    assert inputs["image"]["modality"] == "CT" and inputs["sigma"]["value_range"] == [0.01, 24.0]
    assert meta["generated_data_format"]["outputs"]["image"]["format"] == "hounsfield"
    assert_apache_licence(BUNDLE)
    for name in ("inference.json", "inference_official_256.json", "official_ncsnpp_256.json", "train.json",
                 "multi_gpu_train.json", "logging.conf"):
        assert (CONFIGS / name).is_file(), name
    assert (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "scripts" / "make_sample.py").is_file()
    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.json"))
    for path in MODELS.values():
        assert path.is_file() and path.stat().st_size < 3_000_000
        network = load_state_dict_checked(inference.get_parsed_content("network_def", instantiate=True),
                                          read_checkpoint(path))
        assert isinstance(network, NCSNpp) and network.sigmas.max().item() == pytest.approx(24.0)
    # the sample: int16 HU with an anisotropic, off-origin affine; each sinogram projects its HU window scaling
    reference = nib.load(SAMPLE)
    assert reference.shape == (48, 48, 48) and reference.get_data_dtype() == np.int16
    np.testing.assert_allclose(np.diag(reference.affine)[:3], [0.8, 0.8, 1.5], rtol=1e-6)
    hu = reference.get_fdata()
    assert hu.min() < -950 and hu.max() > 900
    scaled = torch.from_numpy((hu + 1000) / 2000).float()[None, None]
    for views in (8, 4, 2):
        sinogram = nib.load(BUNDLE / "sample" / f"body_ct_seed7_sino{views}.nii.gz")
        assert sinogram.shape == (68, views, 48)
        np.testing.assert_allclose(sinogram.affine, reference.affine, atol=1e-6)
        expected = ParallelBeamCT.tpdm(48, 180 // views)(scaled)[0, 0].numpy()
        np.testing.assert_allclose(sinogram.get_fdata(), expected, rtol=0, atol=2e-5 * float(np.abs(expected).max()))


@pytest.mark.slow  # ~45 s on the shared 2-core machine; the zoo smoke check runs the bundle by default
def test_inference_from_another_directory_in_hounsfield_units(tmp_path: Path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
               "--bundle_root", str(BUNDLE), "--steps", "3", "--seed", "2", "--views", "4", "--output_dir", str(out),
               "--progress", "False", "--oracle_baselines", "False", "--tv_iterations", "100", "--checkpoint_dir", str(tmp_path / "state")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    image = nib.load(out / "tpdm_svct4_seed2.nii.gz")
    assert image.shape == (48, 48, 48)
    np.testing.assert_allclose(image.affine, nib.load(SAMPLE).affine, atol=1e-6)
    assert (out / "tpdm_svct4_seed2.png").stat().st_size > 5000
    metrics = json.loads((out / "tpdm_svct4_seed2_metrics.json").read_text())
    assert metrics["views"] == 4 and metrics["steps"] == 3 and metrics["units"] == "HU"
    reference = nib.load(SAMPLE).get_fdata()
    expected = reconstruction_metrics(image.get_fdata(), reference, 2000.0, (-1000.0, 1000.0))
    assert metrics["metrics"]["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    # the baselines are in HU too: FBP of 4 views is poor, SIRT and TV (discrepancy principle) better
    assert set(metrics["baselines"]) == {"fbp", "sirt", "tv"}  # no oracle when asked not to
    fbp, sirt, tv = (metrics["baselines"][name] for name in ("fbp", "sirt", "tv"))
    assert 10 < fbp["psnr"] < sirt["psnr"] < tv["psnr"] and tv["ssim"]["mean"] > fbp["ssim"]["mean"]
    assert not (tmp_path / "state").exists()  # the finished run leaves no state to resume
    before = sha1(out / "tpdm_svct4_seed2.nii.gz")
    with pytest.raises(Exception) as error:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), steps=3, seed=2, views=4,
            output_dir=str(out), progress=False, oracle_baselines=False, tv_iterations=100)
    assert any(isinstance(e, FileExistsError) for e in exception_chain(error.value))
    assert sha1(out / "tpdm_svct4_seed2.nii.gz") == before


@pytest.mark.slow  # the full default 8-view run (200 steps, batch 48, FBP/SIRT/3D TV baselines): ~6 min of CPU
def test_defaults_beat_the_oracle_tuned_best_classical_method_by_1_db(tmp_path: Path):
    """Issue 16 on the held-out sample: TPDM at its defaults (8 views) vs 3D TV with the lambda of best PSNR;
    measured 34.66 dB vs 30.74 dB (+3.92 dB)."""
    run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), output_dir=str(tmp_path), progress=False)
    metrics = json.loads((tmp_path / "tpdm_svct8_seed0_metrics.json").read_text())
    assert "tv_oracle" in metrics["baselines"]
    assert_beats_the_best_oracle_baseline(metrics, margin_db=1.0)


def train_overrides(root: Path, **extra) -> dict:
    # 16 slices of one 16^3 phantom in batches of 8: an epoch is the whole loader (see test_tpdm_brain_mri)
    return {"config_file": str(root / "configs" / "train.json"), "bundle_root": str(root), "max_epochs": 1,
            "epoch_length": 2, "num_train_volumes": 1, "image_size": [16, 16, 16], "batch_size": 8, "log_every": 1,
            "checkpoint_every": 2, **extra}


def test_train_two_iterations_into_a_copy_and_resume(tmp_path: Path):
    committed = {role: sha1(path) for role, path in MODELS.items()}
    copy = tmp_path / "tpdm_ct"
    shutil.copytree(CONFIGS, copy / "configs")
    run(**train_overrides(copy))
    model = copy / "models" / "primary.pt"
    checkpoint = copy / "runs" / "train_primary" / "checkpoint_iteration=2.pt"
    assert model.is_file() and checkpoint.is_file()
    state = torch.load(model, weights_only=True)
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved) == {"network", "optimizer", "lr_scheduler", "ema", "trainer", "random_state", "loss_curve"}
    assert saved["trainer"]["iteration"] == 2 and int(saved["ema"]["num_updates"]) == 2
    assert all(torch.equal(state[k], saved["ema"][f"averaged.{k}"]) for k in state)

    run(**train_overrides(copy, max_epochs=2, resume_from=str(checkpoint),
                          output_model=str(copy / "models" / "resumed.pt")))
    straight = tmp_path / "straight"
    shutil.copytree(CONFIGS, straight / "configs")
    run(**train_overrides(straight, max_epochs=2))
    resumed = torch.load(copy / "models" / "resumed.pt", weights_only=True)
    reference = torch.load(straight / "models" / "primary.pt", weights_only=True)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert {role: sha1(path) for role, path in MODELS.items()} == committed


def test_train_planes_are_axial_and_sagittal_slices_in_the_hu_window():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"num_train_volumes": 1, "image_size": [16, 16, 16]})
    from medgen.data import body_ct_phantom

    hu = torch.from_numpy(body_ct_phantom((16, 16, 16), 1000))
    for plane, axis in (("primary", 2), ("auxiliary", 0)):
        parser["plane"] = plane
        volume = parser.get_parsed_content("train#volumes", lazy=False)[0]
        torch.testing.assert_close(volume, (hu + 1000) / 2000)  # the window, unclipped
        data = parser.get_parsed_content("train#dataset#data", lazy=False)
        assert len(data) == 16 and data[5]["image"].shape == (1, 16, 16)
        torch.testing.assert_close(data[5]["image"][0], volume.select(axis, 5))  # rows/cols in increasing axis order
        assert parser.get_parsed_content("output_model", lazy=False).endswith(f"{plane}.pt")


def test_verify_net_in_out():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), n=4, extra_forward_args={"sigma": 1.0})


def test_official_256_configuration():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "inference_official_256.json")])
    parser.update({"bundle_root": str(BUNDLE), "views": 36})
    assert parser.get_parsed_content("primary_checkpoint").endswith("aapm_256_cube_sclip_xy.pt")
    operator = parser.get_parsed_content("operator")
    assert operator.image_size == (256, 256) and operator.num_angles == 36 and operator.num_detectors == 363
    inferer = parser.get_parsed_content("inferer")
    assert inferer.settings.K == 2.7 and inferer.settings.steps == 2000 and inferer.dps_weight == 0.025
    assert inferer.view.batch_size == 6
    config = json.loads((CONFIGS / "official_ncsnpp_256.json").read_text())
    with torch.device("meta"):
        network = NCSNpp.from_config(config)
    assert sum(p.numel() for p in network.parameters()) == 61_433_601


def test_a_dicom_series_reference_is_read_in_hounsfield_units(tmp_path: Path):
    """The reference as scanners store it: a DICOM series (SimpleITK, int16 with rescale slope/intercept) of the
    sample, read by the bundle's edge into the array the NIfTI sample holds, in HU."""
    from tests.data_gen.test_readers import _write_dicom_series

    hu = nib.load(SAMPLE).get_fdata()
    folder = tmp_path / "series"
    _write_dicom_series(folder, np.transpose(hu, (2, 1, 0)), (0.8, 0.8, 1.5), (-19.0, -19.0, -35.0), np.eye(3),
                        "1.2.826.0.1.3680043.8.498.7", slope=1.0, intercept=-1024.0)
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "reference_path": str(folder), "output_dir": str(tmp_path / "out"),
                   "checkpoint_dir": ""})
    edge = parser.get_parsed_content("edge")
    edge.check()
    reference = edge["reference_path"]
    assert reference.shape == (1, 48, 48, 48) and reference.meta["modality"] == "CT"
    np.testing.assert_array_equal(reference[0].numpy(), hu.astype(np.float32))
    np.testing.assert_allclose(np.diag(reference.affine.numpy())[:3], [-0.8, -0.8, 1.5], atol=1e-4)  # LPS -> RAS
