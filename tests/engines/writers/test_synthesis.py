"""Tests for medgen.engines.writers.synthesis: the synthesis writer scores inside the brain mask."""

from __future__ import annotations

import json

import numpy as np
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
