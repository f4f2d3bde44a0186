"""Tests for medgen.data.io (atomic NIfTI / PNG writers)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.data.io import save_nifti, save_orthogonal_slices_png


def test_nifti_round_trip_keeps_affine_and_values(tmp_path):
    volume = np.random.default_rng(0).random((6, 7, 5)).astype(np.float32)
    affine = np.array([[0.0, -1.5, 0, 10], [2, 0, 0, -5], [0, 0, 3, 7], [0, 0, 0, 1]])
    path = save_nifti(volume, tmp_path / "v.nii.gz", affine=affine)
    image = nib.load(str(path))
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume)
    assert [p.name for p in tmp_path.iterdir()] == ["v.nii.gz"]  # no temporary left behind


def test_nifti_metatensor_affine_channels_and_labels(tmp_path):
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    mt = MetaTensor(torch.rand(1, 4, 4, 3), affine=affine)
    image = nib.load(str(save_nifti(mt, tmp_path / "m.nii")))
    assert image.shape == (4, 4, 3)
    np.testing.assert_allclose(image.affine, affine.numpy())
    multi = nib.load(str(save_nifti(torch.rand(2, 4, 4, 3), tmp_path / "c.nii.gz")))
    assert multi.shape == (4, 4, 3, 2)
    labels = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    loaded = nib.load(str(save_nifti(labels, tmp_path / "l.nii.gz")))
    assert loaded.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), labels)


def test_nifti_never_overwrites_silently(tmp_path):
    target = tmp_path / "v.nii.gz"
    save_nifti(np.zeros((2, 2, 2)), target)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_nifti(np.ones((2, 2, 2)), target)
    assert np.asarray(nib.load(str(target)).dataobj).max() == 0
    save_nifti(np.ones((2, 2, 2)), target, overwrite=True)
    assert np.asarray(nib.load(str(target)).dataobj).max() == 1
    with pytest.raises(ValueError, match="input file"):
        save_nifti(np.ones((2, 2, 2)), target, overwrite=True, inputs=[str(target)])
    with pytest.raises(ValueError, match="must end with"):
        save_nifti(np.ones((2, 2, 2)), tmp_path / "v.png")
    with pytest.raises(ValueError, match="4x4"):
        save_nifti(np.ones((2, 2, 2)), tmp_path / "w.nii", affine=np.eye(3))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        save_nifti([1, 2], tmp_path / "x.nii")


def test_png_written(tmp_path):
    volume = np.random.default_rng(0).random((1, 20, 24, 16)).astype(np.float32)
    path = save_orthogonal_slices_png(volume, tmp_path / "s.png", title="phantom")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(FileExistsError):
        save_orthogonal_slices_png(volume, path)
    with pytest.raises(ValueError, match="input file"):
        save_orthogonal_slices_png(volume, path, overwrite=True, inputs=[path])
    save_orthogonal_slices_png(torch.from_numpy(volume[0]), path, overwrite=True, vmin=0.0, vmax=1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
