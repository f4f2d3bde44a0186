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

import json
import math
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import SSIMMetric

from medgen.data.io import save_nifti
from medgen.data.phantoms import brain_mri_phantom
from medgen.engines.writers import volume_statistics

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


def _as_magnitudes(x: Any, name: str) -> torch.Tensor:
    """``(S, 1, H, W)`` float64 magnitudes from ``(H, W)``, ``(S, H, W)`` or ``(S, 1, H, W)`` real/complex data."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or numpy array, got {type(x).__name__}.")
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    x = x.detach().cpu().abs()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be shaped (H, W), (S, H, W) or (S, 1, H, W), got {tuple(x.shape)}.")
    return x.to(torch.float64)


def hfs_metrics(reconstruction: Any, reference: Any, win_size: int = 11) -> dict[str, Any]:
    """PSNR, SSIM and NMSE of magnitude images per slice, as HFS-SDE evaluates (``utils/calc.py``).

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
    r, ref = _as_magnitudes(reconstruction, "reconstruction"), _as_magnitudes(reference, "reference")
    if r.shape != ref.shape:
        raise ValueError(f"reconstruction {tuple(r.shape)} and reference {tuple(ref.shape)} must have the same shape.")
    if min(r.shape[-2:]) < win_size:
        raise ValueError(f"images must be at least win_size={win_size} pixels on each side, got {tuple(r.shape)}.")
    psnr, ssim, nmse = [], [], []
    for x, y in zip(r, ref):
        reference_range = float(y.max() - y.min())
        mse = float(torch.mean((x - y) ** 2))
        psnr.append(float("inf") if mse == 0 else 10.0 * math.log10(reference_range**2 / mse))
        data_range = max(float(x.max() - x.min()), reference_range)
        metric = SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size, kernel_sigma=1.5)
        ssim.append(float(metric(x[None], y[None]).mean()))
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
    target = Path(path)
    if target.suffix != ".npz":
        raise ValueError(f"path must end with .npz, got {str(target)!r}.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()}
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp.npz")
    try:
        np.savez_compressed(tmp, **data)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


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


class KspaceReconstructionWriter:
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
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix without '/', got {prefix!r}.")
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.info = dict(info or {})
        self.overwrite = bool(overwrite)
        self.inputs = tuple(str(p) for p in inputs if p)
        self._started: float | None = None

    def paths(self) -> dict[str, Path]:
        """The files written: ``{"nifti": ..., "png": ..., "metrics": ...}``."""
        return {
            "nifti": self.output_dir / f"{self.prefix}.nii.gz",
            "png": self.output_dir / f"{self.prefix}.png",
            "metrics": self.output_dir / f"{self.prefix}_metrics.json",
        }

    def check(self) -> None:
        """Raise before any long computation if an output exists or is an input (and start the clock).

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            ValueError: an output path is one of ``inputs``.
        """
        paths = list(self.paths().values())
        for path in paths:
            if any(Path(p).resolve() == path.resolve() for p in self.inputs):
                raise ValueError(f"refusing to write the output over the input file '{path}'; choose another prefix.")
        existing = [p for p in paths if p.exists()]
        if existing and not self.overwrite:
            raise FileExistsError(
                f"outputs exist: {', '.join(map(str, existing))}; choose another output_dir or seed, or pass "
                "overwrite=True."
            )
        self._started = time.perf_counter()

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
            affine: 4x4 affine of the NIfTI (default identity).
            extra: more JSON-serialisable entries for the metrics file (computed during the run).

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: images of the wrong type or shape.
        """
        recon = _as_magnitudes(reconstruction, "reconstruction")
        ref = None if reference is None else _as_magnitudes(reference, "reference")
        named = {k: _as_magnitudes(v, k) for k, v in (baselines or {}).items() if v is not None}
        for name, image in [("reference", ref), *named.items()]:
            if image is not None and image.shape != recon.shape:
                raise ValueError(f"{name} {tuple(image.shape)} must be shaped like the reconstruction "
                                 f"{tuple(recon.shape)}.")
        affine = np.eye(4) if affine is None else np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu())
        metrics = None if ref is None else hfs_metrics(recon, ref)
        baseline_metrics = {k: hfs_metrics(v, ref) for k, v in named.items()} if ref is not None else {}
        if self._started is None:
            self.check()
        elapsed = time.perf_counter() - (self._started or time.perf_counter())
        paths = self.paths()
        volume = recon[:, 0].permute(1, 2, 0).float().numpy()  # (H, W, S)
        save_nifti(volume, paths["nifti"], affine=affine, overwrite=self.overwrite, inputs=self.inputs)
        self._write_png(paths["png"], recon, ref, named.get("zero_filled"), metrics, baseline_metrics)
        content = {
            **self.info,
            **dict(extra or {}),
            "seconds": round(elapsed, 3),
            "nifti": paths["nifti"].name,
            "png": paths["png"].name,
            "shape": list(volume.shape),
            "affine": affine.tolist(),
            "statistics": volume_statistics(volume),
            "metrics": metrics,
            "baselines": baseline_metrics,
        }
        target = paths["metrics"]
        if target.exists() and not self.overwrite:
            raise FileExistsError(f"'{target}' exists; pass overwrite=True to replace it.")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(content, indent=2, default=str))
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._started = None
        return content

    def _write_png(
        self,
        path: Path,
        recon: torch.Tensor,
        ref: torch.Tensor | None,
        zero_filled: torch.Tensor | None,
        metrics: Mapping[str, Any] | None,
        baseline_metrics: Mapping[str, Any],
    ) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        if path.exists() and not self.overwrite:
            raise FileExistsError(f"'{path}' exists; pass overwrite=True to replace it.")
        columns: list[tuple[str, torch.Tensor, str]] = []
        if ref is not None:
            columns.append(("reference", ref, ""))
        if zero_filled is not None:
            columns.append(("zero-filled", zero_filled, "zero_filled"))
        columns.append(("reconstruction", recon, "reconstruction"))
        if ref is not None:
            columns.append(("|error| x 5", 5 * (recon - ref).abs(), ""))
        display = ref if ref is not None else recon
        vmax = float(np.percentile(display.numpy(), 99.5)) or 1.0
        rows = recon.shape[0]
        figure = Figure(figsize=(2.4 * len(columns), 2.5 * rows + 0.4), dpi=100)
        for row in range(rows):
            for col, (title, images, key) in enumerate(columns):
                axis = figure.add_subplot(rows, len(columns), row * len(columns) + col + 1)
                axis.imshow(images[row, 0].numpy().T, cmap="gray", vmin=0.0, vmax=vmax, origin="lower",
                            interpolation="nearest")
                scores = metrics if key == "reconstruction" else baseline_metrics.get(key)
                if scores is not None:
                    title = (f"{title}\n{scores['per_slice']['psnr'][row]:.2f} dB / "
                             f"{scores['per_slice']['ssim'][row]:.3f}")
                axis.set_title(title, fontsize=8)
                axis.axis("off")
        figure.suptitle(self.prefix, fontsize=9)
        figure.tight_layout()
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.png")
        try:
            figure.savefig(str(tmp), format="png")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
