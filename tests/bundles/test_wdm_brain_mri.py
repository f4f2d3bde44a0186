"""bundles/wdm_brain_mri: metadata, inference through ``python -m monai.bundle run`` (outputs, affine, statistics,
no overwrite), training two iterations into a temporary bundle copy (and resuming), verify_net_in_out, the official
128^3 configuration."""

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

from medgen.networks.guided_unet import GuidedUNet
from tests.bundles.helpers import assert_apache_licence, bundle_metadata, sha1


BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "wdm_brain_mri"
CONFIGS = BUNDLE / "configs"
MODEL = BUNDLE / "models" / "model.pt"


def test_metadata_has_the_monai_fields():
    meta = bundle_metadata(BUNDLE)
    assert any("2402.19043" in r for r in meta["references"])
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 8 and image["format"] == "latent"
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 8
    assert_apache_licence(BUNDLE)
    for name in ("inference.json", "train.json", "multi_gpu_train.json", "logging.conf", "official_unet_128.json",
                 "inference_official_128.json", "official_unet_256.json", "inference_official_256.json", "inference_inpaint.json"):
        assert (CONFIGS / name).is_file(), name
    assert (BUNDLE / "docs" / "README.md").is_file()


def test_inference_from_another_directory_writes_outputs_and_refuses_to_overwrite(tmp_path: Path):
    assert MODEL.is_file() and MODEL.stat().st_size < 5_000_000
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
               "--bundle_root", str(BUNDLE), "--steps", "4", "--seed", "3", "--output_dir", str(out),
               "--progress", "False"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    image = nib.load(out / "wdm_seed3_0.nii.gz")
    assert image.shape == (32, 32, 32)
    np.testing.assert_allclose(image.affine, np.eye(4))
    volume = image.get_fdata()
    assert (out / "wdm_seed3_0.png").stat().st_size > 5000
    stats = json.loads((out / "wdm_seed3_stats.json").read_text())
    assert stats["seed"] == 3 and stats["steps"] == 4 and stats["sampler"] == "ddim"
    sample = stats["samples"][0]
    assert sample["shape"] == [1, 32, 32, 32] and sample["nifti"] == "wdm_seed3_0.nii.gz"
    assert sample["min"] == pytest.approx(volume.min(), abs=1e-6)
    assert sample["mean"] == pytest.approx(volume.mean(), abs=1e-5)
    assert -1e-4 <= sample["min"] < sample["max"] <= 1 + 1e-4  # (x + 1) / 2 of an image clipped to [-1, 1]
    assert 0.05 < sample["fraction_above_threshold"] < 0.95  # a head-like object on a dark background
    before = sha1(out / "wdm_seed3_0.nii.gz")

    # the same run again (in-process): refused before sampling, nothing replaced
    with pytest.raises(Exception) as error:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), steps=4, seed=3,
            output_dir=str(out), progress=False)
    chain, exc = [], error.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, FileExistsError) for e in chain)
    assert sha1(out / "wdm_seed3_0.nii.gz") == before


def train_overrides(root: Path, **extra) -> dict:
    return {"config_file": str(root / "configs" / "train.json"), "bundle_root": str(root), "max_epochs": 1,
            "epoch_length": 2, "num_train_volumes": 4, "batch_size": 2, "log_every": 1, "checkpoint_every": 1,
            **extra}


def test_train_two_iterations_into_a_copy_and_resume(tmp_path: Path):
    committed = sha1(MODEL)
    copy = tmp_path / "wdm_brain_mri"
    shutil.copytree(CONFIGS, copy / "configs")
    run(**train_overrides(copy))
    model = copy / "models" / "model.pt"
    checkpoint = copy / "runs" / "train" / "checkpoint_iteration=2.pt"
    assert model.is_file() and checkpoint.is_file()
    state = torch.load(model, weights_only=True)
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved) == {"network", "optimizer", "ema", "trainer", "random_state", "loss_curve"}
    assert saved["trainer"]["iteration"] == 2 and int(saved["ema"]["num_updates"]) == 2
    assert state.keys() == saved["network"].keys()
    assert all(torch.equal(state[k], saved["ema"][f"averaged.{k}"]) for k in state)

    # resume for one more epoch == two epochs without interruption
    run(**train_overrides(copy, max_epochs=2, resume_from=str(checkpoint),
                          output_model=str(copy / "models" / "resumed.pt")))
    straight = tmp_path / "straight"
    shutil.copytree(CONFIGS, straight / "configs")
    run(**train_overrides(straight, max_epochs=2))
    resumed = torch.load(copy / "models" / "resumed.pt", weights_only=True)
    reference = torch.load(straight / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert not all(torch.equal(resumed[k], state[k]) for k in state)
    assert sha1(MODEL) == committed


def test_verify_net_in_out():
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), n=4, extra_forward_args={"timesteps": 500})


