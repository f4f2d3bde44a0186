"""Writing label-map-conditioned synthesis results: volumes, previews and how well the image follows the labels.

:class:`SemanticSynthesisWriter` writes the high-res volume (and optionally the low-res stage) as NIfTI with the
label maps' affines plus previews (label map | volume, three orthogonal mid-planes), and ``<prefix>_stats.json`` with
the settings, run time, intensity statistics and :func:`~medgen.engines.metrics.semantic.class_intensity_statistics`
of each volume. It refuses to write over existing files (:meth:`SemanticSynthesisWriter.check` says so BEFORE
sampling) or over its inputs, and commits every file together."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.semantic import class_intensity_statistics
from medgen.engines.writers.base import OutputWriter, as_affine, volume_statistics
from medgen.engines.writers.preview import preview_columns

__all__ = ["SemanticSynthesisWriter"]

STAGES = ("highres", "lowres")


class SemanticSynthesisWriter(OutputWriter):
    """Write the result of a label-map-conditioned synthesis (high-res volume, optional low-res stage) and its scores.

    Files: ``<prefix>_highres.nii.gz`` / ``.png``, ``<prefix>_lowres.nii.gz`` / ``.png`` (when a low-res volume is
    given) and ``<prefix>_stats.json`` = ``info`` + ``seconds`` (since :meth:`check`) + per stage ``{"nifti", "png",
    "shape", "affine", "statistics" (:func:`~medgen.engines.writers.volume_statistics`), "classes", "contrasts",
    "expected_correlation"}`` (:func:`class_intensity_statistics` against that stage's label map).

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"sdm_seed0"``.
        info: JSON-serialisable settings recorded in the statistics file.
        class_names, contrasts, expected_values: see :func:`class_intensity_statistics`.
        display_range: intensity window of the PNGs (``None``: each image's min/max).
        overwrite: replace existing outputs (never an input).
        inputs: paths the result was computed from (never written over).
        staging_dir: where the files are staged before they are committed together (see
            :class:`~medgen.engines.writers.base.OutputWriter`).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "synthesis",
        info: Mapping[str, Any] | None = None,
        class_names: Mapping[int, str] | None = None,
        contrasts: Mapping[str, Sequence[Sequence[int]]] | None = None,
        expected_values: Mapping[int, float] | None = None,
        display_range: tuple[float, float] | None = (-1.0, 1.0),
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        staging_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, staging_dir)
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items()}
        self.contrasts = {str(k): [list(g) for g in v] for k, v in (contrasts or {}).items()}
        self.expected_values = (
            None if expected_values is None else {int(k): float(v) for k, v in expected_values.items()}
        )
        self.display_range = (None, None) if display_range is None else tuple(float(v) for v in display_range)

    def paths(self, stages: Sequence[str] = STAGES) -> dict[str, Path]:
        """The files written: ``{"<stage>_nifti", "<stage>_png", ..., "stats"}`` (``stages`` as :meth:`check`'s)."""
        paths = {}
        for stage in stages:
            paths[f"{stage}_nifti"] = self.target(f"_{stage}.nii.gz")
            paths[f"{stage}_png"] = self.target(f"_{stage}.png")
        paths["stats"] = self.target("_stats.json")
        return paths

    def _stage(self, stage: str, volume: Any, labels: Any, paths: Mapping[str, Path]) -> dict[str, Any]:
        data = as_volume(volume, f"{stage} volume").numpy()
        label_map = as_volume(labels, f"{stage} labels").numpy()
        affine = as_affine(None, volume)
        scores = class_intensity_statistics(data, label_map, self.class_names, self.contrasts, self.expected_values)
        array = data.astype(np.float32)
        nifti, png = paths[f"{stage}_nifti"], paths[f"{stage}_png"]
        self.save_nifti(array, nifti, affine)
        classes = max(float(label_map.max()), 1.0)
        columns = preview_columns(array, input=label_map, input_name="label map", input_display=(0.0, classes),
                                  input_cmap="tab10", output_name=f"{self.prefix} {stage}",
                                  display_range=self.display_range)
        self.save_preview(png, columns)
        return {**self.describe(array, affine, nifti=nifti, png=png), "statistics": volume_statistics(array), **scores}

    def __call__(
        self, highres: Any, labels: Any, lowres: Any | None = None, lowres_labels: Any | None = None
    ) -> dict[str, Any]:
        """Write the volumes and the statistics.

        Args:
            highres: the high-res synthetic volume (one volume; a MetaTensor's affine is written).
            labels: its label map (same shape).
            lowres: the low-res stage or ``None``.
            lowres_labels: the low-res label map (required with ``lowres``).

        Returns:
            the content written to the statistics JSON.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False.
            TypeError, ValueError: bad volumes, ``lowres`` without ``lowres_labels``, or a volume holding NaN/Inf
                (nothing written).
            OSError: the disk is full (nothing written).
        """
        if lowres is not None and lowres_labels is None:
            raise ValueError("lowres_labels must be given with lowres.")
        stages = STAGES if lowres is not None else STAGES[:1]
        elapsed = self.seconds_since_check(stages)
        paths = self.paths(stages)
        content: dict[str, Any] = {**self.info, "seconds": round(elapsed, 3)}
        with self.transaction():
            content["highres"] = self._stage("highres", highres, labels, paths)
            if lowres is not None:
                content["lowres"] = self._stage("lowres", lowres, lowres_labels, paths)
            return self.write_summary(paths["stats"], content)
