"""Tests for medgen.engines.metrics.synthesis: metrics inside a brain mask and the linear baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medgen.engines.metrics.synthesis import LinearSynthesisBaseline, masked_synthesis_metrics


def _pair(seed=0, shape=(16, 18, 20)):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(0.2, 1.0, shape)
    volume = np.clip(reference + rng.normal(0, 0.05, shape), 0, 1)
    mask = np.zeros(shape, bool)
    mask[3:13, 4:15, 2:17] = True
    return volume, reference, mask


def test_psnr_mse_mae_only_count_the_mask():
    volume, reference, mask = _pair()
    outside = volume.copy()
    outside[~mask] = 0.0  # what happens outside the brain does not change the voxel-wise scores
    a = masked_synthesis_metrics(volume, reference, mask)
    b = masked_synthesis_metrics(outside, reference, mask)
    assert all(a[k] == b[k] for k in ("psnr", "mse", "mae", "voxels")) and a["voxels"] == int(mask.sum())
    mse = float(np.mean((volume[mask] - reference[mask]) ** 2))
    assert a["mse"] == pytest.approx(mse, rel=1e-12)
    assert a["psnr"] == pytest.approx(-10 * math.log10(mse), rel=1e-12)
    assert a["mae"] == pytest.approx(float(np.mean(np.abs(volume[mask] - reference[mask]))), rel=1e-12)


def test_ssim_over_the_full_mask_is_skimage_3d_gaussian_ssim():
    volume, reference, _ = _pair(1)
    everywhere = np.ones_like(volume, bool)
    ours = masked_synthesis_metrics(volume, reference, everywhere, win_size=7)["ssim"]
    theirs = structural_similarity(volume, reference, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, win_size=7)
    # skimage averages over the map cropped by (win - 1) / 2, as the valid-window map here; its window is truncated
    # at 3.5 sigma (7 voxels) like MONAI's 7-voxel kernel
    assert ours == pytest.approx(theirs, abs=2e-3)
    assert masked_synthesis_metrics(reference, reference, everywhere)["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_linear_baseline_recovers_an_affine_contrast_mapping():
    rng = np.random.default_rng(2)
    conditions = [rng.uniform(0.1, 1, (3, 6, 6, 6)) for _ in range(3)]
    weights, bias = np.array([0.5, -0.2, 0.9]), 0.1
    targets = [np.tensordot(weights, c, axes=1) + bias for c in conditions]
    baseline = LinearSynthesisBaseline(conditions, targets)
    np.testing.assert_allclose(baseline.coefficients.numpy(), [*weights, bias], atol=1e-10)
    test = rng.uniform(0.1, 1, (3, 6, 6, 6))
    test[0, :2] = 0.0  # outside the brain: the first condition is 0
    out = baseline(torch.from_numpy(test))
    assert torch.all(out[:2] == 0)
    np.testing.assert_allclose(out[2:].numpy(), (np.tensordot(weights, test, axes=1) + bias)[2:], atol=1e-10)
    with pytest.raises(ValueError, match="conditions"):
        baseline(torch.zeros(2, 6, 6, 6))
    with pytest.raises(ValueError, match="one length"):
        LinearSynthesisBaseline(conditions, targets[:2])


def test_errors():
    volume, reference, mask = _pair()
    with pytest.raises(ValueError, match="empty"):
        masked_synthesis_metrics(volume, reference, np.zeros_like(mask))
    with pytest.raises(ValueError, match="win_size"):
        masked_synthesis_metrics(volume, reference, mask, win_size=8)
    with pytest.raises(ValueError, match="same shape"):
        masked_synthesis_metrics(volume, reference[:-1], mask)
