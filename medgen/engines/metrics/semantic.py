"""How well a label-conditioned synthetic image follows its label map: per-class intensities and contrasts.

:func:`class_intensity_statistics` measures a synthetic image against the label map it was generated from: the mean
and standard deviation of the image inside every class, named contrasts between groups of classes (difference of
means and Cohen's d, e.g. blood pool vs myocardium) and, given the intended intensity of each class, the Pearson
and Spearman correlation between intended and obtained class means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from medgen.engines.metrics.base import as_volume

__all__ = ["class_intensity_statistics"]


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

