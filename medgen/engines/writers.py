"""Writing generated volumes from a bundle run: NIfTI + orthogonal-slices PNG per sample and a JSON of statistics.

:class:`GeneratedVolumeWriter` names every file from a prefix (e.g. ``wdm_seed0``), refuses to write over existing
files (:meth:`GeneratedVolumeWriter.check` says so BEFORE sampling starts), and writes each file atomically with
:func:`medgen.data.save_nifti` / :func:`medgen.data.save_orthogonal_slices_png`.
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

from medgen.data.io import save_nifti, save_orthogonal_slices_png

__all__ = ["GeneratedVolumeWriter", "save_state_dict", "volume_statistics"]


def save_state_dict(network: torch.nn.Module, path: str | os.PathLike, main_process_only: bool = True) -> Path | None:
    """Save ``network``'s plain ``state_dict`` (wrappers removed) to ``path`` atomically (temporary file + rename).

    Used by bundles to write ``models/model.pt`` only after training completed (an interrupted run never replaces
    the previous weights).

    Args:
        network: the module (``DataParallel``/``DistributedDataParallel`` are unwrapped).
        path: the ``.pt`` file to write (its folder is created).
        main_process_only: under ``torch.distributed``, only rank 0 writes.

    Returns:
        the written path, or ``None`` on a rank that does not write.

    Raises:
        TypeError: ``network`` is not an ``nn.Module``.
    """
    from medgen.engines.ema import unwrap_network
    from medgen.engines.trainer import distributed_rank

    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    if main_process_only and distributed_rank() != 0:
        return None
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save({k: v.detach().cpu() for k, v in unwrap_network(network).state_dict().items()}, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def volume_statistics(volume: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """``min``, ``max``, ``mean``, ``std``, ``p01``, ``p99`` of a volume (and ``fraction_above_threshold``)."""
    data = np.asarray(volume, dtype=np.float64)
    stats = {
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "p01": float(np.percentile(data, 1)),
        "p99": float(np.percentile(data, 99)),
    }
    if threshold is not None:
        stats["fraction_above_threshold"] = float((data > threshold).mean())
    return stats


class GeneratedVolumeWriter:
    """Write a batch of generated volumes into ``output_dir`` without overwriting anything.

    Files for a batch of ``B`` samples: ``<prefix>_<k>.nii.gz`` and ``<prefix>_<k>.png`` for ``k = 0..B-1`` and
    ``<prefix>_stats.json`` holding ``info``, the elapsed time since :meth:`check` and per-sample statistics
    (:func:`volume_statistics`), shape and affine.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"wdm_seed0"``.
        info: JSON-serialisable settings recorded in the statistics file (seed, steps, checkpoint, ...).
        threshold: voxels above it are counted in ``fraction_above_threshold`` (``None``: not computed).
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "sample",
        info: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix without '/', got {prefix!r}.")
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.info = dict(info or {})
        self.threshold = threshold
        self.overwrite = bool(overwrite)
        self._started: float | None = None

    def paths(self, num_samples: int) -> dict[str, list[Path] | Path]:
        """The files a batch of ``num_samples`` is written to: ``{"nifti": [...], "png": [...], "stats": path}``."""
        return {
            "nifti": [self.output_dir / f"{self.prefix}_{k}.nii.gz" for k in range(num_samples)],
            "png": [self.output_dir / f"{self.prefix}_{k}.png" for k in range(num_samples)],
            "stats": self.output_dir / f"{self.prefix}_stats.json",
        }

    def check(self, num_samples: int) -> None:
        """Raise before any long computation if an output of a ``num_samples`` batch exists (and start the clock).

        Raises:
            ValueError: ``num_samples < 1``.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
        paths = self.paths(num_samples)
        existing = [p for p in [*paths["nifti"], *paths["png"], paths["stats"]] if p.exists()]  # type: ignore[misc]
        if existing and not self.overwrite:
            raise FileExistsError(
                f"outputs exist: {', '.join(map(str, existing[:4]))}; choose another output_dir or seed, or pass "
                "overwrite=True."
            )
        self._started = time.perf_counter()

    def __call__(self, volumes: torch.Tensor) -> dict[str, Any]:
        """Write ``volumes`` ``(B, C, D, H, W)`` (a MetaTensor's affine is written to the NIfTI headers).

        Returns:
            the content written to the statistics JSON.

        Raises:
            TypeError, ValueError: ``volumes`` is not a 5D tensor.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        if not isinstance(volumes, torch.Tensor) or volumes.ndim != 5:
            raise ValueError(
                "volumes must be a (B, C, D, H, W) tensor, got "
                f"{tuple(volumes.shape) if isinstance(volumes, torch.Tensor) else type(volumes).__name__}."
            )
        num_samples = int(volumes.shape[0])
        if self._started is None:
            self.check(num_samples)
        elapsed = time.perf_counter() - (self._started or time.perf_counter())
        paths = self.paths(num_samples)
        affines = volumes.affine if isinstance(volumes, MetaTensor) else torch.eye(4, dtype=torch.float64)
        affines = affines.detach().cpu().double()
        data = (volumes.as_tensor() if isinstance(volumes, MetaTensor) else volumes).detach().cpu().float().numpy()
        samples = []
        for k in range(num_samples):
            affine = (affines[k] if affines.ndim == 3 else affines).numpy()
            nifti = save_nifti(data[k], paths["nifti"][k], affine=affine, overwrite=self.overwrite)  # type: ignore
            png = save_orthogonal_slices_png(
                data[k], paths["png"][k], title=f"{self.prefix} #{k}", overwrite=self.overwrite  # type: ignore
            )
            samples.append({
                "nifti": nifti.name,
                "png": png.name,
                "shape": list(data[k].shape),
                "affine": affine.tolist(),
                **volume_statistics(data[k], self.threshold),
            })
        content = {**self.info, "seconds": round(elapsed, 3), "threshold": self.threshold, "samples": samples}
        stats_path = Path(paths["stats"])  # type: ignore[arg-type]
        if stats_path.exists() and not self.overwrite:
            raise FileExistsError(f"'{stats_path}' exists; pass overwrite=True to replace it.")
        tmp = stats_path.with_name(f".{stats_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(content, indent=2, default=str))
        os.replace(tmp, stats_path)
        self._started = None
        return content
