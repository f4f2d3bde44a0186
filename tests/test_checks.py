"""medgen.checks: every error names the argument, the expected range and the value."""

from __future__ import annotations

import pytest

import torch

from medgen.checks import check_finite, check_folder, check_int, check_number, check_plane_mask, check_volume_shape


def test_argument_checks_name_the_argument():
    assert check_int(3, "steps") == 3
    assert check_int(None, "batch_size", allow_none=True) is None
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got"):
            check_int(bad, "steps")
    assert check_number(2, "snr", 0.0, open_low=True) == 2.0
    with pytest.raises(ValueError, match=r"snr must be in \(0.0, inf\], got 0.0"):
        check_number(0, "snr", 0.0, open_low=True)
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, 1.0\), got 1.0"):
        check_number(1.0, "eps", 0.0, 1.0, open_low=True, open_high=True)
    with pytest.raises(ValueError, match="zeta"):
        check_number(float("nan"), "zeta")
    with pytest.raises(TypeError, match="lam must be a number, got str"):
        check_number("1", "lam")


def test_check_volume_shape_reads_a_template_or_a_shape():
    assert check_volume_shape(torch.zeros(2, 1, 3, 4, 5), "inputs") == (2, 1, 3, 4, 5)
    assert check_volume_shape((3, 4, 5), "inputs", channels=1, allow_spatial=True) == (1, 1, 3, 4, 5)
    assert check_volume_shape(torch.Size([1, 2, 3, 4, 5]), "inputs") == (1, 2, 3, 4, 5)
    with pytest.raises(TypeError, match="inputs must be a template volume or a shape"):
        check_volume_shape((3, 4, 5), "inputs")  # three dims only with allow_spatial
    with pytest.raises(TypeError, match="positive ints"):
        check_volume_shape((1, 1, 0, 4, 5), "inputs")
    with pytest.raises(ValueError, match="C=1|1, D0"):
        check_volume_shape((1, 2, 3, 4, 5), "inputs", channels=1)


def test_check_plane_mask():
    mask = check_plane_mask(torch.ones(1, 1, 4, 6, dtype=torch.complex64), "low_frequency_mask")
    assert mask.shape == (4, 6) and mask.dtype == torch.float32
    with pytest.raises(ValueError, match=r"low_frequency_mask must be shaped \(H, W\)"):
        check_plane_mask(torch.ones(2, 4, 6), "low_frequency_mask")


def test_check_finite_counts_and_locates_bad_entries():
    check_finite(torch.zeros(2, 3), "x")
    x = torch.zeros(2, 3, dtype=torch.complex64)
    x[1, 2] = complex(0, float("inf"))
    x[0, 1] = float("nan")
    with pytest.raises(ValueError, match=r"kspace must hold finite values, got 1 NaN and 1 infinite of 6 entries "
                                         r"\(the first at index \(0, 1\)\)"):
        check_finite(x, "kspace")


def test_check_folder_refuses_a_file_or_a_folder_under_a_file(tmp_path):
    assert check_folder(tmp_path / "new" / "deeper", "output_dir") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"output_dir '.*file' must be a folder \(or one that can be created\), got "
                                         r"a file"):
        check_folder(tmp_path / "file", "output_dir")
    with pytest.raises(ValueError, match=r"checkpoint_dir '.*file/run' must be a folder .*but '.*file' is a file"):
        check_folder(tmp_path / "file" / "run", "checkpoint_dir")
