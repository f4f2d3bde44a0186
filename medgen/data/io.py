"""Writing volumes safely: NIfTI with an affine and a PNG of three orthogonal mid-slices.

Both writers are atomic (a temporary file in the target folder, then :func:`os.replace`), refuse to write over an
existing file unless ``overwrite=True``, and always refuse to write over a file the caller names in ``inputs`` (the
volumes a result was computed from).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_nifti", "save_orthogonal_slices_png"]

PathLike = str | os.PathLike


def _as_numpy(volume: Any, name: str = "volume") -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu()
        if hasattr(volume, "as_tensor"):
            volume = volume.as_tensor()
        return volume.numpy()
    if isinstance(volume, np.ndarray):
        return volume
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(volume).__name__}.")


def _target(path: PathLike, overwrite: bool, inputs: Iterable[PathLike], suffixes: tuple[str, ...]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}.")
    target = Path(path)
    if not target.name.lower().endswith(suffixes):
        raise ValueError(f"path must end with one of {suffixes}, got {str(target)!r}.")
    resolved = target.resolve()
    for item in inputs:
        if Path(item).resolve() == resolved:
            raise ValueError(f"refusing to write the output over the input file {str(item)!r}; choose another path.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _temporary_name(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name[: -len(suffix)]}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def save_nifti(
    volume: Any,
    path: PathLike,
    affine: Any = None,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    dtype: Any = None,
) -> Path:
    """Write a volume as NIfTI atomically.

    Args:
        volume: ``(D, H, W)`` or channel-first ``(C, D, H, W)`` numpy array / tensor / MetaTensor. One channel is
            written as a 3D image, several channels as a 4D image with channels last (NIfTI's layout).
        path: output file ending in ``.nii`` or ``.nii.gz``.
        affine: 4x4 voxel-to-world matrix (mm). Default: the MetaTensor's affine if ``volume`` has one, else identity.
        overwrite: replace an existing ``path`` (never one listed in ``inputs``).
        inputs: paths of the inputs the volume was computed from; writing over any of them is refused.
        dtype: stored dtype; default float32 for floating data, the input dtype otherwise (bool -> uint8).

    Returns:
        the written path.

    Raises:
        TypeError: for a bad ``volume`` or ``path`` type.
        ValueError: for a bad shape, affine or suffix, or if ``path`` is one of ``inputs``.
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    import nibabel as nib

    if affine is None and isinstance(volume, torch.Tensor) and hasattr(volume, "affine"):
        affine = volume.affine
    data = _as_numpy(volume)
    if data.ndim == 4:
        data = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    elif data.ndim != 3:
        raise ValueError(f"volume must have shape (D, H, W) or (C, D, H, W), got {data.shape}.")
    if isinstance(affine, torch.Tensor):
        affine = _as_numpy(affine, "affine")
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be a 4x4 matrix, got shape {affine.shape}.")
    if dtype is None:
        dtype = np.float32 if np.issubdtype(data.dtype, np.floating) else data.dtype
        dtype = np.uint8 if data.dtype == bool else dtype
    target = _target(path, overwrite, inputs, (".nii", ".nii.gz"))
    suffix = ".nii.gz" if target.name.lower().endswith(".nii.gz") else ".nii"
    tmp = _temporary_name(target, suffix)
    image = nib.Nifti1Image(np.ascontiguousarray(data.astype(dtype)), affine)
    image.header.set_xyzt_units("mm")
    try:
        nib.save(image, str(tmp))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def save_orthogonal_slices_png(
    volume: Any,
    path: PathLike,
    title: str | None = None,
    overwrite: bool = False,
    inputs: Iterable[PathLike] = (),
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "gray",
) -> Path:
    """Write a PNG with the three orthogonal mid-slices of a volume (matplotlib, Agg backend), atomically.

    Panels: axial ``v[:, :, W//2]``, coronal ``v[:, H//2, :]``, sagittal ``v[D//2, :, :]``, each shown with the first
    remaining axis horizontal and the second vertical (origin lower left), which for RAS data is radiological-free
    "patient left on the left" display of x (left-right), y (posterior-anterior), z (inferior-superior).

    Args:
        volume: ``(D, H, W)`` or channel-first ``(C, D, H, W)`` (channel 0 is shown).
        path: output file ending in ``.png``.
        title: figure title.
        overwrite: replace an existing ``path`` (never one listed in ``inputs``).
        inputs: paths that must not be overwritten.
        vmin: display minimum (default: the volume's 0.5th percentile).
        vmax: display maximum (default: the volume's 99.5th percentile).
        cmap: matplotlib colormap name.

    Returns:
        the written path.

    Raises:
        TypeError, ValueError, FileExistsError: as :func:`save_nifti`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    data = _as_numpy(volume)
    if data.ndim == 4:
        data = data[0]
    if data.ndim != 3:
        raise ValueError(f"volume must have shape (D, H, W) or (C, D, H, W), got {data.shape}.")
    target = _target(path, overwrite, inputs, (".png",))
    data = np.asarray(data, dtype=np.float32)
    lo = float(np.percentile(data, 0.5)) if vmin is None else vmin
    hi = float(np.percentile(data, 99.5)) if vmax is None else vmax
    d, h, w = data.shape
    panels = [("axial", data[:, :, w // 2]), ("coronal", data[:, h // 2, :]), ("sagittal", data[d // 2, :, :])]
    figure = Figure(figsize=(9, 3.4), dpi=100)
    for i, (name, plane) in enumerate(panels):
        axis = figure.add_subplot(1, 3, i + 1)
        axis.imshow(plane.T, cmap=cmap, vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
        axis.set_title(name)
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    tmp = _temporary_name(target, ".png")
    try:
        figure.savefig(str(tmp), format="png")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
