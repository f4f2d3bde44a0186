"""All-or-nothing outputs: files are written into a hidden staging folder and moved into place together.

A run writes several files (NIfTI, preview, JSON). Written one by one, a kill or a full disk halfway leaves some of
them, and a leftover output blocks the rerun. :class:`OutputStaging` writes every file under a temporary name in a
hidden staging folder (``.medgen-staging-<prefix>-<pid>-<random>``) inside ``staging_root`` (e.g. the run's
checkpoint folder, so the output folder is not touched before the commit) when it is on the output folder's file
system, inside the output folder otherwise, and :meth:`~OutputStaging.commit` moves them into place: each by a hard
link that refuses to replace an existing file (an ``os.replace`` where hard links are not supported), after a journal
of the moves is written. If the commit fails or the process dies halfway, the moves are undone: at once for a
failure, and by :func:`recover_staging` (called by every writer's check before a run) for a process that was killed.
A full disk is reported as ``OSError(ENOSPC, "No space left on device ...")`` naming the file, with the folder left
as it was.

Example::

    staging = OutputStaging("out", "tpdm_seed0")
    with staging:                                           # commit on success, abort on any exception
        nib.save(image, staging.path_for(Path("out/tpdm_seed0.nii.gz")))
        staging.path_for(Path("out/tpdm_seed0.json")).write_text("{}")
    staging.committed                                       # [out/tpdm_seed0.nii.gz, out/tpdm_seed0.json]
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["OutputStaging", "recover_staging", "is_disk_full", "STAGING_PREFIX"]

STAGING_PREFIX = ".medgen-staging-"
_OWNER = "owner.json"
_JOURNAL = "journal.json"
_PREVIOUS = "previous"


def is_disk_full(error: BaseException | None) -> bool:
    """``error`` or an exception it was raised from or during is ``ENOSPC``/``EDQUOT`` (some writers, e.g. PNG
    encoders, raise an unrelated error while cleaning up after the disk filled)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) terminates processes on Windows: never judge them dead there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _undo(folder: Path) -> None:
    """Undo the moves a journal in ``folder`` records (a commit that did not finish), then remove ``folder``."""
    journal = folder / _JOURNAL
    if journal.is_file():
        try:
            moves = json.loads(journal.read_text())["moves"]
        except (ValueError, KeyError, OSError):
            moves = []
        for staged_name, final in moves:
            staged, target = folder / staged_name, Path(final)
            ours = target.exists() and (not staged.exists() or os.path.samefile(staged, target))
            if ours:
                target.unlink()
            previous = folder / _PREVIOUS / staged_name
            if previous.exists():
                os.replace(previous, target)
    shutil.rmtree(folder, ignore_errors=True)


