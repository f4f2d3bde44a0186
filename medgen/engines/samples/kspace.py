"""Multi-coil k-space samples: complex phantom slices and the ``.npz`` format of the ``hfssde_mri`` bundle's sample.

- :func:`phantom_mri_slices`: axial slices of :func:`medgen.data.brain_mri_phantom` volumes with a smooth synthetic
  phase, the coil-free complex images the ``hfssde_mri`` bundle simulates multi-coil k-space from (training data and
  its shipped sample).
- :func:`load_kspace_sample` / :func:`save_kspace_sample`: the ``.npz`` k-space format of the bundle's sample (no
  pickles; written atomically).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.data.phantoms import brain_mri_phantom
from medgen.engines.writers.atomic import write_atomically

__all__ = ["phantom_mri_slices", "load_kspace_sample", "save_kspace_sample"]


_SAMPLE_KEYS = ("kspace", "sensitivity_maps")


def phantom_mri_slices(
    seeds: Sequence[int],
    image_size: int = 64,
    slices_per_volume: int = 8,
    depth: int = 32,
    slice_range: tuple[float, float] = (0.3, 0.75),
    max_phase: float = math.pi / 2,
) -> list[torch.Tensor]:
    """Complex axial brain slices: phantom magnitude times a smooth random phase.

    For every seed a ``(image_size, image_size, depth)`` :func:`~medgen.data.brain_mri_phantom` volume is drawn and
    ``slices_per_volume`` axial slices (across its last, inferior-superior axis) evenly spaced between the fractions
    ``slice_range`` of its depth are taken (the default range holds the brain, not the skull cap or the neck). Each
    slice ``m`` becomes ``m * exp(i phi)`` with the quadratic phase
    ``phi = c0 + c1 x + c2 y + c3 x^2 + c4 y^2 + c5 x y`` (``x, y`` in ``[-1, 1]``), ``c ~ U(-max_phase, max_phase)``
    drawn from ``numpy.random.default_rng([seed, slice])``: a smooth background phase like that of real MR images.

    Args:
        seeds: phantom seeds (each gives another head).
        image_size: in-plane size ``H = W`` in pixels (axis 0 left-right is ``H``, axis 1 posterior-anterior ``W``).
        slices_per_volume: slices taken from each volume.
        depth: number of axial slices of each phantom volume.
        slice_range: first and last slice position as fractions of ``depth - 1``.
        max_phase: largest phase coefficient, radians.

    Returns:
        ``len(seeds) * slices_per_volume`` complex64 tensors ``(1, H, W)`` with magnitudes in ``[0, 1]``.

    Raises:
        ValueError: a size, count or range out of bounds.
    """
    for name, value, low in (("image_size", image_size, 8), ("slices_per_volume", slices_per_volume, 1),
                             ("depth", depth, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    first, last = (float(f) for f in slice_range)
    if not 0.0 <= first <= last <= 1.0:
        raise ValueError(f"slice_range must be (first, last) with 0 <= first <= last <= 1, got {slice_range!r}.")
    if not max_phase >= 0:
        raise ValueError(f"max_phase must be >= 0, got {max_phase!r}.")
    axis = np.linspace(-1.0, 1.0, image_size)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    basis = np.stack([np.ones_like(x), x, y, x**2, y**2, x * y])
    indices = np.round(np.linspace(first, last, slices_per_volume) * (depth - 1)).astype(int)
    slices = []
    for seed in seeds:
        volume = brain_mri_phantom((image_size, image_size, depth), int(seed))
        for index in indices:
            coefficients = np.random.default_rng([int(seed), int(index)]).uniform(-max_phase, max_phase, 6)
            phase = np.tensordot(coefficients, basis, axes=1)
            image = volume[:, :, index] * np.exp(1j * phase)
            slices.append(torch.from_numpy(image.astype(np.complex64))[None])
    return slices


def save_kspace_sample(path: str | os.PathLike, overwrite: bool = False, **arrays: Any) -> Path:
    """Write arrays (complex allowed) to a compressed ``.npz`` file (no pickles) atomically.

    Args:
        path: the ``.npz`` file.
        overwrite: replace an existing file.
        arrays: name -> array/tensor (e.g. ``kspace``, ``sensitivity_maps``, ``image``, ``affine``).

    Returns:
        the written path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: ``path`` does not end in ``.npz``.
    """
    if Path(path).suffix != ".npz":
        raise ValueError(f"path must end with .npz, got {str(path)!r}.")
    data = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
    return write_atomically(path, lambda tmp: np.savez_compressed(tmp, **data), overwrite)


def load_kspace_sample(path: str | os.PathLike, keys: Sequence[str] = _SAMPLE_KEYS) -> dict[str, torch.Tensor]:
    """Read a ``.npz`` sample (no pickles) into tensors and check that ``keys`` are present.

    The ``hfssde_mri`` bundle's input file holds ``kspace`` (complex64 ``(S, Nc, H, W)``, centred, fully sampled),
    ``sensitivity_maps`` (complex64 ``(S, Nc, H, W)``) and ``affine`` (float64 ``(4, 4)``); its reference file holds
    ``image`` (complex64 ``(S, 1, H, W)``) and ``affine``.

    Args:
        path: the ``.npz`` file.
        keys: entries that must be present.

    Returns:
        name -> tensor.

    Raises:
        FileNotFoundError: no such file.
        KeyError: a required entry is missing.
        ValueError: ``path`` is empty (e.g. an unset ``input_path``), or the file is not a NumPy ``.npz`` archive of
            plain arrays (a text file, a damaged archive, object arrays, which would need pickles: never loaded).
    """
    if not str(path):
        raise ValueError("path of the k-space sample is empty; give the .npz file (e.g. --input_path data.npz).")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-space sample '{path}' not found.")
    from medgen.bundle.inputs import read_npz  # (the one .npz reader; medgen.bundle builds on engines)

    arrays = {name: torch.from_numpy(np.array(array)) for name, array in read_npz("path", path).items()}
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise KeyError(f"'{path}' lacks {missing}; it holds {sorted(arrays)}.")
    return arrays

