"""medgen.engines.writers.generated: GeneratedVolumeWriter."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.writers.base import volume_statistics
from medgen.engines.writers.generated import GeneratedVolumeWriter


def test_writes_nifti_png_and_statistics(tmp_path):
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    data = torch.linspace(0, 1, 2 * 8 * 8 * 6).reshape(2, 1, 8, 8, 6)
    writer = GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed3", info={"seed": 3}, threshold=0.5)
    writer.check(2)
    content = writer(MetaTensor(data, affine=affine))
    for k in range(2):
        image = nib.load(tmp_path / "out" / f"wdm_seed3_{k}.nii.gz")
        assert image.shape == (8, 8, 6)
        np.testing.assert_allclose(image.affine, affine.numpy())
        np.testing.assert_allclose(image.get_fdata(), data[k, 0].numpy(), atol=1e-7)
        assert (tmp_path / "out" / f"wdm_seed3_{k}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "wdm_seed3_stats.json").read_text())
    assert saved == json.loads(json.dumps(content))
    assert saved["seed"] == 3 and saved["samples"][1]["max"] == pytest.approx(1.0)
    assert saved["samples"][0]["fraction_above_threshold"] == pytest.approx(
        float((data[0] > 0.5).double().mean()))
    assert saved["samples"][0]["mean"] == pytest.approx(float(data[0].double().mean()), abs=1e-6)
    with pytest.raises(FileExistsError, match="outputs exist"):
        GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed3").check(1)
    GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed4").check(1)


def test_statistics_and_bad_inputs(tmp_path):
    stats = volume_statistics(np.arange(101, dtype=np.float32))
    assert stats["p01"] == pytest.approx(1.0) and stats["p99"] == pytest.approx(99.0) and stats["std"] > 0
    with pytest.raises(ValueError, match="prefix"):
        GeneratedVolumeWriter(tmp_path, prefix="a/b")
    with pytest.raises(ValueError, match="num_samples"):
        GeneratedVolumeWriter(tmp_path).check(0)
    with pytest.raises(ValueError, match="volumes"):
        GeneratedVolumeWriter(tmp_path)(torch.zeros(4, 4, 4))


def test_generated_volume_writer_never_writes_over_an_input(tmp_path):
    condition = tmp_path / "wdm_seed0_0.nii.gz"
    with pytest.raises(ValueError, match="input file"):
        GeneratedVolumeWriter(tmp_path, prefix="wdm_seed0", inputs=[condition], overwrite=True).check(1)