def recover_staging(output_dir: str | os.PathLike) -> list[Path]:
    """Undo and remove what killed runs left in ``output_dir`` (or a staging root): staging folders of processes that
    no longer run.

    A staging folder of a process that is still running (this host), or of another host, is left alone.

    Returns:
        the staging folders removed.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    removed = []
    host = socket.gethostname()
    for staging in sorted(folder.glob(STAGING_PREFIX + "*")):
        if not staging.is_dir():
            continue
        try:
            owner = json.loads((staging / _OWNER).read_text())
        except (OSError, ValueError):
            owner = None  # killed before its owner was recorded: nothing was written into it yet
        if owner is not None and (owner.get("host") != host or _alive(int(owner.get("pid", -1)))):
            continue
        _undo(staging)
        removed.append(staging)
    return removed


class OutputStaging:
    """Write a set of output files into ``output_dir`` all together or not at all.

    Args:
        output_dir: the folder the files are committed into (created).
        prefix: names the staging folder (readability only).
        overwrite: replace existing files at commit (they are restored if the commit fails); default: refuse.
        staging_root: where the staging folder goes when it is on ``output_dir``'s file system (default and
            otherwise: ``output_dir``).

    Attributes:
        committed: the files moved into place by the last :meth:`commit`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "run",
        overwrite: bool = False,
        staging_root: str | os.PathLike | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.overwrite = bool(overwrite)
        self.staging_root = None if staging_root in (None, "") else Path(staging_root)
        self.folder: Path | None = None
        self._files: dict[Path, Path] = {}
        self.committed: list[Path] = []
        self.current: Path | None = None

    def _root(self) -> Path:
        """``staging_root`` if it is on the output folder's file system (a commit is then a rename), else the output
        folder."""
        if self.staging_root is None:
            return self.output_dir
        self.staging_root.mkdir(parents=True, exist_ok=True)
        same = os.stat(self.staging_root).st_dev == os.stat(self.output_dir).st_dev
        return self.staging_root if same else self.output_dir

    def _open(self) -> Path:
        if self.folder is None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            name = f"{STAGING_PREFIX}{self.prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            folder = self._root() / name
            folder.mkdir()
            (folder / _OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
            self.folder = folder
        return self.folder

    def path_for(self, target: str | os.PathLike) -> Path:
        """Where to write the file that will be committed as ``target`` (a file of ``output_dir``).

        Raises:
            ValueError: ``target`` is not in ``output_dir`` or is staged twice.
        """
        target = Path(target)
        if target.parent.resolve() != self.output_dir.resolve():
            raise ValueError(f"'{target}' is not a file of the output folder '{self.output_dir}'.")
        if target in self._files:
            raise ValueError(f"'{target}' is already staged.")
        staged = self._open() / f"{len(self._files):03d}-{target.name}"
        self._files[target] = staged
        self.current = target
        return staged

    def commit(self) -> list[Path]:
        """Move every staged file into place; on any failure, undo the moves and raise.

        Returns:
            the committed files, in the order they were staged.

        Raises:
            FileExistsError: a target exists (it appeared after the check) and ``overwrite`` is False.
            FileNotFoundError: a staged file was never written.
        """
        if self.folder is None:
            self.committed = []
            return []
        folder = self.folder
        for target, staged in self._files.items():
            if not staged.is_file():
                raise FileNotFoundError(f"the output '{target}' was staged but never written.")
        moves = [[staged.name, str(target)] for target, staged in self._files.items()]
        (folder / _JOURNAL).write_text(json.dumps({"moves": moves}))
        try:
            for target, staged in self._files.items():
                self.current = target
                if target.exists():
                    if not self.overwrite:
                        raise FileExistsError(f"'{target}' appeared while the run was writing; nothing was replaced.")
                    (folder / _PREVIOUS).mkdir(exist_ok=True)
                    os.replace(target, folder / _PREVIOUS / staged.name)
                self._move(staged, target)
        except BaseException:
            _undo(folder)
            self._reset()
            raise
        committed = list(self._files)
        shutil.rmtree(folder, ignore_errors=True)
        self._reset()
        self.committed = committed
        return committed

    @staticmethod
    def _move(staged: Path, target: Path) -> None:
        try:
            os.link(staged, target)  # fails if target exists: never replaces a file another process wrote
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system
            if target.exists():
                raise FileExistsError(f"'{target}' exists; nothing was replaced.") from None
            os.replace(staged, target)
            return
        staged.unlink()

    def abort(self) -> None:
        """Remove the staging folder and everything in it (nothing was committed)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._reset()

    def _reset(self) -> None:
        self.folder = None
        self._files = {}

    def __enter__(self) -> OutputStaging:
        self.committed = []
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> Any:
        if error is None:
            try:
                self.commit()
            except BaseException as e:  # noqa: BLE001
                self._raise_disk_full(e)
                raise
            return False
        self.abort()
        self._raise_disk_full(error)
        return False

    def _raise_disk_full(self, error: BaseException) -> None:
        if isinstance(error, Exception) and is_disk_full(error):
            where = self.current if self.current is not None else self.output_dir
            raise OSError(
                errno.ENOSPC,
                f"No space left on device while writing '{where}'; nothing was written to '{self.output_dir}' "
                "(free some space and run the same command again)",
                str(where),
            ) from error
