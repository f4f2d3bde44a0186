"""Reading a bundle's input files and checking what they hold, before any network is loaded.

Every error names the config key and the file (``input_path 'scan.nii.gz': ...``), what was expected and what came:

- :func:`read_file`: the path is given, exists, is a file, is not empty, and the reader can read it (a truncated
  file fails here, named, instead of deep inside a reader);
- :func:`check_values`: a real dtype unless complex values are allowed (a complex NIfTI would otherwise lose its
  imaginary part in a float cast), every value finite (one NaN voxel would otherwise give an all-NaN result), and
  for label maps non-negative integers below the number of classes;
- :func:`check_affine`: a finite, invertible 4x4 voxel-to-world matrix; :func:`check_nifti_header`: the same for
  the sform/qform a NIfTI file declares (a reader may replace a NaN matrix by the identity without a word);
- :func:`read_npz`: a NumPy ``.npz`` archive (no pickles) holding the required arrays.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.bundle.errors import BundleInputError

__all__ = [
    "read_file",
    "read_npz",
    "check_values",
    "check_affine",
    "check_nifti_header",
    "check_not_all_zero",
    "describe",
]


def describe(key: str, path: str | os.PathLike | None) -> str:
    """``"input_path 'scan.nii.gz'"``: how messages name an input."""
    return f"{key} '{path}'" if path not in (None, "") else key


def _check_path(key: str, path: Any, folder: bool = False) -> Path:
    if path is None or str(path) == "":
        raise BundleInputError(f"{key} is not set; give the file with --{key} <path>.")
    if not isinstance(path, (str, os.PathLike)):
        raise BundleInputError(f"{key} must be a file path, got {type(path).__name__} {path!r}.")
    file = Path(path)
    if not file.exists():
        raise BundleInputError(f"{describe(key, path)} does not exist.")
    if file.is_dir() and folder:  # a DICOM series or a BraTS case: its reader names what the folder lacks
        if not os.access(file, os.R_OK | os.X_OK):
            raise BundleInputError(f"{describe(key, path)} is not readable (permission denied).")
        if not any(entry.is_file() for entry in file.iterdir()):
            raise BundleInputError(f"{describe(key, path)} is an empty folder.")
        return file
    if not file.is_file():
        kinds = "a file or a folder of one scan (DICOM series, BraTS case)" if folder else "a file"
        raise BundleInputError(f"{describe(key, path)} is a folder, not {kinds}.")
    if not os.access(file, os.R_OK):
        raise BundleInputError(f"{describe(key, path)} is not readable (permission denied).")
    if file.stat().st_size == 0:
        raise BundleInputError(f"{describe(key, path)} is empty (0 bytes).")
    return file


def read_file(
    key: str, path: Any, reader: Callable[[str], Any], what: str = "an image", folder: bool = False
) -> Any:
    """``reader(path)`` after checking the file, with a reader's failure named by ``key`` and the file.

    Args:
        key: the config key that gave ``path`` (e.g. ``"input_path"``).
        path: the file.
        reader: reads the file (e.g. MONAI's ``LoadImage``).
        what: what the file should hold, for messages.
        folder: ``path`` may also be a non-empty folder holding one scan (a DICOM series, a BraTS case) that
            ``reader`` reads.

    Raises:
        BundleInputError: no path, a missing, unreadable or empty file, or one the reader cannot read.
    """
    file = _check_path(key, path, folder)
    try:
        return reader(str(file))
    except Exception as e:  # noqa: BLE001 (every reader failure is reported the same way, with its cause chained)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "allow_pickle" in reason:  # numpy/MONAI advise enabling pickles, which would run code from the file
            raise BundleInputError(
                f"{describe(key, path)} holds Python objects (an object array): they would need pickles, which can "
                "run code and which medgen never loads; store numeric arrays only."
            ) from e
        size = "a folder" if file.is_dir() else f"{file.stat().st_size} bytes; a truncated or corrupted file fails here"
        raise BundleInputError(
            f"{describe(key, path)} could not be read as {what} ({size}): {type(e).__name__}: {reason}"
        ) from e


def read_npz(key: str, path: Any, required: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of a NumPy ``.npz`` archive (``allow_pickle=False``), checked to hold ``required``.

    Raises:
        BundleInputError: not a file (see :func:`read_file`), not an ``.npz`` archive (e.g. a text file), a damaged
            archive, an entry that needs pickles, or a missing required array.
    """
    file = _check_path(key, path)
    if not zipfile.is_zipfile(file):
        with open(file, "rb") as handle:
            start = handle.read(16)
        if start.startswith(b"PK\x03\x04"):
            raise BundleInputError(
                f"{describe(key, path)} is a truncated or damaged .npz archive ({file.stat().st_size} bytes; its zip "
                "directory is missing): copy the file again."
            )
        raise BundleInputError(
            f"{describe(key, path)} is not a NumPy .npz archive (it starts with {start!r}); give a file written by "
            f"numpy.savez{' holding ' + ', '.join(required) if required else ''}."
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(file, allow_pickle=False) as data:
            for name in data.files:
                arrays[name] = np.asarray(data[name])
    except ValueError as e:  # object arrays need pickles, which are never loaded
        raise BundleInputError(
            f"{describe(key, path)} holds an entry that is not a plain array (object arrays need pickles, which "
            "medgen never loads): store numeric arrays only."
        ) from e
    except Exception as e:  # noqa: BLE001
        raise BundleInputError(
            f"{describe(key, path)} could not be read as a .npz archive (truncated or damaged?): "
            f"{type(e).__name__}: {e}"
        ) from e
    missing = [name for name in required if name not in arrays]
    if missing:
        raise BundleInputError(
            f"{describe(key, path)} lacks the array(s) {missing}; it holds {sorted(arrays) or 'nothing'}."
        )
    return arrays


def _first_index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def check_values(
    data: Any,
    key: str,
    path: Any = None,
    *,
    allow_complex: bool = False,
    integer: bool = False,
    num_classes: int | None = None,
    what: str = "values",
) -> torch.Tensor:
    """Check an input array's dtype and values; returns it as a tensor (not copied when it is one).

    Args:
        data: the array (tensor, MetaTensor or numpy array).
        key, path: how to name it.
        allow_complex: complex values are what the task takes (k-space, coil maps).
        integer: the values must be non-negative integers (a label map).
        num_classes: with ``integer``: the labels must be below it.
        what: what the values are, for messages (e.g. ``"k-space"``).

    Raises:
        BundleInputError: a complex dtype where a real one is needed, a non-numeric dtype, NaN or Inf values,
            non-integer, negative or too large labels.
    """
    name = describe(key, path)
    tensor = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    plain = tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor
    if plain.is_complex() and not allow_complex:
        raise BundleInputError(
            f"{name} holds complex data ({plain.dtype}); this bundle takes real {what} and would drop the imaginary "
            "part: pass a real image (e.g. the magnitude)."
        )
    if plain.dtype == torch.bool:
        raise BundleInputError(f"{name} holds {plain.dtype} data; expected numeric {what}.")
    if plain.numel() == 0:
        raise BundleInputError(f"{name} holds no values (shape {tuple(plain.shape)}).")
    if plain.is_floating_point() or plain.is_complex():
        parts = torch.view_as_real(plain) if plain.is_complex() else plain
        finite = torch.isfinite(parts)
        if plain.is_complex():
            finite = finite.all(dim=-1)
        if not bool(finite.all()):
            nan = torch.isnan(parts).any(dim=-1) if plain.is_complex() else torch.isnan(parts)
            count_nan, count_inf = int(nan.sum()), int((~finite).sum()) - int(nan.sum())
            found = " and ".join(f"{n} {label}" for n, label in ((count_nan, "NaN"), (count_inf, "infinite"))
                                 if n)
            raise BundleInputError(
                f"{name} holds {found} value(s) among its {plain.numel()} {what} (first at index "
                f"{_first_index(~finite)}); every value must be finite: replace or mask them before running."
            )
    if integer:
        values = plain.to(torch.float64)
        if not bool((values == values.round()).all()) or float(values.min()) < 0:
            bad = _first_index((values != values.round()) | (values < 0))
            raise BundleInputError(
                f"{name} must hold non-negative integer labels, got {float(values[bad])} at index {bad}."
            )
        if num_classes is not None and float(values.max()) >= num_classes:
            raise BundleInputError(
                f"{name} holds label {int(values.max())}; the network knows {num_classes} classes (0 .. "
                f"{num_classes - 1})."
            )
    return tensor


def check_not_all_zero(data: Any, key: str, path: Any = None, what: str = "values") -> None:
    """Refuse an array whose values are all zero (e.g. coil sensitivity maps).

    Raises:
        BundleInputError: every value is zero.
    """
    tensor = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if not bool((tensor != 0).any()):
        raise BundleInputError(f"{describe(key, path)}: the {what} are all zero.")


def check_affine(affine: Any, key: str, path: Any = None, what: str = "the affine") -> torch.Tensor:
    """Check a voxel-to-world matrix: 4x4, finite, invertible (the spacing it encodes is not zero).

    Args:
        affine: the matrix.
        key, path: how to name it.
        what: which matrix, for messages (e.g. ``"its sform"``).

    Returns:
        the affine as a float64 tensor.

    Raises:
        BundleInputError: another shape, NaN/Inf entries, or a singular matrix.
    """
    name = describe(key, path)
    matrix = torch.as_tensor(np.asarray(affine, dtype=np.float64) if not isinstance(affine, torch.Tensor) else affine)
    matrix = matrix.to(torch.float64)
    if tuple(matrix.shape) != (4, 4):
        raise BundleInputError(f"{name}: {what} must be a 4x4 matrix, got shape {tuple(matrix.shape)}.")
    if not bool(torch.isfinite(matrix).all()):
        raise BundleInputError(f"{name}: {what} (voxel-to-world matrix) holds NaN or infinite entries:\n"
                               f"{matrix.numpy()}\nFix the file's header (qform/sform).")
    spacing = torch.linalg.norm(matrix[:3, :3], dim=0)
    if not bool(torch.linalg.det(matrix[:3, :3]).abs() > 1e-12 * max(float(spacing.prod()), 1e-300)) or bool(
        (spacing == 0).any()
    ):
        raise BundleInputError(f"{name}: {what} (voxel-to-world matrix) is singular (voxel spacing "
                               f"{spacing.tolist()}):\n{matrix.numpy()}\nFix the file's header (qform/sform).")
    return matrix


def check_nifti_header(key: str, path: Any) -> None:
    """Check the voxel-to-world matrices a NIfTI file declares (``sform`` and ``qform`` when their codes are set).

    MONAI's reader turns a header whose matrix holds NaN into an identity affine; checking the header itself reports
    the file instead. Files that are not NIfTI are left to :func:`check_affine` on what their reader returns.

    Raises:
        BundleInputError: a declared matrix that is not finite or not invertible.
    """
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    import nibabel as nib

    header = nib.load(str(path)).header
    for which, code, matrix in (("sform", int(header["sform_code"]), header.get_sform),
                                ("qform", int(header["qform_code"]), header.get_qform)):
        if code > 0:
            try:
                affine = matrix()
            except Exception as e:  # noqa: BLE001 (a quaternion nibabel cannot turn into a matrix)
                raise BundleInputError(f"{describe(key, path)}: its {which} cannot be read ({e}).") from e
            check_affine(affine, key, path, f"its {which}")
