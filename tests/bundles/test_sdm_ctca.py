"""bundles/sdm_ctca: metadata, inference through ``python -m monai.bundle run`` (both stages' outputs,
affines, per-class JSON, no overwrite), both training configs for two iterations into a temporary bundle copy (and
resuming), the official configurations; and the engine pieces the bundle is built from (packed SDM inputs, the SDM
training loss, per-class intensity statistics)."""

from __future__ import annotations

import hashlib
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

from medgen.diffusion.losses import hybrid_loss
from medgen.engines.semantic import (
    SemanticDiffusionTrainingLoss,
    downsample_image_and_labels,
    pack_semantic_input,
    semantic_slab_items,
)
from medgen.engines.semantic_writer import class_intensity_statistics
from medgen.inferers.slab import sdm_diffusion
from medgen.networks.sdm_unet import SDMUNet, one_hot_labels, reference_for_slab, slab_z_position_channel

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "sdm_ctca"
CONFIGS = BUNDLE / "configs"
MODELS = {name: BUNDLE / "models" / f"{name}.pt" for name in ("lowres", "highres")}
SAMPLE = BUNDLE / "sample" / "cta_labels_seed7.nii.gz"


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def tiny_sdm(**extra) -> SDMUNet:
    torch.manual_seed(0)
    net = SDMUNet(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=4, learn_sigma=True,
                  use_scale_shift_norm=True, resblock_updown=True, num_groups=4, spade_hidden_channels=4, **extra)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised output convs would hide the conditioning
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


# ------------------------------------------------------------------------------------------------ engine pieces
def test_packed_reference_gives_the_network_output_of_the_official_reference():
    net = tiny_sdm(position_channel=True, reference_channels=2)
    g = torch.Generator().manual_seed(0)
    low_res = torch.rand(1, 8, 8, 8, generator=g) * 2 - 1
    label = torch.randint(0, 4, (1, 16, 16, 4), generator=g)
    image = torch.rand(1, 16, 16, 4, generator=g)
    reference = reference_for_slab(low_res, 1, 4, 16, margin=1, pad_value=-1.0)  # (2, 8, 8, 4)
    position = slab_z_position_channel(1, 4, 16, (16, 16))
    packed = pack_semantic_input(image, label, position, reference)
    assert packed.shape == (5, 16, 16, 4)
    assert torch.equal(packed[1:2], label.float()) and torch.equal(packed[2:3], position)
    x, t = torch.randn(1, 1, 16, 16, 4, generator=g), torch.tensor([7])
    y = torch.cat([one_hot_labels(label[None], 4), position[None]], 1)
    with torch.no_grad():
        official = net(x, t, y, reference[None])
        from_pack = net(x, t, y, packed[None, 3:])
    assert torch.equal(official, from_pack)


def test_slab_items_are_the_official_slab_conditioning():
    image = torch.linspace(-1, 1, 16 * 16 * 16).reshape(1, 16, 16, 16)
    label = (torch.arange(16 * 16 * 16) % 5).reshape(1, 16, 16, 16).to(torch.uint8)
    low_image, low_label = downsample_image_and_labels(image, label, (8, 8, 8))
    assert low_image.shape == (1, 8, 8, 8) and float(low_image.min()) == -1.0 and float(low_image.max()) == 1.0
    assert low_label.dtype == torch.uint8 and torch.equal(low_label, label[:, ::2, ::2, ::2])
    items = semantic_slab_items(image, label, low_image, slab_depth=4, reference_margin=1, reference_pad_value=-1.0)
    assert len(items) == 4
    for k, item in enumerate(items):
        packed = item["image"]
        assert packed.shape == (5, 16, 16, 4)
        assert torch.equal(packed[0], image[0, ..., 4 * k : 4 * k + 4])
        assert torch.equal(packed[1], label[0, ..., 4 * k : 4 * k + 4].float())
        assert torch.equal(packed[2:3], slab_z_position_channel(k, 4, 16, (16, 16)))
        reference = reference_for_slab(low_image, k, 4, 16, 1, -1.0)
        assert torch.equal(packed[3:, ::2, ::2], reference)  # nearest x2 in-plane, same depth
    with pytest.raises(ValueError, match="multiple of slab_depth"):
        semantic_slab_items(image, label, low_image, slab_depth=5)