def test_official_128_configuration():
    config = json.loads((CONFIGS / "official_unet_128.json").read_text())
    with torch.device("meta"):
        network = GuidedUNet.from_config(config)
    assert sum(p.numel() for p in network.parameters()) == 57_914_824  # WDM ours_unet_128 (official count)
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "inference_official_128.json")])
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("checkpoint").endswith("brats_unet_128.pt")
    assert parser.get_parsed_content("shape") == [1, 1, 128, 128, 128]
    inferer = parser.get_parsed_content("inferer")
    assert inferer.diffusion.num_timesteps == 1000 and inferer.sampler == "ddpm"


def test_official_256_configuration_and_a_tiny_run_of_it(tmp_path: Path):
    """The paper's second resolution: WDM ours_unet_256 (six levels); the config runs at 32^3 with the demo network
    swapped in by overrides (the 83M-parameter network itself is only built on the meta device)."""
    config = json.loads((CONFIGS / "official_unet_256.json").read_text())
    with torch.device("meta"):
        network = GuidedUNet.from_config(config)
    assert sum(p.numel() for p in network.parameters()) == 83_158_728  # WDM ours_unet_256 (official count)
    files = [str(CONFIGS / "inference.json"), str(CONFIGS / "inference_official_256.json")]
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("checkpoint").endswith("brats_unet_256.pt")
    assert parser.get_parsed_content("shape") == [1, 1, 256, 256, 256]
    inferer = parser.get_parsed_content("inferer")
    assert inferer.diffusion.num_timesteps == 1000 and inferer.sampler == "ddpm"
    demo_network = json.loads((CONFIGS / "inference.json").read_text())["network_def"]
    out = tmp_path / "out"
    run(config_file=files, bundle_root=str(BUNDLE), checkpoint=str(MODEL), network_def=demo_network,
        image_size=[32, 32, 32], steps=2, output_dir=str(out), checkpoint_dir=str(tmp_path / "state"), progress=False)
    image = nib.load(out / "wdm_seed0_0.nii.gz")
    assert image.shape == (32, 32, 32)
    stats = json.loads((out / "wdm_seed0_stats.json").read_text())
    assert stats["steps"] == 2 and stats["sampler"] == "ddpm" and stats["image_size"] == [32, 32, 32]


def test_inpainting_config_fills_the_mask_and_keeps_every_other_voxel(tmp_path: Path):
    """RePaint with the demo network on the shipped sample (int16 scanner-like units, oblique affine): the output is
    in the input's units with its affine, identical outside the mask, scored in the mask against the input and the
    TV-inpainting baseline."""
    sample = BUNDLE / "sample"
    out = tmp_path / "out"
    run(config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "inference_inpaint.json")],
        bundle_root=str(BUNDLE), steps=3, tv_iterations=50, output_dir=str(out),
        checkpoint_dir=str(tmp_path / "state"), progress=False)
    source = nib.load(sample / "brain_phantom_seed7.nii.gz")
    mask = nib.load(sample / "brain_phantom_seed7_mask.nii.gz").get_fdata() > 0
    image = nib.load(out / "wdm_inpaint_seed0.nii.gz")
    np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)
    filled, original = image.get_fdata(), source.get_fdata()
    np.testing.assert_array_equal(filled[~mask], original[~mask])
    assert not np.array_equal(filled[mask], original[mask]) and 200 < filled[mask].mean() < 1800  # input units
    metrics = json.loads((out / "wdm_inpaint_seed0_metrics.json").read_text())
    assert metrics["metrics"]["voxels"] == int(mask.sum()) and metrics["baselines"]["tv"]["voxels"] == int(mask.sum())
    assert metrics["task"] == "inpaint" and metrics["steps"] == 3 and np.isfinite(metrics["baselines"]["tv"]["psnr"])
    assert not (tmp_path / "state").exists()


def test_inpainting_mask_of_another_shape_is_refused_before_loading(tmp_path: Path):
    from medgen.bundle.errors import bundle_input_error
    from tests.bundles.helpers import exception_chain

    mask = nib.load(BUNDLE / "sample" / "brain_phantom_seed7_mask.nii.gz")
    nib.save(nib.Nifti1Image(mask.get_fdata()[:16].astype(np.uint8), mask.affine), str(tmp_path / "m.nii.gz"))
    with pytest.raises(Exception) as raised:
        run(config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "inference_inpaint.json")],
            bundle_root=str(BUNDLE), mask_path=str(tmp_path / "m.nii.gz"), output_dir=str(tmp_path / "out"),
            checkpoint_dir=str(tmp_path / "state"), progress=False)
    error = bundle_input_error(raised.value)
    assert error is not None, [str(e) for e in exception_chain(raised.value)]
    assert "mask_path (1, 16, 32, 32) must have the shape of input_path (1, 32, 32, 32)" in str(error)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
