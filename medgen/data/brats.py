"""BraTS-style case folders: one NIfTI per contrast, found by name, and written the same way.

A case folder holds one file per sequence, named ``<case>_<contrast>.nii[.gz]`` (BraTS 2017-2021:
``BraTS2021_00000_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``) or ``<case>-<contrast>.nii[.gz]`` (BraTS
2023: ``BraTS-GLI-00000-000-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f``, ``-seg``). Both spellings map to medgen's
canonical names :data:`~medgen.data.multicontrast.BRATS_CONTRASTS` (``t1``, ``t1ce``, ``t2``, ``flair``) and ``seg``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medgen.data.io import save_nifti
from medgen.data.multicontrast import BRATS_CONTRASTS

__all__ = [
    "BRATS_NAMES",
    "BRATS_SEGMENTATION",
    "brats_file_name",
    "brats_file_of",
    "find_brats_files",
    "is_brats_case",
    "save_brats_case",
]

BRATS_SEGMENTATION = "seg"
"""Canonical name of the segmentation file of a case."""

BRATS_NAMES: dict[str, dict[str, str]] = {
    "2021": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "2023": {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}
"""File-name suffix of each canonical contrast in the BraTS 2017-2021 and 2023 conventions."""

_ALIASES: dict[str, str] = {suffix: name for names in BRATS_NAMES.values() for name, suffix in names.items()}
_PATTERN = re.compile(r"^(?P<case>.+?)[_-](?P<contrast>[A-Za-z0-9]+)\.nii(\.gz)?$")

PathLike = str | os.PathLike


def _parse(path: Path) -> tuple[str, str] | None:
    """``(case id, canonical name)`` of a BraTS-named file, or ``None``."""
    match = _PATTERN.match(path.name)
    if match is None or match.group("contrast").lower() not in _ALIASES:
        return None
    return match.group("case"), _ALIASES[match.group("contrast").lower()]


def _named_files(folder: Path) -> dict[str, dict[str, list[Path]]]:
    """``{case id: {canonical name: [paths]}}`` of the BraTS-named files directly in ``folder``."""
    cases: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        parsed = _parse(path) if path.is_file() else None
        if parsed is not None:
            cases.setdefault(parsed[0], {}).setdefault(parsed[1], []).append(path)
    return cases


def find_brats_files(folder: PathLike) -> dict[str, Path]:
    """The contrast files of a BraTS-style case folder, by canonical name.

    Args:
        folder: the case folder.

    Returns:
        ``{name: path}`` for the names of ``BRATS_CONTRASTS + ("seg",)`` present, in that order (empty if none).

    Raises:
        NotADirectoryError: ``folder`` is not a directory.
        ValueError: the files belong to several cases, or two files name the same contrast (e.g. ``_t1.nii.gz``
            and ``-t1n.nii.gz``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"a BraTS case must be a folder, got {str(folder)!r}.")
    cases = _named_files(folder)
    if len(cases) > 1:
        raise ValueError(
            f"folder {str(folder)!r} holds files of several cases {sorted(cases)}; a case folder holds one case "
            "(put each case in its own folder)."
        )
    found = next(iter(cases.values()), {})
    clashes = {name: [p.name for p in paths] for name, paths in found.items() if len(paths) > 1}
    if clashes:
        raise ValueError(f"case folder {str(folder)!r} has several files for one contrast: {clashes}.")
    order = (*BRATS_CONTRASTS, BRATS_SEGMENTATION)
    return {name: found[name][0] for name in order if name in found}


def is_brats_case(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding one case's BraTS-named files, at least two of them contrasts.

    A folder with a single ``<subject>_t1.nii.gz``, or with files of several subjects, is not a case folder (its
    files are separate scans).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    cases = _named_files(path)
    return len(cases) == 1 and sum(name in BRATS_CONTRASTS for name in next(iter(cases.values()))) >= 2


def brats_file_of(folder: PathLike, name: str) -> str:
    """The path of contrast ``name`` in a case folder, or ``""`` when ``folder`` is not a case folder or lacks it.

    For an optional input that defaults to a file of the case (e.g. the true target contrast a synthesis is scored
    against): a missing file means "not given", not an error; the case folder itself is checked where it is read.
    """
    try:
        return str(find_brats_files(folder).get(name, "")) if is_brats_case(folder) else ""
    except (OSError, ValueError):  # several cases or clashing files: the reader of the case reports it
        return ""


def brats_file_name(case: str, name: str, convention: str = "2021") -> str:
    """``<case>_<suffix>.nii.gz`` (2021) or ``<case>-<suffix>.nii.gz`` (2023) for a canonical ``name``.

    Raises:
        ValueError: unknown ``convention`` or ``name``.
    """
    if convention not in BRATS_NAMES:
        raise ValueError(f"convention must be one of {tuple(BRATS_NAMES)}, got {convention!r}.")
    if name not in BRATS_NAMES[convention]:
        raise ValueError(f"name must be one of {tuple(BRATS_NAMES[convention])}, got {name!r}.")
    separator = "_" if convention == "2021" else "-"
    return f"{case}{separator}{BRATS_NAMES[convention][name]}.nii.gz"


def save_brats_case(
    folder: PathLike,
    case: str,
    volumes: Mapping[str, Any],
    affine: Any = None,
    convention: str = "2021",
    dtype: Any = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a BraTS-style case folder (each file atomically, see :func:`~medgen.data.io.save_nifti`).

    Args:
        folder: the case folder (created if missing).
        case: case identifier, the file-name prefix (e.g. ``"BraTS2021_00000"``).
        volumes: ``{name: (D, H, W) array}`` with names from ``BRATS_CONTRASTS`` and ``"seg"``.
        affine: 4x4 voxel-to-world matrix shared by all files (default identity).
        convention: ``"2021"`` (``_t1``, ``_t1ce``, ``_t2``, ``_flair``) or ``"2023"`` (``-t1n``, ``-t1c``, ``-t2w``,
            ``-t2f``).
        dtype: stored dtype of the images (default: the arrays'); the segmentation is stored as uint8.
        overwrite: replace existing files.

    Returns:
        ``{name: written path}``.

    Raises:
        ValueError: an unknown name, an empty ``volumes`` or volumes of different shapes.
    """
    if not volumes:
        raise ValueError("volumes must hold at least one contrast, got none.")
    shapes = {name: tuple(np.shape(volume)) for name, volume in volumes.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"all volumes of a case must have one shape, got {shapes}.")
    written = {}
    for name, volume in volumes.items():
        path = Path(folder) / brats_file_name(case, name, convention)
        stored = np.uint8 if name == BRATS_SEGMENTATION else dtype
        written[name] = save_nifti(np.asarray(volume), path, affine=affine, overwrite=overwrite, dtype=stored)
    return written
