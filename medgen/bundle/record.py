"""The identity of a run, kept beside its checkpoints, so a restart continues only the same run.

A run that is killed is continued by running the same command again: the sampling loop (or the trainer) resumes from
the checkpoints in ``checkpoint_dir``. A restart with another input or other settings must not continue them.
:class:`RunRecord` is what identifies a run: the config settings that change its result and the content (SHA-256)
of every input and weight file. :func:`check_run_record` writes it into ``checkpoint_dir`` at the first start and,
at a restart, refuses a different run, naming every difference::

    BundleInputError: checkpoint_dir 'out/.tpdm_zsr_seed0.checkpoints' holds an interrupted run with other
    settings: steps 200 (this run: 20); input_path 'lowres.nii.gz' changed (sha256 3f2a... -> 9c1b...). Run the
    same command as before to continue it, or choose another --checkpoint_dir (or remove that folder) to start over.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medgen.bundle.errors import BundleInputError
from medgen.engines.writers.atomic import write_atomically

__all__ = ["RunRecord", "check_run_record", "file_digest", "RECORD_NAME", "NOT_RESULT_KEYS"]

RECORD_NAME = "run.json"

NOT_RESULT_KEYS = frozenset(
    {"bundle_root", "output_dir", "checkpoint_dir", "checkpoint_every", "progress", "overwrite", "device",
     "max_memory_gb", "resume_from", "max_epochs", "log_every", "n_saved", "output_model", "output_ema_model",
     "imports", "initialize", "run", "finalize", "_meta_"}
)  # fmt: skip
"""Top-level config keys that do not change a run's result (where it runs and writes, how often it saves, how long
training continues): a restart may change them."""


def file_digest(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (tuples as lists, anything else as its ``repr``)."""
    return json.loads(json.dumps(value, default=repr))


@dataclass
class RunRecord:
    """What identifies a run: its result-changing settings and the digests of its files.

    Attributes:
        settings: ``{config key: raw value}`` (``$`` expressions unevaluated; files are compared by content).
        files: ``{config key: {"path": str, "sha256": str}}`` for every input and weight file given.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        config: Mapping[str, Any],
        files: Mapping[str, str | os.PathLike | None],
        ignore: frozenset[str] | set[str] = NOT_RESULT_KEYS,
    ) -> RunRecord:
        """The record of a run from its config (after overrides) and its files (``None`` entries are skipped)."""
        settings = {key: _plain(value) for key, value in config.items() if key not in ignore}
        digests = {key: {"path": str(path), "sha256": file_digest(path)}
                   for key, path in files.items() if path not in (None, "") and Path(path).is_file()}
        return cls(settings, digests)

    def to_json(self) -> str:
        return json.dumps({"settings": self.settings, "files": self.files}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        data = json.loads(text)
        return cls(dict(data.get("settings", {})), dict(data.get("files", {})))

    def differences(self, other: RunRecord) -> list[str]:
        """What ``other`` (this run) changes compared with ``self`` (the interrupted run), one phrase each."""
        found = []
        both = self.settings.keys() & other.settings.keys()
        for key in sorted(self.settings.keys() | other.settings.keys()):
            if key in both and self.settings[key] != other.settings[key]:
                found.append(f"{key} {_short(self.settings[key])} (this run: {_short(other.settings[key])})")
            elif key not in both:
                side = "this run" if key in other.settings else "the interrupted run"
                found.append(f"{key} is set only in {side}")
        for key in sorted(self.files.keys() | other.files.keys()):
            before, now = self.files.get(key), other.files.get(key)
            if before is None or now is None:
                found.append(f"{key} is given only in {'this run' if before is None else 'the interrupted run'}")
            elif before["sha256"] != now["sha256"]:
                found.append(f"{key} '{now['path']}' differs from the interrupted run's file '{before['path']}' "
                             f"(sha256 {before['sha256'][:12]}... -> {now['sha256'][:12]}...)")
        return found


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_run_record(checkpoint_dir: str | os.PathLike, record: RunRecord, has_state: bool) -> bool:
    """Refuse to continue another run's checkpoints; record this run's identity for a later restart.

    Args:
        checkpoint_dir: the run's checkpoint folder.
        record: this run's identity.
        has_state: ``checkpoint_dir`` holds checkpoints (a sampling state or training checkpoints) to continue.

    Returns:
        ``True`` when an interrupted run is continued (its checkpoints and a matching record were found).

    Raises:
        BundleInputError: ``checkpoint_dir`` is a file, holds another run's checkpoints (every difference is named),
            or holds checkpoints without a record (made by another tool).
    """
    folder = Path(checkpoint_dir)
    if folder.exists() and not folder.is_dir():
        raise BundleInputError(f"checkpoint_dir '{folder}' is a file, not a folder.")
    path = folder / RECORD_NAME
    advice = ("Run the same command as before to continue it, or choose another --checkpoint_dir (or remove that "
              "folder) to start over.")
    if has_state and path.is_file():
        try:
            saved = RunRecord.from_json(path.read_text())
        except (ValueError, OSError) as e:
            raise BundleInputError(
                f"checkpoint_dir '{folder}': its {RECORD_NAME} cannot be read ({e}). {advice}"
            ) from e
        differences = saved.differences(record)
        if differences:
            raise BundleInputError(
                f"checkpoint_dir '{folder}' holds an interrupted run with other settings: {'; '.join(differences)}. "
                f"{advice}"
            )
        return True
    if has_state:
        raise BundleInputError(f"checkpoint_dir '{folder}' holds checkpoints of an unknown run (no {RECORD_NAME}). "
                               f"{advice}")
    text = record.to_json()  # nothing to continue: this run's record replaces any earlier one
    write_atomically(path, lambda tmp: tmp.write_text(text), overwrite=True)
    return False
