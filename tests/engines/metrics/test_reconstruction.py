"""medgen.engines.metrics.reconstruction: TPDM's metrics against scikit-image, argument checks."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgen.engines.metrics.reconstruction import PLANE_NAMES, reconstruction_metrics


def volumes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.random((16, 14, 12))
    return np.clip(reference + 0.1 * rng.standard_normal(reference.shape), -0.2, 1.2), reference


def test_metrics_match_scikit_image():
    volume, reference = volumes()
    metrics = reconstruction_metrics(volume, reference)
    clipped = np.clip(volume, 0, 1)
    assert metrics["psnr"] == pytest.approx(peak_signal_noise_ratio(reference, clipped, data_range=1.0), abs=1e-10)
    assert metrics["mse"] == pytest.approx(np.mean((clipped - reference) ** 2))
    for axis, plane in enumerate(PLANE_NAMES):
        expected = np.mean([
            structural_similarity(np.take(reference, k, axis), np.take(clipped, k, axis), data_range=1.0,
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            for k in range(reference.shape[axis])
        ])
        assert metrics["ssim"][plane] == pytest.approx(expected, abs=1e-6)
    assert metrics["ssim"]["mean"] == pytest.approx(np.mean([metrics["ssim"][p] for p in PLANE_NAMES]))
    assert reconstruction_metrics(reference, reference)["ssim"]["mean"] == pytest.approx(1.0)


def test_metric_arguments_are_checked():
    volume, reference = volumes()
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_metrics(volume[:-1], reference)
    with pytest.raises(ValueError, match="win_size"):
        reconstruction_metrics(volume[:, :, :8], reference[:, :, :8])
    with pytest.raises(TypeError, match="real"):
        reconstruction_metrics(torch.zeros(12, 12, 12, dtype=torch.complex64), reference)
    with pytest.raises(ValueError, match="one volume"):
        reconstruction_metrics(np.zeros((2, 12, 12, 12)), reference)

