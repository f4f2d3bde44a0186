"""Multi-coil k-space reconstruction in bundles: complex phantom slices, HFS-SDE's metrics and a slice writer.

- :func:`phantom_mri_slices`: axial slices of :func:`medgen.data.brain_mri_phantom` volumes with a smooth synthetic
  phase, the coil-free complex images the ``hfssde_mri`` bundle simulates multi-coil k-space from (training data and
  its shipped sample).
- :func:`hfs_metrics`: PSNR, SSIM and NMSE of magnitude images as HFS-SDE's ``utils/calc.py`` computes them
  (torchmetrics defaults with the data range taken from the images, NMSE of max-normalised images), per slice.
- :func:`load_kspace_sample` / :func:`save_kspace_sample`: the ``.npz`` k-space format of the bundle's sample.
- :class:`KspaceReconstructionWriter`: ``<prefix>.nii.gz`` (magnitude slices), ``<prefix>.png`` (reference,
  zero-filled, reconstruction and error per slice) and ``<prefix>_metrics.json``, atomically and never over an
  existing file or an input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.data.phantoms import brain_mri_phantom
from medgen.engines.metrics import as_magnitude_slices, check_same_shape, check_ssim_window, ssim_2d
from medgen.engines.writers import OutputWriter, as_affine, save_panel_grid_png, volume_statistics, write_atomically

__all__ = [
    "phantom_mri_slices",
    "hfs_metrics",
    "load_kspace_sample",
    "save_kspace_sample",
    "KspaceReconstructionWriter",
]

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


def hfs_metrics(reconstruction: Any, reference: Any, win_size: int = 11) -> dict[str, Any]:
    """PSNR, SSIM and NMSE of magnitude images per slice, as HFS-SDE evaluates (``utils/calc.py``).

    HFS-SDE's definition differs on purpose from :func:`~medgen.engines.reconstruction.reconstruction_metrics` and
    :func:`~medgen.engines.slice_reconstruction.slice_metrics`: no clipping, and the data range of each slice is
    taken from the images (not fixed), so the scores do not depend on the intensity scale; PSNR is computed in
    Python floats from that range (torchmetrics' formula), only the SSIM goes through
    :func:`medgen.engines.metrics.ssim_2d`.

    For each slice, on magnitudes ``r = |reconstruction|``, ``l = |reference|`` (HFS-SDE's std-normalised units;
    all three are invariant to a common scaling of both images):

    - PSNR (torchmetrics ``PeakSignalNoiseRatio()``, data range from the reference):
      ``10 log10((max l - min l)^2 / mean((r - l)^2))``;
    - SSIM (torchmetrics ``StructuralSimilarityIndexMeasure()``: Gaussian window 11, sigma 1.5, ``k1 = 0.01``,
      ``k2 = 0.03``, data range ``max(max r - min r, max l - min l)``, mean over the valid window positions),
      computed with MONAI's :class:`~monai.metrics.SSIMMetric`;
    - NMSE: ``||r / max r - l / max l||^2 / ||l / max l||^2``.

    Args:
        reconstruction: ``(H, W)``, ``(S, H, W)`` or ``(S, 1, H, W)`` images, real or complex (magnitudes are used).
        reference: the same shape.
        win_size: SSIM window (HFS-SDE/torchmetrics: 11); ``H, W >= win_size``.

    Returns:
        ``{"psnr": mean, "ssim": mean, "nmse": mean, "per_slice": {"psnr": [...], "ssim": [...], "nmse": [...]}}``.

    Raises:
        TypeError, ValueError: inputs that are not images of one shape, or slices smaller than ``win_size``.
    """
    r, ref = as_magnitude_slices(reconstruction, "reconstruction"), as_magnitude_slices(reference, "reference")
    check_same_shape(r, ref, "reconstruction")
    check_ssim_window(r.shape[-2:], win_size, "images")
    psnr, ssim, nmse = [], [], []
    for x, y in zip(r, ref):
        reference_range = float(y.max() - y.min())
        mse = float(torch.mean((x - y) ** 2))
        psnr.append(float("inf") if mse == 0 else 10.0 * math.log10(reference_range**2 / mse))
        data_range = max(float(x.max() - x.min()), reference_range)
        ssim.append(float(ssim_2d(x[None], y[None], data_range, win_size).mean()))
        xn, yn = x / x.max(), y / y.max()
        nmse.append(float(torch.sum((xn - yn) ** 2) / torch.sum(yn**2)))
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "nmse": float(np.mean(nmse)),
        "per_slice": {"psnr": psnr, "ssim": ssim, "nmse": nmse},
    }


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
        ValueError: ``path`` is empty (e.g. an unset ``input_path``).
    """
    if not str(path):
        raise ValueError("path of the k-space sample is empty; give the .npz file (e.g. --input_path data.npz).")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-space sample '{path}' not found.")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: torch.from_numpy(np.array(data[name])) for name in data.files}
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise KeyError(f"'{path}' lacks {missing}; it holds {sorted(arrays)}.")
    return arrays


class KspaceReconstructionWriter(OutputWriter):
    """Write a reconstruction of 2D slices into ``output_dir`` without overwriting anything.

    Files: ``<prefix>.nii.gz`` (the magnitudes ``(H, W, S)``: slices along the third axis, float32, ``affine``),
    ``<prefix>.png`` (one row per slice: reference, zero-filled, reconstruction and 5x the absolute error, on the
    reference's display range; without a reference only the reconstruction and the zero-filled image) and
    ``<prefix>_metrics.json`` (``info``, seconds since :meth:`check`, shape, affine, statistics and, with a
    reference, :func:`hfs_metrics` of the reconstruction and of every baseline).

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"hfssde_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace.

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "reconstruction",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs)

    def __call__(
        self,
        reconstruction: Any,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``reconstruction`` ``(S, 1, H, W)`` (or ``(S, H, W)``; complex or real, magnitudes are written).

        Args:
            reconstruction: the reconstructed slices.
            reference: the fully sampled images for metrics and the PNG, or ``None``.
            baselines: named images (e.g. ``{"zero_filled": ...}``), scored against ``reference`` too; the one named
                ``"zero_filled"`` is shown in the PNG.
            affine: 4x4 affine of the NIfTI (default identity, whatever ``reconstruction`` is).
            extra: more JSON-serialisable entries for the metrics file (computed during the run).

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: images of the wrong type or shape.
        """
        recon = as_magnitude_slices(reconstruction, "reconstruction")
        ref = None if reference is None else as_magnitude_slices(reference, "reference")
        named = {k: as_magnitude_slices(v, k) for k, v in (baselines or {}).items() if v is not None}
        for name, image in [("reference", ref), *named.items()]:
            if image is not None and image.shape != recon.shape:
                raise ValueError(f"{name} {tuple(image.shape)} must be shaped like the reconstruction "
                                 f"{tuple(recon.shape)}.")
        affine = as_affine(affine)
        metrics = None if ref is None else hfs_metrics(recon, ref)
        baseline_metrics = {k: hfs_metrics(v, ref) for k, v in named.items()} if ref is not None else {}
        elapsed = self.seconds_since_check()
        paths = self.paths()
        volume = recon[:, 0].permute(1, 2, 0).float().numpy()  # (H, W, S)
        self.save_nifti(volume, paths["nifti"], affine)
        self._save_png(paths["png"], recon, ref, named.get("zero_filled"), metrics, baseline_metrics)
        content = {
            **self.info,
            **dict(extra or {}),
            "seconds": round(elapsed, 3),
            **self.describe(volume, affine, nifti=paths["nifti"], png=paths["png"]),
            "statistics": volume_statistics(volume),
            "metrics": metrics,
            "baselines": baseline_metrics,
        }
        return self.write_summary(paths["metrics"], content)

    def _save_png(
        self,
        path: Path,
        recon: torch.Tensor,
        ref: torch.Tensor | None,
        zero_filled: torch.Tensor | None,
        metrics: Mapping[str, Any] | None,
        baseline_metrics: Mapping[str, Any],
    ) -> None:
        columns: list[tuple[str, torch.Tensor, Mapping[str, Any] | None]] = []
        if ref is not None:
            columns.append(("reference", ref, None))
        if zero_filled is not None:
            columns.append(("zero-filled", zero_filled, baseline_metrics.get("zero_filled")))
        columns.append(("reconstruction", recon, metrics))
        if ref is not None:
            columns.append(("|error| x 5", 5 * (recon - ref).abs(), None))
        display = ref if ref is not None else recon
        vmax = float(np.percentile(display.numpy(), 99.5)) or 1.0
        rows = []
        for row in range(recon.shape[0]):
            panels = []
            for title, images, scores in columns:
                if scores is not None:
                    psnr, ssim = scores["per_slice"]["psnr"][row], scores["per_slice"]["ssim"][row]
                    title = f"{title}\n{psnr:.2f} dB / {ssim:.3f}"
                panels.append((title, images[row, 0].numpy()))
            rows.append(panels)
        save_panel_grid_png(
            rows, path, title=self.prefix, overwrite=self.overwrite, inputs=self.inputs, vmin=0.0, vmax=vmax,
            panel_size=(2.4, 2.5), fontsize=8, title_fontsize=9,
        )
