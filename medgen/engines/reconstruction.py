"""Writing a reconstructed volume from a bundle run: NIfTI + orthogonal-slices PNG + a JSON of metrics.

:func:`reconstruction_metrics` scores a volume against a reference as TPDM evaluates (PSNR over all voxels jointly,
SSIM as the mean 2D SSIM over the slices of each of the three planes, both on ``[0, 1]``-clipped volumes with data
range 1), using MONAI's :class:`~monai.metrics.PSNRMetric` and :class:`~monai.metrics.SSIMMetric`.

:class:`ReconstructionWriter` writes ``<prefix>.nii.gz`` (the volume's affine), ``<prefix>.png`` and
``<prefix>_metrics.json`` (settings, run time, statistics, metrics of the volume and of baselines such as the
pseudo-inverse when a reference is given), refuses to write over existing files (:meth:`ReconstructionWriter.check`
says so BEFORE a long reconstruction starts) and writes each file atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric

from medgen.data.io import save_nifti, save_orthogonal_slices_png
from medgen.engines.writers import volume_statistics

__all__ = ["PLANE_NAMES", "ReconstructionWriter", "reconstruction_metrics"]

PLANE_NAMES: tuple[str, str, str] = ("sagittal", "coronal", "axial")
"""Names of the slices across spatial axes 0, 1, 2 of an RAS-oriented volume (x left-right, y posterior-anterior,
z inferior-superior), as :func:`medgen.data.save_orthogonal_slices_png` labels them."""


def _as_volume(x: Any, name: str) -> torch.Tensor:
    """A real ``(D, H, W)`` float64 CPU tensor from ``(D, H, W)``, ``(1, D, H, W)`` or ``(1, 1, D, H, W)``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or numpy array, got {type(x).__name__}.")
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if x.is_complex() or not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int16, torch.int32)):
        raise TypeError(f"{name} must be real, got {x.dtype}.")
    while x.ndim > 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"{name} must be one volume (D, H, W), (1, D, H, W) or (1, 1, D, H, W), got {tuple(x.shape)}.")
    return x.detach().cpu().to(torch.float64)


def reconstruction_metrics(
    volume: Any,
    reference: Any,
    data_range: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    win_size: int = 11,
) -> dict[str, Any]:
    """PSNR and per-plane SSIM of one volume against a reference (TPDM's MRI evaluation, with MONAI's metrics).

    Args:
        volume: the reconstruction ``(D, H, W)`` (or with leading singleton batch/channel axes).
        reference: the ground truth, same shape.
        data_range: the intensity range of the metrics (TPDM MRI: 1).
        clip: clip both volumes to this range first (TPDM MRI: ``(0, 1)``; ``None``: no clipping).
        win_size: SSIM Gaussian window (11, sigma 1.5); every in-plane size must be at least this.

    Returns:
        ``{"psnr": dB over all voxels, "ssim": {"sagittal", "coronal", "axial", "mean"}, "mse", "mae"}``; SSIM of a
        plane is the mean 2D SSIM over the volume's slices across that axis (:data:`PLANE_NAMES`).

    Raises:
        TypeError, ValueError: non-real inputs, different shapes, or slices smaller than ``win_size``.
    """
    x, ref = _as_volume(volume, "volume"), _as_volume(reference, "reference")
    if x.shape != ref.shape:
        raise ValueError(f"volume {tuple(x.shape)} and reference {tuple(ref.shape)} must have the same shape.")
    if min(x.shape) < win_size:
        raise ValueError(f"every size of the volume must be >= win_size={win_size} for SSIM, got {tuple(x.shape)}.")
    if clip is not None:
        x, ref = x.clamp(*clip), ref.clamp(*clip)
    psnr = PSNRMetric(max_val=data_range, reduction="mean")(x[None, None], ref[None, None])
    ssim_metric = SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size, reduction="mean")
    ssim = {}
    for axis, plane in enumerate(PLANE_NAMES):
        slices, ref_slices = (v.movedim(axis, 0).unsqueeze(1) for v in (x, ref))
        ssim[plane] = float(ssim_metric(slices, ref_slices).mean())
    ssim["mean"] = float(np.mean([ssim[p] for p in PLANE_NAMES]))
    return {
        "psnr": float(psnr.mean()),
        "ssim": ssim,
        "mse": float(torch.mean((x - ref) ** 2)),
        "mae": float(torch.mean((x - ref).abs())),
    }


