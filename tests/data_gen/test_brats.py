"""Tests for medgen.data.brats: BraTS file naming, case discovery and writing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medgen.data.brats import brats_file_name, brats_file_of, find_brats_files, is_brats_case, save_brats_case


def test_file_names_of_both_conventions():
    assert brats_file_name("BraTS2021_00000", "t1ce") == "BraTS2021_00000_t1ce.nii.gz"
    assert brats_file_name("BraTS-GLI-00000-000", "flair", "2023") == "BraTS-GLI-00000-000-t2f.nii.gz"
    with pytest.raises(ValueError, match="convention"):
        brats_file_name("x", "t1", "2019")
    with pytest.raises(ValueError, match="name"):
        brats_file_name("x", "pd")


def test_find_and_save_round_trip(tmp_path):
    volumes = {name: np.full((4, 5, 6), i, np.int16) for i, name in enumerate(("flair", "t1", "seg"))}
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    written = save_brats_case(tmp_path / "c", "BraTS-GLI-00002-001", volumes, affine, convention="2023")
    files = find_brats_files(tmp_path / "c")
    assert list(files) == ["t1", "flair", "seg"] and files == written
    assert nib.load(files["seg"]).get_data_dtype() == np.uint8
    np.testing.assert_allclose(nib.load(files["t1"]).affine, affine)
    assert is_brats_case(tmp_path / "c")
    with pytest.raises(FileExistsError):
        save_brats_case(tmp_path / "c", "BraTS-GLI-00002-001", volumes, affine, convention="2023")
    with pytest.raises(ValueError, match="one shape"):
        save_brats_case(tmp_path / "d", "x", {"t1": np.zeros((2, 2, 2)), "t2": np.zeros((2, 2, 3))})


def test_a_single_subject_file_or_several_subjects_are_not_a_case(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(tmp_path / "subject01_t1.nii.gz"))
    assert not is_brats_case(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(tmp_path / "subject02_t2.nii.gz"))
    assert not is_brats_case(tmp_path)
    with pytest.raises(ValueError, match="several cases"):
        find_brats_files(tmp_path)
    with pytest.raises(NotADirectoryError):
        find_brats_files(tmp_path / "subject01_t1.nii.gz")


def test_brats_file_of_gives_the_contrast_or_nothing(tmp_path):
    volumes = {name: np.zeros((4, 4, 4), np.int16) for name in ("t1", "t1ce", "flair")}
    written = save_brats_case(tmp_path / "case", "BraTS-GLI-00001-000", volumes, convention="2023")
    assert brats_file_of(tmp_path / "case", "t1ce") == str(written["t1ce"])
    assert brats_file_of(tmp_path / "case", "t2") == ""  # the contrast to synthesise is missing: no reference
    assert brats_file_of(tmp_path / "nothing", "t1") == ""  # not a folder: the reader of the input reports it
    assert brats_file_of(written["t1"], "t1") == ""
