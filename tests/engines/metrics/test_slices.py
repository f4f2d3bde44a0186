"""medgen.engines.metrics.slices: PaDIS' slice metrics against scikit-image, argument checks."""

from __future__ import annotations


import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgen.engines.metrics.slices import slice_metrics


def stack(seed: int, shape=(32, 32, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.clip(np.linspace(0, 1, shape[0])[:, None, None] + 0 * np.zeros(shape), 0, 1)
    return np.clip(base + 0.1 * rng.standard_normal(shape), -0.1, 1.1).astype(np.float64)


def test_slice_metrics_match_scikit_image():
    x, ref = stack(0), stack(1)
    m = slice_metrics(x, ref, slice_axis=-1)
    xc, rc = np.clip(x, 0, 1), np.clip(ref, 0, 1)
    assert m["psnr"] == pytest.approx(peak_signal_noise_ratio(rc, xc, data_range=1.0), abs=1e-6)
    for k in range(3):
        assert m["per_slice"]["psnr"][k] == pytest.approx(
            peak_signal_noise_ratio(rc[..., k], xc[..., k], data_range=1.0), abs=1e-6)
        oracle = structural_similarity(rc[..., k], xc[..., k], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False)
        assert m["per_slice"]["ssim"][k] == pytest.approx(oracle, abs=2e-3)  # MONAI crops the border, skimage too
    assert m["ssim"] == pytest.approx(np.mean(m["per_slice"]["ssim"]))
    assert m["mse"] == pytest.approx(np.mean((xc - rc) ** 2))
    # slices along axis 0 are the same images transposed into another place
    moved = slice_metrics(np.moveaxis(x, -1, 0), np.moveaxis(ref, -1, 0), slice_axis=0)
    assert moved["per_slice"]["ssim"] == pytest.approx(m["per_slice"]["ssim"])


def test_slice_metrics_errors():
    with pytest.raises(ValueError, match="same shape"):
        slice_metrics(np.zeros((32, 32, 1)), np.zeros((32, 32, 2)))
    with pytest.raises(ValueError, match="win_size"):
        slice_metrics(np.zeros((8, 32, 1)), np.zeros((8, 32, 1)))
    with pytest.raises(ValueError, match="slice_axis"):
        slice_metrics(np.zeros((32, 32, 1)), np.zeros((32, 32, 1)), slice_axis=3)

