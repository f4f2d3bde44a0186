"""medgen.engines.metrics.semantic: class intensity statistics against numpy."""

from __future__ import annotations


import numpy as np
import pytest

from medgen.engines.metrics.semantic import class_intensity_statistics


def test_class_intensity_statistics_against_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (6, 6, 6))
    expected = {1: 10.0, 2: 30.0, 3: 20.0}
    image = np.choose(labels, [0.0, 10.0, 30.0, 20.0]) + rng.normal(0, 1, labels.shape)
    stats = class_intensity_statistics(image, labels[None], {1: "one"}, {"a_vs_b": [[1, 2], [3]]}, expected)
    assert stats["classes"]["1"]["name"] == "one" and stats["classes"]["2"]["name"] == "2"
    for c in range(4):
        assert stats["classes"][str(c)]["mean"] == pytest.approx(image[labels == c].mean(), abs=1e-12)
        assert stats["classes"][str(c)]["voxels"] == int((labels == c).sum())
    a, b = image[np.isin(labels, [1, 2])], image[labels == 3]
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert stats["contrasts"]["a_vs_b"]["cohens_d"] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-12)
    assert stats["expected_correlation"]["spearman"] == pytest.approx(1.0)
    assert stats["expected_correlation"]["pearson"] > 0.99

