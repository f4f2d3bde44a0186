"""medgen.engines.writers.semantic: the writer's files, affines, statistics and refusal to write over outputs or
inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.metrics.semantic import class_intensity_statistics
from medgen.engines.writers.semantic import SemanticSynthesisWriter


def test_writer_files_affines_statistics_and_no_overwrite(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (1, 12, 12, 8), generator=g)
    image = labels.float() * 0.5 - 0.5 + 0.05 * torch.randn(1, 12, 12, 8, generator=g)
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    low_affine = 2 * affine
    low_affine[3, 3] = 1.0
    source = tmp_path / "labels.nii.gz"
    source.write_bytes(b"labels")
    writer = SemanticSynthesisWriter(tmp_path / "out", "sdm_seed1", info={"seed": 1}, class_names={1: "one"},
                                     contrasts={"two_vs_zero": [[2], [0]]}, inputs=[str(source)])
    writer.check()
    content = writer(MetaTensor(image, affine=affine), labels, MetaTensor(image[:, ::2, ::2, ::2], affine=low_affine),
                     labels[:, ::2, ::2, ::2])
    saved = json.loads((tmp_path / "out" / "sdm_seed1_stats.json").read_text())
    assert saved == json.loads(json.dumps(content)) and saved["seed"] == 1
    for stage, volume, stage_labels, stage_affine in (("highres", image, labels, affine),
                                                      ("lowres", image[:, ::2, ::2, ::2], labels[:, ::2, ::2, ::2],
                                                       low_affine)):
        nifti = nib.load(tmp_path / "out" / f"sdm_seed1_{stage}.nii.gz")
        np.testing.assert_array_equal(nifti.affine, stage_affine.numpy())
        np.testing.assert_array_equal(nifti.get_fdata(), volume[0].numpy())
        assert (tmp_path / "out" / f"sdm_seed1_{stage}.png").stat().st_size > 2000
        entry = saved[stage]
        assert entry["shape"] == list(volume.shape[1:]) and entry["nifti"] == f"sdm_seed1_{stage}.nii.gz"
        assert entry["statistics"]["mean"] == pytest.approx(float(volume.double().mean()), abs=1e-6)
        expected = class_intensity_statistics(volume, stage_labels, {1: "one"}, {"two_vs_zero": [[2], [0]]})
        assert entry["classes"] == expected["classes"]  # JSON keeps floats exactly
        assert entry["contrasts"]["two_vs_zero"]["difference"] == pytest.approx(
            expected["contrasts"]["two_vs_zero"]["difference"])
    with pytest.raises(FileExistsError, match="outputs exist"):
        SemanticSynthesisWriter(tmp_path / "out", "sdm_seed1").check()
    with pytest.raises(ValueError, match="input file"):
        SemanticSynthesisWriter(tmp_path, "labels", inputs=[tmp_path / "labels_highres.png"]).check(["highres"])
    with pytest.raises(ValueError, match="lowres_labels"):
        SemanticSynthesisWriter(tmp_path / "other", "x")(image, labels, image)
    # the high-res stage alone: only its files
    SemanticSynthesisWriter(tmp_path / "high", "x")(image, labels)
    assert sorted(p.name for p in (tmp_path / "high").iterdir()) == ["x_highres.nii.gz", "x_highres.png",
                                                                    "x_stats.json"]
