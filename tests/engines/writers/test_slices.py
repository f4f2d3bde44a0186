"""medgen.engines.writers.slices: the slice writer's files, the comparison PNG and no-overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.metrics.slices import slice_metrics
from medgen.engines.writers.slices import SliceReconstructionWriter, save_slice_comparison_png


def stack(seed: int, shape=(32, 32, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.clip(np.linspace(0, 1, shape[0])[:, None, None] + 0 * np.zeros(shape), 0, 1)
    return np.clip(base + 0.1 * rng.standard_normal(shape), -0.1, 1.1).astype(np.float64)


def test_writer_files_metrics_and_no_overwrite(tmp_path: Path):
    affine = torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0], dtype=torch.float64))
    reference = stack(1, (32, 32, 1))
    volume = MetaTensor(torch.from_numpy(stack(0, (32, 32, 1)))[None], affine=affine)
    writer = SliceReconstructionWriter(tmp_path, prefix="rec", info={"task": "test"})
    writer.check()
    content = writer(volume, reference=reference, baselines={"baseline": reference * 0.5})
    image = nib.load(tmp_path / "rec.nii.gz")
    assert image.shape == (32, 32, 1)
    np.testing.assert_allclose(image.affine, affine.numpy())
    np.testing.assert_allclose(image.get_fdata()[..., 0], volume[0, ..., 0].numpy(), atol=1e-6)
    saved = json.loads((tmp_path / "rec_metrics.json").read_text())
    assert saved == json.loads(json.dumps(content))
    assert saved["task"] == "test" and saved["shape"] == [32, 32, 1]
    assert saved["metrics"]["psnr"] == pytest.approx(slice_metrics(volume, reference)["psnr"])
    assert set(saved["baselines"]) == {"baseline"}
    assert (tmp_path / "rec.png").stat().st_size > 2000
    with pytest.raises(FileExistsError):
        SliceReconstructionWriter(tmp_path, prefix="rec").check()
    with pytest.raises(ValueError, match="input"):
        SliceReconstructionWriter(tmp_path, prefix="x", inputs=[tmp_path / "x.nii.gz"]).check()
    # without a reference: no metrics, still written
    content = SliceReconstructionWriter(tmp_path, prefix="plain")(volume)
    assert content["metrics"] is None and content["baselines"] == {}


def test_comparison_png_rejects_volumes(tmp_path: Path):
    with pytest.raises(ValueError, match="2D"):
        save_slice_comparison_png({"a": np.zeros((4, 4, 2))}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="at least one"):
        save_slice_comparison_png({}, tmp_path / "a.png")
