"""bundles/sdm_ctca: metadata, inference through ``python -m monai.bundle run`` (both stages' outputs,
affines, per-class JSON, no overwrite), both training configs for two iterations into a temporary bundle copy (and
resuming), the official configurations. The engine pieces the bundle is built from (packed SDM inputs, the SDM
training loss, per-class intensity statistics) are tested in tests/engines/test_semantic.py and
tests/engines/test_semantic_writer.py."""

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
from monai.bundle import ConfigParser, run

from medgen.networks.sdm_unet import SDMUNet
from tests.bundles.helpers import assert_apache_licence, bundle_metadata, sha1


BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "sdm_ctca"
CONFIGS = BUNDLE / "configs"
MODELS = {name: BUNDLE / "models" / f"{name}.pt" for name in ("lowres", "highres")}
SAMPLE = BUNDLE / "sample" / "cta_labels_seed7.nii.gz"


def test_metadata_has_the_monai_fields():
    meta = bundle_metadata(BUNDLE)
    assert any("2207.00050" in r for r in meta["references"])
    assert any("Manubolgia/semantic-diffusion-model" in r for r in meta["references"])
    labels = meta["generated_data_format"]["inputs"]["labels"]
    assert labels["num_channels"] == 1 and labels["value_range"] == [0, 8] and len(labels["channel_def"]) == 1
    image = meta["generated_data_format"]["outputs"]["image"]
    assert image["type"] == "image" and image["value_range"] == [-1, 1]
    for block, label_channels in (("network_data_format", 9), ("highres_network_data_format", 10)):
        assert meta[block]["inputs"]["y"]["num_channels"] == label_channels
        assert meta[block]["outputs"]["pred"]["num_channels"] == 2
    assert_apache_licence(BUNDLE)
    for name in ("inference.json", "inference_official.json", "train_lowres.json", "train_highres.json",
                 "multi_gpu_train.json", "logging.conf", "official_sdm_lr.json", "official_sdm_hr.json"):
        assert (CONFIGS / name).is_file(), name
    assert (BUNDLE / "docs" / "README.md").is_file()
    for path in MODELS.values():
        assert path.is_file() and path.stat().st_size < 3_000_000


def load_stats(out: Path, seed: int) -> dict:
    return json.loads((out / f"sdm_seed{seed}_stats.json").read_text())


def test_inference_from_another_directory_writes_both_stages_and_refuses_to_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
               "--bundle_root", str(BUNDLE), "--steps", "3", "--seed", "3", "--output_dir", str(out),
               "--progress", "False"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    sample = nib.load(SAMPLE)
    labels = np.asarray(sample.dataobj)
    high = nib.load(out / "sdm_seed3_highres.nii.gz")
    low = nib.load(out / "sdm_seed3_lowres.nii.gz")
    assert high.shape == (32, 32, 32) and low.shape == (16, 16, 16)
    np.testing.assert_allclose(high.affine, sample.affine)
    np.testing.assert_allclose(np.diag(low.affine)[:3], 2 * np.diag(sample.affine)[:3])  # voxels twice as large
    for stage in ("highres", "lowres"):
        assert (out / f"sdm_seed3_{stage}.png").stat().st_size > 3000
    stats = load_stats(out, 3)
    assert stats["seed"] == 3 and stats["steps"] == 3 and stats["overlap"] == 0 and stats["guidance_scale"] == 2.0
    volume = high.get_fdata()
    assert stats["highres"]["shape"] == [32, 32, 32] and stats["lowres"]["shape"] == [16, 16, 16]
    assert -1 - 1e-5 <= volume.min() < volume.max() <= 1 + 1e-5
    assert stats["highres"]["statistics"]["mean"] == pytest.approx(volume.mean(), abs=1e-5)
    for c in range(9):
        entry = stats["highres"]["classes"][str(c)]
        assert entry["voxels"] == int((labels == c).sum())
        assert entry["mean"] == pytest.approx(volume[labels == c].mean(), abs=1e-5)
    assert set(stats["highres"]["contrasts"]) >= {"blood_pool_vs_myocardium", "coronaries_vs_myocardium"}
    assert stats["highres"]["expected_correlation"]["classes"] == list(range(1, 9))
    before = sha1(out / "sdm_seed3_highres.nii.gz")

    # the same run again (in-process): refused before sampling, nothing replaced
    with pytest.raises(Exception) as error:
        run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), steps=3, seed=3,
            output_dir=str(out), progress=False)
    chain, exc = [], error.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, FileExistsError) for e in chain)
    assert sha1(out / "sdm_seed3_highres.nii.gz") == before


