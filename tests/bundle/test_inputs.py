"""medgen.bundle.inputs: files named in every error (missing, empty, truncated, not an archive), values (NaN/Inf
counted and located, complex refused where real is needed, labels), affines (NaN, singular)."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage

from medgen.bundle.errors import BundleInputError
from medgen.bundle.inputs import check_affine, check_not_all_zero, check_values, read_file, read_npz

READER = LoadImage(image_only=True, ensure_channel_first=True, dtype=None)


def test_read_file_names_the_key_and_the_file(tmp_path):
    with pytest.raises(BundleInputError, match="input_path is not set; give the file with --input_path"):
        read_file("input_path", "", READER)
    with pytest.raises(BundleInputError, match=r"input_path '.*missing.nii.gz' does not exist"):
        read_file("input_path", tmp_path / "missing.nii.gz", READER)
    with pytest.raises(BundleInputError, match="is a folder"):
        read_file("input_path", tmp_path, READER)
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(BundleInputError, match=r"empty.nii.gz' is empty \(0 bytes\)"):
        read_file("input_path", empty, READER)
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), good)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(BundleInputError, match=r"reference_path '.*truncated.nii.gz' could not be read as an image "
                                               r"\(60 bytes; a truncated"):
        read_file("reference_path", truncated, READER)
    assert read_file("input_path", good, READER).shape == (1, 4, 4, 4)


def test_read_npz_refuses_text_pickles_and_missing_arrays(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello world, not an archive")
    with pytest.raises(BundleInputError, match=r"is not a NumPy .npz archive \(it starts with b'hello world"):
        read_npz("input_path", text, ["kspace"])
    try:
        read_npz("input_path", text)
    except BundleInputError as e:
        assert "allow_pickle" not in str(e)
    objects = tmp_path / "objects.npz"
    np.savez(objects, kspace=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BundleInputError, match="object arrays need pickles"):
        read_npz("input_path", objects)
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, kspace=np.ones((2, 2), np.complex64))
    with pytest.raises(BundleInputError, match=r"lacks the array\(s\) \['sensitivity_maps'\]; it holds \['kspace'\]"):
        read_npz("input_path", arrays, ["kspace", "sensitivity_maps"])
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(arrays.read_bytes()[:-30])
    with pytest.raises(BundleInputError, match="damaged.npz"):
        read_npz("input_path", damaged, ["kspace"])
    assert read_npz("input_path", arrays)["kspace"].dtype == np.complex64


def test_check_values_counts_and_locates_non_finite_values():
    volume = torch.zeros(1, 4, 4, 4)
    volume[0, 1, 2, 3] = float("nan")
    volume[0, 2, 2, 2] = float("inf")
    with pytest.raises(BundleInputError, match=r"input_path 'a.nii' holds 1 NaN and 1 infinite value\(s\) among its "
                                               r"64 voxels \(first at index \(0, 1, 2, 3\)\)"):
        check_values(volume, "input_path", "a.nii", what="voxels")
    kspace = torch.ones(2, 3, dtype=torch.complex64)
    kspace[1, 1] = complex(float("nan"), 0.0)
    with pytest.raises(BundleInputError, match=r"1 NaN value\(s\) among its 6 k-space samples"):
        check_values(kspace, "input_path", None, allow_complex=True, what="k-space samples")
    assert check_values(torch.ones(2, 2, dtype=torch.complex64), "k", allow_complex=True).dtype == torch.complex64


def test_check_values_refuses_complex_where_real_is_needed_and_checks_labels():
    with pytest.raises(BundleInputError, match=r"holds complex data \(torch.complex64\).*drop the imaginary part"):
        check_values(torch.ones(2, 2, dtype=torch.complex64), "input_path", "c.nii.gz")
    with pytest.raises(BundleInputError, match="holds torch.bool data"):
        check_values(torch.ones(2, dtype=torch.bool), "input_path")
    labels = torch.tensor([[0.0, 1.0], [2.0, 8.0]])
    assert check_values(labels, "input_path", integer=True, num_classes=9) is labels
    with pytest.raises(BundleInputError, match=r"holds label 12; the network knows 9 classes \(0 .. 8\)"):
        check_values(torch.tensor([0.0, 12.0]), "input_path", integer=True, num_classes=9)
    with pytest.raises(BundleInputError, match=r"non-negative integer labels, got 1.5 at index \(1,\)"):
        check_values(torch.tensor([0.0, 1.5]), "input_path", integer=True)
    with pytest.raises(BundleInputError, match=r"non-negative integer labels, got -1.0"):
        check_values(torch.tensor([-1.0, 1.0]), "input_path", integer=True)
    with pytest.raises(BundleInputError, match="holds no values"):
        check_values(torch.zeros(0, 3), "input_path")


def test_check_affine_and_all_zero_maps():
    assert check_affine(np.diag([2.0, 2.0, 2.0, 1.0]), "input_path").dtype == torch.float64
    bad = np.eye(4)
    bad[0, 0] = np.nan
    with pytest.raises(BundleInputError, match=r"input_path 'x.nii': the affine .* holds NaN"):
        check_affine(bad, "input_path", "x.nii")
    with pytest.raises(BundleInputError, match="is singular"):
        check_affine(np.diag([1.0, 0.0, 1.0, 1.0]), "input_path", "x.nii")
    with pytest.raises(BundleInputError, match="must be a 4x4 matrix"):
        check_affine(np.eye(3), "input_path")
    with pytest.raises(BundleInputError, match="the coil sensitivities are all zero"):
        check_not_all_zero(torch.zeros(2, 3, dtype=torch.complex64), "input_path['sensitivity_maps']", "s.npz",
                           "coil sensitivities")
    check_not_all_zero(torch.eye(2), "x")


def test_read_file_takes_a_folder_only_when_allowed(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    with pytest.raises(BundleInputError, match=r"input_path '.*series' is a folder, not a file\."):
        read_file("input_path", folder, lambda path: path)
    with pytest.raises(BundleInputError, match=r"input_path '.*series' is an empty folder"):
        read_file("input_path", folder, lambda path: path, folder=True)
    (folder / "IM0001.dcm").write_bytes(b"not DICOM")
    assert read_file("input_path", folder, lambda path: path, folder=True) == str(folder)

    def unreadable(path):
        raise FileNotFoundError("the series has no DICOM slice")

    with pytest.raises(BundleInputError, match=r"could not be read as an image \(a folder\): FileNotFoundError: the "
                                               r"series has no DICOM slice"):
        read_file("input_path", folder, unreadable, folder=True)
