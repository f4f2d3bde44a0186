"""medgen.bundle.resources: memory estimate against a limit (the message gives the estimate, its terms and the key),
the output folder probed (file instead of folder, read-only, full), byte formatting."""

from __future__ import annotations

import os
import stat
from collections import namedtuple

import pytest

from medgen.bundle.errors import BundleInputError
from medgen.bundle.resources import available_memory, check_memory, check_output_dir, format_bytes, largest_slice


def test_format_bytes_and_largest_slice():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KB" and format_bytes(3 * 1024**3) == "3.0 GB"
    assert largest_slice((1024, 1024, 128)) == 1024 * 1024 and largest_slice((8, 64, 32)) == 64 * 32


def test_available_memory_is_positive_on_the_cpu():
    available = available_memory("cpu")
    assert available is None or available > 0


def test_check_memory_refuses_with_the_estimate_its_terms_and_the_key():
    estimate = {"volume states": 4 * 1024**3, "network activations": 60 * 1024**3}
    with pytest.raises(BundleInputError) as error:
        check_memory(estimate, "cpu", max_memory_gb=16, advice="lower batch_size")
    message = str(error.value)
    assert "an estimated 64.0 GB" in message and "volume states 4.0 GB + network activations 60.0 GB" in message
    assert "the limit max_memory_gb=16" in message and "lower batch_size, or pass --max_memory_gb <GB>" in message
    report = check_memory(estimate, "cpu", max_memory_gb=100)
    assert report["estimate_bytes"] == 64 * 1024**3 and report["limit_bytes"] == 100 * 1024**3
    with pytest.raises(BundleInputError, match="max_memory_gb must be a number of GB > 0"):
        check_memory(estimate, "cpu", max_memory_gb=-1)


def test_check_memory_against_what_the_device_has(monkeypatch):
    monkeypatch.setattr("medgen.bundle.resources.available_memory", lambda device: 2 * 1024**3)
    with pytest.raises(BundleInputError, match=r"more than the 2.0 GB available on cpu"):
        check_memory({"state": 3 * 1024**3}, "cpu")
    assert check_memory({"state": 1024**3}, "cpu")["limit_source"] == "the 2.0 GB available on cpu"


def test_check_output_dir_probes_the_folder(tmp_path, monkeypatch):
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # probed in the nearest existing parent, nothing created
    file = tmp_path / "a_file"
    file.write_text("x")
    with pytest.raises(BundleInputError, match=r"output_dir '.*a_file' is a file, not a folder"):
        check_output_dir(file)
    with pytest.raises(BundleInputError, match="cannot be created: '.*a_file' is a file"):
        check_output_dir(file / "sub")
    with pytest.raises(BundleInputError, match="output_dir is not set"):
        check_output_dir("")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        with pytest.raises(BundleInputError, match="is not writable"):
            check_output_dir(locked)
        locked.chmod(stat.S_IRWXU)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("medgen.bundle.resources.shutil.disk_usage", lambda path: usage(10**9, 10**9 - 5000, 5000))
    with pytest.raises(BundleInputError, match=r"has 4.9 KB free; the outputs need about 1.0 MB"):
        check_output_dir(tmp_path, needed_bytes=1024**2)


def test_check_output_dir_reports_an_unwritable_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("medgen.bundle.resources.tempfile.NamedTemporaryFile", refuse)
    with pytest.raises(BundleInputError, match=r"output_dir '.*' is not writable \(Permission denied\)"):
        check_output_dir(tmp_path)
