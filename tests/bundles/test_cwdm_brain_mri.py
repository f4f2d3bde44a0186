"""bundles/cwdm_brain_mri: metadata and the BraTS-style sample case, synthesis through ``python -m monai.bundle run``
from another directory (the case's affine, zero outside the brain, masked metrics and baselines, no overwrite),
training two iterations into a temporary bundle copy (and resuming), the packed training items, verify_net_in_out, the
official 224 x 224 x 160 configuration."""

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

from medgen.data.brats import find_brats_files
from medgen.engines.metrics import masked_synthesis_metrics
from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint
from medgen.networks.guided_unet import GuidedUNet
from medgen.transforms.intensity import WDMScaleIntensity
from tests.bundles.helpers import assert_apache_licence, bundle_metadata, exception_chain, sha1

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "cwdm_brain_mri"
CONFIGS = BUNDLE / "configs"
MODEL = BUNDLE / "models" / "model_t2.pt"
CASE = BUNDLE / "sample" / "BraTS-GLI-00007-000"


def test_metadata_weights_and_sample_case():
    meta = bundle_metadata(BUNDLE)
    assert any("2411.17203" in r for r in meta["references"])
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 32
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 8
    assert_apache_licence(BUNDLE)
    for name in ("inference.json", "train.json", "multi_gpu_train.json", "logging.conf", "official_unet_224.json",
                 "inference_official_224.json", "metadata_official.json"):
        assert (CONFIGS / name).is_file(), name
    assert (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "scripts" / "make_sample.py").is_file()
    assert MODEL.is_file() and MODEL.stat().st_size < 3_000_000
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    assert isinstance(load_state_dict_checked(parser.get_parsed_content("network_def"), read_checkpoint(MODEL)),
                      GuidedUNet)
    files = find_brats_files(CASE)
    assert list(files) == ["t1", "t1ce", "t2", "flair", "seg"] and files["t2"].name.endswith("-t2w.nii.gz")
    images = {name: nib.load(path) for name, path in files.items()}
    for name, image in images.items():
        assert image.shape == (32, 32, 32)
        np.testing.assert_allclose(image.affine, images["t1"].affine)
        assert image.get_data_dtype() == (np.uint8 if name == "seg" else np.int16)
    assert set(np.unique(images["seg"].get_fdata()).astype(int)) <= {0, 1, 2, 3}
    brain = images["t1"].get_fdata() != 0
    assert 0.1 < brain.mean() < 0.5 and np.all(images["t2"].get_fdata()[~brain] == 0)
    assert images["t2"].get_fdata().max() > 1000  # raw scanner-like units, not [0, 1]


def test_synthesis_from_another_directory_scores_in_the_brain(tmp_path: Path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
               "--bundle_root", str(BUNDLE), "--steps", "3", "--seed", "1", "--baseline_fit_cases", "2",
               "--output_dir", str(out), "--progress", "False", "--checkpoint_dir", str(tmp_path / "state")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    image = nib.load(out / "cwdm_t2_seed1.nii.gz")
    files = find_brats_files(CASE)
    assert image.shape == (32, 32, 32)
    np.testing.assert_allclose(image.affine, nib.load(files["t1"]).affine, atol=1e-6)
    synthesis = image.get_fdata()
    brain = nib.load(files["t1"]).get_fdata() != 0
    assert np.all(synthesis[~brain] == 0) and 0 <= synthesis.min() and synthesis.max() <= 1
    metrics = json.loads((out / "cwdm_t2_seed1_metrics.json").read_text())
    assert metrics["target"] == "t2" and metrics["conditions"] == ["t1", "t1ce", "flair"]
    reference = WDMScaleIntensity(renormalize=False)(nib.load(files["t2"]).get_fdata()[None])[0]
    expected = masked_synthesis_metrics(synthesis, reference, brain)
    assert metrics["metrics"]["voxels"] == int(brain.sum())
    assert metrics["metrics"]["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    assert set(metrics["baselines"]) == {"mean_of_conditions", "linear_regression"}
    assert metrics["baselines"]["linear_regression"]["psnr"] > metrics["baselines"]["mean_of_conditions"]["psnr"]
    before = sha1(out / "cwdm_t2_seed1.nii.gz")
    with pytest.raises(Exception) as error:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), steps=3, seed=1,
            baseline_fit_cases=2, output_dir=str(out), progress=False)
    assert any(isinstance(e, FileExistsError) for e in exception_chain(error.value))
    assert sha1(out / "cwdm_t2_seed1.nii.gz") == before