def test_inference_with_overlap_without_guidance_and_ddim(tmp_path: Path):
    run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(BUNDLE), steps=2, seed=4, overlap=4,
        guidance_scale=1.0, sampler="ddim", output_dir=str(tmp_path), progress=False)
    stats = load_stats(tmp_path, 4)
    assert stats["overlap"] == 4 and stats["guidance_scale"] == 1.0 and stats["sampler"] == "ddim"
    assert nib.load(tmp_path / "sdm_seed4_highres.nii.gz").shape == (32, 32, 32)


def train_overrides(root: Path, config: str, **extra) -> dict:
    return {"config_file": str(root / "configs" / config), "bundle_root": str(root), "max_epochs": 1,
            "epoch_length": 2, "num_train_volumes": 2, "batch_size": 2, "log_every": 1, "checkpoint_every": 1,
            **extra}


@pytest.mark.parametrize("stage", ["lowres", "highres"])
def test_train_two_iterations_into_a_copy(tmp_path: Path, stage: str):
    committed = sha1(MODELS[stage])
    copy = tmp_path / "sdm_ctca"
    shutil.copytree(CONFIGS, copy / "configs")
    run(**train_overrides(copy, f"train_{stage}.json"))
    model = copy / "models" / f"{stage}.pt"
    checkpoint = copy / "runs" / f"train_{stage}" / "checkpoint_iteration=2.pt"
    assert model.is_file() and checkpoint.is_file()
    state = torch.load(model, weights_only=True)
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved) == {"network", "optimizer", "ema", "trainer", "random_state", "loss_curve"}
    assert saved["trainer"]["iteration"] == 2 and int(saved["ema"]["num_updates"]) == 2
    assert state.keys() == saved["network"].keys()
    assert all(torch.equal(state[k], saved["ema"][f"averaged.{k}"]) for k in state)
    assert ("in_norm_ref.mlp_shared.0.weight" in " ".join(state)) == (stage == "highres")
    if stage == "lowres":
        # resume for one more epoch == two epochs without interruption
        run(**train_overrides(copy, "train_lowres.json", max_epochs=2, resume_from=str(checkpoint),
                              output_model=str(copy / "models" / "resumed.pt")))
        straight = tmp_path / "straight"
        shutil.copytree(CONFIGS, straight / "configs")
        run(**train_overrides(straight, "train_lowres.json", max_epochs=2))
        resumed = torch.load(copy / "models" / "resumed.pt", weights_only=True)
        reference = torch.load(straight / "models" / "lowres.pt", weights_only=True)
        assert all(torch.equal(resumed[k], reference[k]) for k in reference)
        assert not all(torch.equal(resumed[k], state[k]) for k in state)
    assert sha1(MODELS[stage]) == committed


def test_official_configurations():
    counts = {"official_sdm_lr.json": 366_832_002, "official_sdm_hr.json": 473_967_234}  # tests/data/sdm/README.md
    for name, count in counts.items():
        with torch.device("meta"):
            network = SDMUNet.from_config(json.loads((CONFIGS / name).read_text()))
        assert sum(p.numel() for p in network.parameters()) == count, name
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "inference.json"), str(CONFIGS / "inference_official.json")])
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("lowres_checkpoint").endswith("official_lowres.pt")
    assert parser.get_parsed_content("highres_checkpoint").endswith("official_highres.pt")
    inferer = parser.get_parsed_content("highres_inferer")
    assert inferer.view.slab_depth == 16 and inferer.view.overlap == 0 and inferer.settings.reference_pad_value == -1024.0
    assert inferer.diffusion.num_timesteps == 1000 and inferer.sampler == "ddpm"
    assert parser.get_parsed_content("lowres_size") == [64, 64, 64]
