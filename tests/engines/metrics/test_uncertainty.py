"""medgen.engines.metrics.uncertainty: coverage and std-error correlation on hand-made values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.engines.metrics import uncertainty_metrics


def test_coverage_and_correlation_of_known_values():
    reference = torch.zeros(1, 1, 2, 2)
    mean = torch.tensor([[[[0.1, -0.5], [1.0, 0.0]]]])  # errors 0.1, 0.5, 1.0, 0.0
    std = torch.tensor([[[[0.1, 0.2, 0.4, 0.3]]]]).reshape(1, 1, 2, 2)  # 2 std: 0.2, 0.4, 0.8, 0.6
    scores = uncertainty_metrics(mean, std, reference)
    assert scores["coverage"] == pytest.approx(0.5)  # 0.1 <= 0.2 and 0.0 <= 0.6 only
    expected = np.corrcoef([0.1, 0.2, 0.4, 0.3], [0.1, 0.5, 1.0, 0.0])[0, 1]
    assert scores["std_error_correlation"] == pytest.approx(expected, abs=1e-6)  # float32 inputs
    assert scores["mean_std"] == pytest.approx(0.25) and scores["mean_abs_error"] == pytest.approx(0.4)
    assert uncertainty_metrics(mean, std, reference, k=3.0)["coverage"] == 1.0


def test_complex_mean_against_a_real_reference_uses_magnitudes_and_a_constant_std_has_no_correlation():
    mean = torch.tensor([3 + 4j, 1j], dtype=torch.complex64)
    scores = uncertainty_metrics(mean, torch.ones(2), torch.tensor([5.0, 0.0]))
    assert scores["mean_abs_error"] == pytest.approx(0.5) and scores["std_error_correlation"] == 0.0
    assert scores["coverage"] == 1.0


def test_bad_inputs_are_named():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="std \\(3,\\) and reference \\(4,\\)"):
        uncertainty_metrics(x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="std must be >= 0"):
        uncertainty_metrics(x, -torch.ones(4), x)
    with pytest.raises(TypeError, match="std must be real"):
        uncertainty_metrics(x, torch.zeros(4, dtype=torch.complex64), x)
    with pytest.raises(ValueError, match="k must be > 0"):
        uncertainty_metrics(x, x, x, k=0)
