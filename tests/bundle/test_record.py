"""medgen.bundle.record: a restart continues only the same run; every difference (settings, file content) is named."""

from __future__ import annotations

import pytest

from medgen.bundle.errors import BundleInputError
from medgen.bundle.record import RECORD_NAME, RunRecord, check_run_record, file_digest


def test_record_ignores_where_a_run_writes_and_names_differences(tmp_path):
    image = tmp_path / "image.nii.gz"
    image.write_bytes(b"one")
    config = {"steps": 4, "seed": 0, "output_dir": "/a", "progress": True, "network_def": {"nf": 16}}
    record = RunRecord.create(config, {"input_path": image, "reference_path": None})
    assert set(record.settings) == {"steps", "seed", "network_def"}
    assert record.files == {"input_path": {"path": str(image), "sha256": file_digest(image)}}
    assert RunRecord.from_json(record.to_json()) == record
    same = RunRecord.create({**config, "output_dir": "/b", "progress": False}, {"input_path": image})
    assert record.differences(same) == []
    image.write_bytes(b"two")
    other = RunRecord.create({**config, "steps": 6, "network_def": {"nf": 32}, "K": 3}, {"input_path": image})
    found = record.differences(other)
    assert "steps 4 (this run: 6)" in found and 'network_def {"nf": 16} (this run: {"nf": 32})' in found
    assert "K is set only in this run" in found
    assert any(f.startswith(f"input_path '{image}' differs from the interrupted run's file") for f in found)


def test_check_run_record_continues_the_same_run_and_refuses_another(tmp_path):
    folder = tmp_path / "ckpt"
    first = RunRecord({"steps": 4}, {})
    assert check_run_record(folder, first, has_state=False) is False and (folder / RECORD_NAME).is_file()
    assert check_run_record(folder, RunRecord({"steps": 4}, {}), has_state=True) is True
    with pytest.raises(BundleInputError, match=r"holds an interrupted run with other settings: steps 4 \(this run: 6\)"
                                               r"\. Run the same command as before to continue it"):
        check_run_record(folder, RunRecord({"steps": 6}, {}), has_state=True)
    # nothing to continue: a new run's record replaces the old one
    assert check_run_record(folder, RunRecord({"steps": 6}, {}), has_state=False) is False
    assert RunRecord.from_json((folder / RECORD_NAME).read_text()).settings == {"steps": 6}
    (folder / RECORD_NAME).unlink()
    with pytest.raises(BundleInputError, match="holds checkpoints of an unknown run"):
        check_run_record(folder, first, has_state=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleInputError, match="is a file, not a folder"):
        check_run_record(tmp_path / "file", first, has_state=False)
