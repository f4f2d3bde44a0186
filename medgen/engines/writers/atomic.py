"""Atomic file writes: a temporary file in the target folder, then one :func:`os.replace`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_atomically"]


def write_atomically(
    path: str | os.PathLike,
    write: Callable[[Path], Any],
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a file through ``write(temporary_path)`` and rename it to ``path`` (an interrupted write leaves nothing).

    The temporary file ``.<name>.<random>.tmp<suffix>`` sits in the target folder (same file system, so
    :func:`os.replace` is atomic) and keeps the suffix (``numpy.savez`` appends ``.npz`` otherwise).

    Args:
        path: the file to write (its folder is created).
        write: writes the content to the path it is given.
        overwrite: replace an existing ``path``.
        inputs: paths that must never be written over, whatever ``overwrite`` says.

    Returns:
        the written path.

    Raises:
        ValueError: ``path`` is one of ``inputs``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    if any(Path(item).resolve() == target.resolve() for item in inputs):
        raise ValueError(f"refusing to write the output over the input file '{target}'; choose another path.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"'{target}' exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target

