"""Writing label-map-conditioned synthesis results: volumes, previews and how well the image follows the labels.

:func:`class_intensity_statistics` measures a synthetic image against the label map it was generated from: the mean
and standard deviation of the image inside every class, named contrasts between groups of classes (difference of
means and Cohen's d, e.g. blood pool vs myocardium) and, given the intended intensity of each class, the Pearson
and Spearman correlation between intended and obtained class means.

:class:`SemanticSynthesisWriter` writes the high-res volume (and optionally the low-res stage) as NIfTI with the
label maps' affines plus PNGs of three orthogonal mid-slices, and ``<prefix>_stats.json`` with the settings,
run time, intensity statistics and :func:`class_intensity_statistics` of each volume. It refuses to write over
existing files (:meth:`SemanticSynthesisWriter.check` says so BEFORE sampling) or over its inputs, and writes every
file atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from medgen.engines.metrics import as_volume
from medgen.engines.writers import OutputWriter, as_affine, volume_statistics

__all__ = ["SemanticSynthesisWriter", "class_intensity_statistics"]

STAGES = ("highres", "lowres")


def class_intensity_statistics(
    image: Any,
    labels: Any,
    class_names: Mapping[int, str] | None = None,
    contrasts: Mapping[str, Sequence[Sequence[int]]] | None = None,
    expected_values: Mapping[int, float] | None = None,
) -> dict[str, Any]:
    """Per-class intensities of a synthetic image and how well they separate the classes.

    Args:
        image: the synthetic volume ``(H, W, D)`` (leading singleton axes allowed).
        labels: its integer label map, same shape.
        class_names: names of the classes (keys of the result's ``classes`` are the class indices as strings).
        contrasts: ``{name: [classes_a, classes_b]}``: for each, ``difference = mean(a) - mean(b)`` over the voxels of
            the two groups and ``cohens_d = difference / pooled std`` (how many within-group standard deviations
            apart the groups are).
        expected_values: intended intensity of each class (e.g. its HU in the training data); the result then holds
            the Pearson and Spearman correlation between the intended values and the obtained class means over the
            classes present in both.

    Returns:
        ``{"classes": {index: {"name", "voxels", "mean", "std"}}, "contrasts": {name: {"classes_a", "classes_b",
        "mean_a", "mean_b", "difference", "cohens_d"}}, "expected_correlation": {"classes", "pearson", "spearman"}}``
        (a contrast with an empty group, or correlation over fewer than 3 classes, gives ``None`` values).

    Raises:
        TypeError, ValueError: inputs that are not one volume each, of the same shape.
    """
    data, classes = as_volume(image, "image").numpy(), as_volume(labels, "labels").numpy()
    if data.shape != classes.shape:
        raise ValueError(f"image {data.shape} and labels {classes.shape} must have the same shape.")
    if not np.array_equal(classes, np.round(classes)):
        raise ValueError("labels must hold integer class indices.")
    classes = classes.astype(np.int64)
    names = dict(class_names or {})
    per_class: dict[str, dict[str, Any]] = {}
    for c in np.unique(classes):
        values = data[classes == c]
        per_class[str(int(c))] = {
            "name": names.get(int(c), str(int(c))),
            "voxels": int(values.size),
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
    result: dict[str, Any] = {"classes": per_class, "contrasts": {}}
    for name, groups in (contrasts or {}).items():
        if len(groups) != 2:
            raise ValueError(f"contrast {name!r} must be two groups of classes, got {groups!r}.")
        a, b = (data[np.isin(classes, [int(c) for c in group])] for group in groups)
        entry: dict[str, Any] = {"classes_a": [int(c) for c in groups[0]], "classes_b": [int(c) for c in groups[1]]}
        if a.size and b.size:
            difference = float(a.mean() - b.mean())
            pooled = np.sqrt(((a.size - 1) * a.var(ddof=1 if a.size > 1 else 0) + (b.size - 1) * b.var(
                ddof=1 if b.size > 1 else 0)) / max(a.size + b.size - 2, 1))
            entry.update(mean_a=float(a.mean()), mean_b=float(b.mean()), difference=difference,
                         cohens_d=float(difference / pooled) if pooled > 0 else None)
        else:
            entry.update(mean_a=None, mean_b=None, difference=None, cohens_d=None)
        result["contrasts"][name] = entry
    if expected_values is not None:
        common = [c for c in sorted(int(k) for k in expected_values) if str(c) in per_class]
        correlation: dict[str, Any] = {"classes": common, "pearson": None, "spearman": None}
        if len(common) >= 3:
            expected = np.array([float(expected_values[c]) for c in common])
            obtained = np.array([per_class[str(c)]["mean"] for c in common])
            if expected.std() > 0 and obtained.std() > 0:
                correlation["pearson"] = float(np.corrcoef(expected, obtained)[0, 1])
                correlation["spearman"] = float(spearmanr(expected, obtained).statistic)
        result["expected_correlation"] = correlation
    return result


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
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs)
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
        affine = as_affine(None, volume)
        scores = class_intensity_statistics(data, labels, self.class_names, self.contrasts, self.expected_values)
        array = data.astype(np.float32)
        entry = self.save_volume(
            array, paths[f"{stage}_nifti"], paths[f"{stage}_png"], affine, f"{self.prefix} {stage}", self.display_range
        )
        return {**entry, "statistics": volume_statistics(array), **scores}

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
            TypeError, ValueError: bad volumes, or ``lowres`` without ``lowres_labels``.
        """
        if lowres is not None and lowres_labels is None:
            raise ValueError("lowres_labels must be given with lowres.")
        stages = STAGES if lowres is not None else STAGES[:1]
        elapsed = self.seconds_since_check(stages)
        paths = self.paths(stages)
        content: dict[str, Any] = {**self.info, "seconds": round(elapsed, 3)}
        content["highres"] = self._stage("highres", highres, labels, paths)
        if lowres is not None:
            content["lowres"] = self._stage("lowres", lowres, lowres_labels, paths)
        return self.write_summary(paths["stats"], content)
