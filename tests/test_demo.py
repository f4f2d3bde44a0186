from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medgen.demo import physics_round_trip


def test_physics_round_trip_writes_outputs_and_metrics(tmp_path):
    metrics = physics_round_trip(output_dir=tmp_path, size=32, seed=1)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # pseudo-inverse of 4-fold averaging and 36-view FBP are usable but imperfect baselines
    assert 12.0 < metrics["zaxis_pinv_psnr_db"] < 40.0
    assert 15.0 < metrics["ct_fbp_psnr_db"] < 45.0
    assert metrics["ct_views"] == 36
    for name in ("phantom", "zaxis_lowres", "zaxis_pinv", "ct_fbp"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    lowres = nib.load(tmp_path / "zaxis_lowres.nii.gz")
    assert lowres.shape == (32, 32, 8)
    np.testing.assert_allclose(np.diag(lowres.affine), [1.0, 1.0, 4.0, 1.0])


def test_physics_round_trip_never_overwrites(tmp_path):
    physics_round_trip(output_dir=tmp_path, size=16, seed=0)
    with pytest.raises(FileExistsError):
        physics_round_trip(output_dir=tmp_path, size=16, seed=0)


def test_physics_round_trip_rejects_small_size(tmp_path):
    with pytest.raises(ValueError, match="size"):
        physics_round_trip(output_dir=tmp_path, size=8)