def test_training_loss_is_the_hybrid_loss_with_official_draws_and_label_dropout():
    net = tiny_sdm(position_channel=True, reference_channels=2)
    g = torch.Generator().manual_seed(1)
    images = torch.cat([torch.rand(3, 1, 8, 8, 4, generator=g) * 2 - 1, torch.randint(0, 4, (3, 1, 8, 8, 4),
                        generator=g).float(), torch.rand(3, 3, 8, 8, 4, generator=g)], 1)
    diffusion = sdm_diffusion()
    y = torch.cat([one_hot_labels(images[:, 1:2], 4), images[:, 2:3]], 1)
    r = images[:, 3:]
    for drop_rate in (0.0, 0.5):
        loss = SemanticDiffusionTrainingLoss(drop_rate=drop_rate)(net, images, torch.Generator().manual_seed(5))
        draws = torch.Generator().manual_seed(5)
        mask = torch.ones(3, 1, 1, 1, 1)
        if drop_rate:
            mask = (torch.rand(3, generator=draws) > drop_rate).float().reshape(3, 1, 1, 1, 1)
            assert 0 < mask.sum() < 3  # this seed drops some items and keeps others
        t = torch.randint(0, 1000, (3,), generator=draws)
        expected = hybrid_loss(diffusion, net, images[:, :1], t, generator=draws,
                               model_kwargs={"y": y * mask, "r": r * mask})["loss"].mean()
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="packed as"):
        SemanticDiffusionTrainingLoss()(net, images[:, :3], None)
    with pytest.raises(ValueError, match="drop_rate"):
        SemanticDiffusionTrainingLoss(drop_rate=1.0)


def test_class_intensity_statistics_against_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (6, 6, 6))
    expected = {1: 10.0, 2: 30.0, 3: 20.0}
    image = np.choose(labels, [0.0, 10.0, 30.0, 20.0]) + rng.normal(0, 1, labels.shape)
    stats = class_intensity_statistics(image, labels[None], {1: "one"}, {"a_vs_b": [[1, 2], [3]]}, expected)
    assert stats["classes"]["1"]["name"] == "one" and stats["classes"]["2"]["name"] == "2"
    for c in range(4):
        assert stats["classes"][str(c)]["mean"] == pytest.approx(image[labels == c].mean(), abs=1e-12)
        assert stats["classes"][str(c)]["voxels"] == int((labels == c).sum())
    a, b = image[np.isin(labels, [1, 2])], image[labels == 3]
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert stats["contrasts"]["a_vs_b"]["cohens_d"] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-12)
    assert stats["expected_correlation"]["spearman"] == pytest.approx(1.0)
    assert stats["expected_correlation"]["pearson"] > 0.99


# ------------------------------------------------------------------------------------------------ the bundle
def test_metadata_has_the_monai_fields():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors", "copyright", "network_data_format",
                "intended_use", "references"):
        assert meta.get(key), key
    assert meta["version"] in meta["changelog"]
    assert meta["required_packages_version"]["medgen"] == "0.1.0"
    assert any("2207.00050" in r for r in meta["references"])
    assert any("Manubolgia/semantic-diffusion-model" in r for r in meta["references"])
    labels = meta["network_data_format"]["inputs"]["labels"]
    assert labels["num_channels"] == 1 and labels["value_range"] == [0, 8] and len(labels["channel_def"]) == 1
    image = meta["network_data_format"]["outputs"]["image"]
    assert image["type"] == "image" and image["value_range"] == [-1, 1]
    licence = (BUNDLE / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence[:200]
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
    checkpoint = copy / "runs" / f"train_{stage}" / "checkpoint_epoch=1.pt"
    assert model.is_file() and checkpoint.is_file()
    state = torch.load(model, weights_only=True)
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved) == {"network", "optimizer", "ema", "trainer"}
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
    assert inferer.slab_depth == 16 and inferer.overlap == 0 and inferer.reference_pad_value == -1024.0
    assert inferer.diffusion.num_timesteps == 1000 and inferer.sampler == "ddpm"
    assert parser.get_parsed_content("lowres_size") == [64, 64, 64]
