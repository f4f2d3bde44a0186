"""medgen.engines.metrics: input conversion, argument checks and the MONAI PSNR/SSIM calls against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgen.engines.metrics.base import (
    as_magnitude_slices,
    as_volume,
    check_same_shape,
    check_ssim_window,
    clip_pair,
    error_statistics,
    psnr,
    slices_along,
    ssim_2d,
)


def test_as_volume_drops_singleton_axes_and_meta_and_accepts_real_dtypes():
    data = torch.arange(24, dtype=torch.int64).reshape(1, 1, 2, 3, 4)
    volume = as_volume(MetaTensor(data, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))), "x")
    assert type(volume) is torch.Tensor and volume.dtype == torch.float64 and volume.shape == (2, 3, 4)
    assert torch.equal(volume, data[0, 0].double())
    reversed_view = np.arange(24.0).reshape(2, 3, 4)[::-1]  # negative strides are copied, not rejected
    assert torch.equal(as_volume(reversed_view, "x"), torch.from_numpy(reversed_view.copy()))
    with pytest.raises(TypeError, match="x must be real"):
        as_volume(torch.zeros(2, 2, 2, dtype=torch.complex64), "x")
    with pytest.raises(ValueError, match="labels must be one volume"):
        as_volume(np.zeros((2, 4, 4, 4)), "labels")
    with pytest.raises(TypeError, match="numpy array"):
        as_volume([[[1.0]]], "x")


def test_as_magnitude_slices_shapes():
    image = torch.randn(4, 5, dtype=torch.complex64)
    assert torch.equal(as_magnitude_slices(image, "x"), image.abs().double()[None, None])
    assert as_magnitude_slices(np.zeros((3, 4, 5)), "x").shape == (3, 1, 4, 5)
    with pytest.raises(ValueError, match=r"x must be shaped \(H, W\)"):
        as_magnitude_slices(torch.zeros(3, 2, 4, 5), "x")


def test_checks_name_the_argument():
    check_same_shape(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"reconstruction \(2, 3\) and reference \(3, 2\) must have the same shape"):
        check_same_shape(torch.zeros(2, 3), torch.zeros(3, 2), "reconstruction")
    check_ssim_window((11, 20), 11)
    with pytest.raises(ValueError, match=r"images must be at least win_size=11 .* got \(10, 20\)"):
        check_ssim_window((10, 20), 11, "images")


def test_psnr_ssim_and_errors_match_scikit_image_and_numpy():
    rng = np.random.default_rng(0)
    reference = rng.random((3, 24, 20))
    image = reference + 0.05 * rng.standard_normal(reference.shape)
    x, ref = clip_pair(torch.from_numpy(image), torch.from_numpy(reference), (0.0, 1.0))
    clipped = np.clip(image, 0, 1)
    assert torch.equal(x, torch.from_numpy(clipped))
    assert clip_pair(x, ref, None)[0] is x
    assert float(psnr(x[None, None], ref[None, None], 1.0)) == pytest.approx(
        peak_signal_noise_ratio(reference, clipped, data_range=1.0), abs=1e-10)
    per_slice = psnr(slices_along(x, 0), slices_along(ref, 0), 1.0)
    assert per_slice.shape == (3, 1)
    ssim = ssim_2d(slices_along(x, 0), slices_along(ref, 0), 2.0, win_size=7)
    assert ssim.shape == (3, 1)
    for k in range(3):
        assert float(per_slice[k, 0]) == pytest.approx(
            peak_signal_noise_ratio(reference[k], clipped[k], data_range=1.0), abs=1e-10)
        oracle = structural_similarity(reference[k], clipped[k], data_range=2.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, win_size=7)
        assert float(ssim[k, 0]) == pytest.approx(oracle, abs=2e-3)  # MONAI and skimage crop the border differently
    assert slices_along(x, 2).shape == (20, 1, 3, 24) and torch.equal(slices_along(x, 2)[5, 0], x[:, :, 5])
    errors = error_statistics(x, ref)
    assert errors["mse"] == pytest.approx(np.mean((clipped - reference) ** 2), rel=1e-12)
    assert errors["mae"] == pytest.approx(np.mean(np.abs(clipped - reference)), rel=1e-12)
