"""medgen.engines.writers.reconstruction: the writer's files, affine and no-overwrite rules."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.metrics.reconstruction import reconstruction_metrics
from medgen.engines.writers.reconstruction import ReconstructionWriter


def volumes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.random((16, 14, 12))
    return np.clip(reference + 0.1 * rng.standard_normal(reference.shape), -0.2, 1.2), reference


def test_writer_files_affine_metrics_and_no_overwrite(tmp_path: Path):
    volume, reference = volumes(1)
    affine = torch.tensor([[0.5, 0, 0, 1.0], [0, 2.0, 0, -3.0], [0, 0, 1.5, 7.0], [0, 0, 0, 1]], dtype=torch.float64)
    image = MetaTensor(torch.from_numpy(volume).float()[None, None], affine=affine)
    input_file = tmp_path / "input.nii.gz"
    input_file.write_bytes(b"")
    writer = ReconstructionWriter(tmp_path / "out", prefix="rec", info={"seed": 5}, inputs=[str(input_file)])
    writer.check()
    content = writer(image, reference=reference, baselines={"noisy_copy": volume, "missing": None})
    saved = nib.load(tmp_path / "out" / "rec.nii.gz")
    np.testing.assert_allclose(saved.affine, affine.numpy())
    np.testing.assert_allclose(saved.get_fdata(), volume.astype(np.float32))
    assert (tmp_path / "out" / "rec.png").stat().st_size > 1000
    written = json.loads((tmp_path / "out" / "rec_metrics.json").read_text())
    assert written == json.loads(json.dumps(content)) and written["seed"] == 5 and written["shape"] == [16, 14, 12]
    assert written["metrics"]["psnr"] == pytest.approx(reconstruction_metrics(volume, reference)["psnr"], abs=1e-4)
    assert set(written["baselines"]) == {"noisy_copy"}
    assert written["statistics"]["max"] == pytest.approx(float(volume.astype(np.float32).max()))

    with pytest.raises(FileExistsError):
        ReconstructionWriter(tmp_path / "out", prefix="rec").check()
    ReconstructionWriter(tmp_path / "out", prefix="rec", overwrite=True).check()
    with pytest.raises(ValueError, match="input"):
        ReconstructionWriter(tmp_path, prefix="input", inputs=[str(tmp_path / "input_metrics.json")]).check()
    with pytest.raises(ValueError, match="prefix"):
        ReconstructionWriter(tmp_path, prefix="a/b")
    # without a reference: statistics only, identity affine for a plain tensor
    plain = ReconstructionWriter(tmp_path / "plain", prefix="sample")(torch.from_numpy(reference)[None])
    assert plain["metrics"] is None and plain["baselines"] == {}
    np.testing.assert_allclose(nib.load(tmp_path / "plain" / "sample.nii.gz").affine, np.eye(4))


def test_posterior_std_file_uncertainty_metrics_and_reference_data_range(tmp_path: Path):
    volume, reference = volumes(2)
    std = np.full(volume.shape, 0.05, dtype=np.float32)
    writer = ReconstructionWriter(tmp_path, prefix="post", write_std=True, data_range=None)
    with pytest.raises(ValueError, match="std must be given exactly when write_std=True"):
        writer(volume, reference=reference)
    writer.check()
    content = writer(volume, reference=reference, std=std)
    np.testing.assert_allclose(nib.load(tmp_path / "post_std.nii.gz").get_fdata(), std, rtol=1e-6)
    assert content["std_nifti"] == "post_std.nii.gz"
    error = np.abs(volume - reference)
    assert content["uncertainty"]["coverage"] == pytest.approx(float((error <= 0.1).mean()), abs=1e-6)
    assert content["uncertainty"]["std_error_correlation"] == 0.0  # a constant std
    data_range = float(reference.max() - reference.min())
    assert content["data_range"] == pytest.approx(data_range)
    expected = reconstruction_metrics(volume, reference, data_range)["psnr"]
    assert content["metrics"]["psnr"] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(FileExistsError):  # check() knows the std file too
        ReconstructionWriter(tmp_path, prefix="post", write_std=True).check()
