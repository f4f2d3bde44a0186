"""Tests for medgen.engines.writers.synthesis: the synthesis writer scores inside the brain mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgen.engines.writers.synthesis import SynthesisWriter


def _pair(seed=0, shape=(16, 18, 20)):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.2, 1.0, shape)
    volume = np.clip(reference + rng.normal(0, 0.05, shape), 0, 1)
    mask = np.zeros(shape, bool)
    mask[3:13, 4:15, 2:17] = True
    return volume, reference, mask


def test_writer_scores_in_the_mask(tmp_path):
    volume, reference, mask = _pair(3)
    writer = SynthesisWriter(tmp_path, prefix="syn", mask=mask)
    writer.check()
    content = writer(torch.from_numpy(volume).float(), reference=torch.from_numpy(reference),
                     baselines={"zeros": torch.zeros(volume.shape)})
    stored = json.loads((tmp_path / "syn_metrics.json").read_text())
    assert stored["metrics"]["voxels"] == int(mask.sum()) == content["metrics"]["voxels"]
    assert stored["baselines"]["zeros"]["psnr"] < stored["metrics"]["psnr"]
    assert (tmp_path / "syn.nii.gz").exists() and (tmp_path / "syn.png").exists()


def test_a_call_mask_replaces_the_writer_mask_for_that_call(tmp_path):
    volume, reference, mask = _pair(4)
    smaller = np.zeros_like(mask)
    smaller[5:10, 6:12, 4:14] = True
    writer = SynthesisWriter(tmp_path, prefix="a", mask=mask)
    writer.check()
    content = writer(torch.from_numpy(volume).float(), reference=torch.from_numpy(reference), mask=smaller)
    assert content["metrics"]["voxels"] == int(smaller.sum())
    second = SynthesisWriter(tmp_path, prefix="b", mask=mask)
    second.check()
    assert second(torch.from_numpy(volume).float(), reference=torch.from_numpy(reference))["metrics"]["voxels"] == int(
        mask.sum())


def test_a_call_window_scores_in_the_volume_units(tmp_path):
    volume, reference, mask = _pair(5)
    low, high = 200.0, 1800.0  # the same pair in scanner-like units scores the same in its window
    writer = SynthesisWriter(tmp_path, prefix="units", mask=mask, clip=None, display_range=None)
    writer.check()
    scaled = writer(torch.from_numpy(volume * (high - low) + low).float(),
                    reference=torch.from_numpy(reference * (high - low) + low), window=(low, high))
    unit = SynthesisWriter(tmp_path, prefix="unit", mask=mask)
    unit.check()
    plain = unit(torch.from_numpy(volume).float(), reference=torch.from_numpy(reference))
    assert scaled["metrics"]["psnr"] == pytest.approx(plain["metrics"]["psnr"], abs=1e-3)
    assert scaled["metrics"]["ssim"] == pytest.approx(plain["metrics"]["ssim"], abs=1e-4)
    with pytest.raises(ValueError, match="window"):
        writer(torch.from_numpy(volume).float(), reference=torch.from_numpy(reference), window=(1.0, 1.0))
