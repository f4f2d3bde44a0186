"""medgen.engines.writers.staging: files committed together or not at all; a failed or killed commit undone; a full
disk reported as "No space left on device" with the folder left as it was; killed runs' leftovers removed."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest

from medgen.engines.writers.staging import STAGING_PREFIX, OutputStaging, is_disk_full, recover_staging


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_files_appear_together_at_the_end(tmp_path):
    with OutputStaging(tmp_path, "run") as staging:
        staging.path_for(tmp_path / "a.json").write_text("a")
        assert listing(tmp_path) == [staging.folder.name]  # only the hidden staging folder so far
        staging.path_for(tmp_path / "b.json").write_text("b")
    assert listing(tmp_path) == ["a.json", "b.json"] and staging.committed == [tmp_path / "a.json", tmp_path / "b.json"]
    with pytest.raises(ValueError, match="not a file of the output folder"):
        OutputStaging(tmp_path).path_for(tmp_path / "sub" / "c.json")


def test_an_error_while_writing_leaves_the_folder_as_it_was(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with OutputStaging(tmp_path, "run") as staging:
            staging.path_for(tmp_path / "a.json").write_text("a")
            raise RuntimeError("boom")
    assert listing(tmp_path) == ["old.txt"]


def test_a_full_disk_is_reported_and_leaves_the_folder_as_it_was(tmp_path):
    (tmp_path / "old.txt").write_text("old")

    def broken_png_writer(path: Path) -> None:  # what PIL does: the write fails, then cleanup raises another error
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AttributeError("'_idat' object has no attribute 'fileno'")

    with pytest.raises(OSError) as error:
        with OutputStaging(tmp_path, "run") as staging:
            staging.path_for(tmp_path / "a.nii.gz").write_text("volume")
            broken_png_writer(staging.path_for(tmp_path / "a.png"))
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "a.png")
    assert "No space left on device while writing" in str(error.value) and "nothing was written" in str(error.value)
    assert listing(tmp_path) == ["old.txt"]
    assert is_disk_full(error.value.__cause__) and not is_disk_full(RuntimeError("x"))


def test_a_commit_that_meets_an_existing_file_is_undone(tmp_path):
    staging = OutputStaging(tmp_path, "run")
    staging.path_for(tmp_path / "a.json").write_text("new a")
    staging.path_for(tmp_path / "b.json").write_text("new b")
    (tmp_path / "b.json").write_text("another run's b")  # appeared after the check
    with pytest.raises(FileExistsError, match="appeared while the run was writing"):
        staging.commit()
    assert listing(tmp_path) == ["b.json"] and (tmp_path / "b.json").read_text() == "another run's b"


def test_overwrite_restores_the_previous_files_when_the_commit_fails(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("old a")
    (tmp_path / "b.json").write_text("old b")
    staging = OutputStaging(tmp_path, "run", overwrite=True)
    staging.path_for(tmp_path / "a.json").write_text("new a")
    staging.path_for(tmp_path / "b.json").write_text("new b")
    moves = []
    original = OutputStaging._move

    def move_then_fail(staged: Path, target: Path) -> None:
        if moves:
            raise OSError(errno.EIO, "I/O error")
        moves.append(target)
        original(staged, target)

    monkeypatch.setattr(OutputStaging, "_move", staticmethod(move_then_fail))
    with pytest.raises(OSError, match="I/O error"):
        staging.commit()
    assert {n: (tmp_path / n).read_text() for n in listing(tmp_path)} == {"a.json": "old a", "b.json": "old b"}


def fake_killed_run(folder: Path, pid: int, moved: int) -> Path:
    """What a process killed in the middle of its commit leaves: a staging folder with a journal, some files moved."""
    staging = folder / f"{STAGING_PREFIX}run-{pid}-abcd1234"
    staging.mkdir()
    (staging / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    moves = []
    for k, name in enumerate(("x.nii.gz", "x.png", "x.json")):
        staged = staging / f"{k:03d}-{name}"
        staged.write_text(name)
        moves.append([staged.name, str(folder / name)])
        if k < moved:
            os.link(staged, folder / name)
            if k < moved - 1:
                staged.unlink()  # the last move was killed between link and unlink
    (staging / "journal.json").write_text(json.dumps({"moves": moves}))
    return staging


def test_recover_staging_undoes_a_killed_commit_and_leaves_live_runs_alone(tmp_path):
    (tmp_path / "keep.txt").write_text("user file")
    dead = 2**22 + 12345  # above the usual pid_max: no such process
    fake_killed_run(tmp_path, dead, moved=2)
    live = tmp_path / f"{STAGING_PREFIX}run-{os.getpid()}-live0000"
    live.mkdir()
    (live / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    orphan = tmp_path / f"{STAGING_PREFIX}run-1-nomarker"  # killed before it recorded its owner
    orphan.mkdir()
    removed = recover_staging(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f"{STAGING_PREFIX}run-{dead}-abcd1234", orphan.name])
    assert listing(tmp_path) == sorted(["keep.txt", live.name])
    assert recover_staging(tmp_path / "missing") == []