class ReconstructionWriter:
    """Write one reconstructed volume into ``output_dir`` without overwriting anything.

    Files: ``<prefix>.nii.gz`` (float32, the MetaTensor's affine or ``affine``), ``<prefix>.png`` (three orthogonal
    mid-slices) and ``<prefix>_metrics.json`` holding ``info``, the seconds since :meth:`check`, the volume's shape,
    affine and statistics, and, with a reference, :func:`reconstruction_metrics` of the volume and of each baseline.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"tpdm_zsr_seed0"``.
        info: JSON-serialisable settings recorded in the metrics file.
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: input files the outputs must never replace (e.g. the measurement and reference paths).
        data_range, clip: passed to :func:`reconstruction_metrics`.
        display_range: ``(vmin, vmax)`` of the PNG (``None``: the volume's 0.5 / 99.5 percentiles).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "reconstruction",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: tuple[str | os.PathLike, ...] | list[str | os.PathLike] = (),
        data_range: float = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix without '/', got {prefix!r}.")
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.info = dict(info or {})
        self.overwrite = bool(overwrite)
        self.inputs = tuple(str(p) for p in inputs if p)
        self.data_range = float(data_range)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.display_range = (None, None) if display_range is None else tuple(map(float, display_range))
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
        volume: torch.Tensor,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
    ) -> dict[str, Any]:
        """Write ``volume`` (one volume, see :func:`reconstruction_metrics`; a MetaTensor's affine is used).

        Args:
            volume: the reconstruction.
            reference: the ground truth for metrics, or ``None``.
            baselines: named volumes (e.g. ``{"pseudo_inverse": ...}``) scored against ``reference`` too.
            affine: 4x4 affine to write instead of the MetaTensor's (identity for plain tensors).

        Returns:
            the content written to the metrics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: bad volumes (see :func:`reconstruction_metrics`).
        """
        data = _as_volume(volume, "volume")
        if affine is None:
            affine = volume.affine if isinstance(volume, MetaTensor) else torch.eye(4, dtype=torch.float64)
        affine = np.asarray(torch.as_tensor(affine, dtype=torch.float64).cpu().reshape(-1, 4, 4)[0])
        metrics = None if reference is None else reconstruction_metrics(data, reference, self.data_range, self.clip)
        baseline_metrics = {
            name: reconstruction_metrics(value, reference, self.data_range, self.clip)
            for name, value in (baselines or {}).items()
            if reference is not None and value is not None
        }
        if self._started is None:
            self.check()
        elapsed = time.perf_counter() - (self._started or time.perf_counter())
        paths = self.paths()
        array = data.float().numpy()
        save_nifti(array, paths["nifti"], affine=affine, overwrite=self.overwrite, inputs=self.inputs)
        save_orthogonal_slices_png(
            array, paths["png"], title=self.prefix, overwrite=self.overwrite, inputs=self.inputs,
            vmin=self.display_range[0], vmax=self.display_range[1],
        )
        content = {
            **self.info,
            "seconds": round(elapsed, 3),
            "nifti": paths["nifti"].name,
            "png": paths["png"].name,
            "shape": list(array.shape),
            "affine": affine.tolist(),
            "statistics": volume_statistics(array),
            "metrics": metrics,
            "baselines": baseline_metrics,
        }
        target = paths["metrics"]
        if target.exists() and not self.overwrite:
            raise FileExistsError(f"'{target}' exists; pass overwrite=True to replace it.")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(content, indent=2, default=str))
        os.replace(tmp, target)
        self._started = None
        return content
