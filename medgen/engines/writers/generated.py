"""Writing unconditionally generated volumes: a NIfTI and a preview per sample and a JSON of statistics, together."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor

from medgen.engines.writers.base import OutputWriter, as_affine, volume_statistics
from medgen.engines.writers.preview import preview_columns

__all__ = ["GeneratedVolumeWriter"]


class GeneratedVolumeWriter(OutputWriter):
    """Write a batch of generated volumes into ``output_dir``: every file or none, never over a file.

    Files for a batch of ``B`` samples: ``<prefix>_<k>.nii.gz`` and ``<prefix>_<k>.png`` (three orthogonal
    mid-planes) for ``k = 0..B-1`` and
    ``<prefix>_stats.json`` holding ``info``, the elapsed time since :meth:`check` and per-sample statistics
    (:func:`volume_statistics`), shape and affine.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"wdm_seed0"``.
        info: JSON-serialisable settings recorded in the statistics file (seed, steps, checkpoint, ...).
        threshold: voxels above it are counted in ``fraction_above_threshold`` (``None``: not computed).
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: files the outputs must never replace (e.g. a conditioning volume).
        staging_dir: where the files are staged before they are committed together (see
            :class:`~medgen.engines.writers.base.OutputWriter`).

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
        inputs: Sequence[str | os.PathLike | None] = (),
        staging_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, staging_dir)
        self.threshold = threshold

    def paths(self, num_samples: int) -> dict[str, Path | list[Path]]:
        """The files a batch of ``num_samples`` is written to: ``{"nifti": [...], "png": [...], "stats": path}``."""
        return {
            "nifti": [self.target(f"_{k}.nii.gz") for k in range(num_samples)],
            "png": [self.target(f"_{k}.png") for k in range(num_samples)],
            "stats": self.target("_stats.json"),
        }

    def check(self, num_samples: int) -> None:
        """Raise before any long computation if an output of a ``num_samples`` batch exists (and start the clock).

        Raises:
            ValueError: ``num_samples < 1`` or an output is an input.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
        super().check(num_samples)

    def __call__(self, volumes: torch.Tensor) -> dict[str, Any]:
        """Write ``volumes`` ``(B, C, D, H, W)`` (a MetaTensor's affine is written to the NIfTI headers).

        Returns:
            the content written to the statistics JSON.

        Raises:
            ValueError: ``volumes`` is not a 5D tensor, or holds NaN/Inf (nothing written).
            FileExistsError: an output exists and ``overwrite`` is False.
            OSError: the disk is full (nothing written).
        """
        if not isinstance(volumes, torch.Tensor) or volumes.ndim != 5:
            raise ValueError(
                "volumes must be a (B, C, D, H, W) tensor, got "
                f"{tuple(volumes.shape) if isinstance(volumes, torch.Tensor) else type(volumes).__name__}."
            )
        num_samples = int(volumes.shape[0])
        elapsed = self.seconds_since_check(num_samples)
        paths = self.paths(num_samples)
        data = (volumes.as_tensor() if isinstance(volumes, MetaTensor) else volumes).detach().cpu().float().numpy()
        samples = []
        with self.transaction():
            for k in range(num_samples):
                nifti, png = paths["nifti"][k], paths["png"][k]  # type: ignore[index]
                affine = as_affine(None, volumes, k)
                self.save_nifti(data[k], nifti, affine)
                self.save_preview(png, preview_columns(data[k], output_name=f"{self.prefix} #{k}"))
                samples.append({**self.describe(data[k], affine, nifti=nifti, png=png),
                                **volume_statistics(data[k], self.threshold)})
            content = {**self.info, "seconds": round(elapsed, 3), "threshold": self.threshold, "samples": samples}
            return self.write_summary(self.target("_stats.json"), content)