def test_a_case_without_a_condition_is_refused_before_sampling(tmp_path: Path):
    case = tmp_path / "case"
    case.mkdir()
    for name, path in find_brats_files(CASE).items():
        if name != "flair":
            shutil.copy(path, case / path.name)
    with pytest.raises(Exception) as error:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), input_path=str(case), steps=2,
            output_dir=str(tmp_path / "out"), progress=False)
    assert any(isinstance(e, FileNotFoundError) and "flair" in str(e) for e in exception_chain(error.value))


def train_overrides(root: Path, **extra) -> dict:
    return {"config_file": str(root / "configs" / "train.json"), "bundle_root": str(root), "max_epochs": 1,
            "epoch_length": 2, "num_train_volumes": 4, "batch_size": 2, "image_size": [16, 16, 16], "log_every": 1,
            "checkpoint_every": 2, **extra}


def test_train_two_iterations_into_a_copy_and_resume(tmp_path: Path):
    committed = sha1(MODEL)
    copy = tmp_path / "cwdm_brain_mri"
    shutil.copytree(CONFIGS, copy / "configs")
    run(**train_overrides(copy))
    model = copy / "models" / "model_t2.pt"
    checkpoint = copy / "runs" / "train_t2" / "checkpoint_iteration=2.pt"
    assert model.is_file() and checkpoint.is_file()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["trainer"]["iteration"] == 2
    run(**train_overrides(copy, max_epochs=2, resume_from=str(checkpoint),
                          output_model=str(copy / "models" / "resumed.pt")))
    straight = tmp_path / "straight"
    shutil.copytree(CONFIGS, straight / "configs")
    run(**train_overrides(straight, max_epochs=2))
    resumed = torch.load(copy / "models" / "resumed.pt", weights_only=True)
    reference = torch.load(straight / "models" / "model_t2.pt", weights_only=True)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert sha1(MODEL) == committed


def test_training_items_pack_the_target_first():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"num_train_volumes": 1, "image_size": [16, 16, 16], "target": "flair"})
    assert parser.get_parsed_content("conditions", lazy=False) == ["t1", "t1ce", "t2"]
    case = parser.get_parsed_content("train#cases", lazy=False)[0]
    item = parser.get_parsed_content("train#dataset", lazy=False)[0]["image"]
    assert item.shape == (4, 16, 16, 16) and float(item.min()) == 0.0 and float(item.max()) == 1.0
    expected = WDMScaleIntensity(renormalize=False)(torch.from_numpy(case["flair"])[None])[0]
    torch.testing.assert_close(torch.as_tensor(item[0]), torch.as_tensor(expected))
    assert parser.get_parsed_content("network_def", lazy=False).in_channels == 32


def test_verify_net_in_out():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), n=2, extra_forward_args={"timesteps": 500})


def test_official_224_configuration_and_a_tiny_run_of_it(tmp_path: Path):
    """cWDM's UNetModel (in 32 = 8 target + 24 condition channels, concatenated skips) built from the official
    configuration on the meta device; the stacked config picks one checkpoint per target and runs on the sample case
    with the demo network swapped in by overrides."""
    config = json.loads((CONFIGS / "official_unet_224.json").read_text())
    with torch.device("meta"):
        network = GuidedUNet.from_config(config)
    assert network.in_channels == 32 and network.input_multiple == (16, 16, 16)
    assert sum(p.numel() for p in network.parameters()) == 81_511_048
    files = [str(CONFIGS / "inference.json"), str(CONFIGS / "inference_official_224.json")]
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("checkpoint").endswith("official_t2.pt")
    inferer = parser.get_parsed_content("inferer")
    assert inferer.diffusion.num_timesteps == 1000 and inferer.sampler == "ddpm"
    parser["target"] = "flair"
    assert parser.get_parsed_content("checkpoint").endswith("official_flair.pt")
    assert parser.get_parsed_content("conditions") == ["t1", "t1ce", "t2"]
    demo_network = json.loads((CONFIGS / "inference.json").read_text())["network_def"]
    out = tmp_path / "out"
    run(config_file=files, bundle_root=str(BUNDLE), checkpoint=str(MODEL), network_def=demo_network, steps=2,
        baseline_fit_cases=2, output_dir=str(out), checkpoint_dir=str(tmp_path / "state"), progress=False)
    assert nib.load(out / "cwdm_t2_seed0.nii.gz").shape == (32, 32, 32)
    metrics = json.loads((out / "cwdm_t2_seed0_metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["checkpoint"] == str(MODEL)
