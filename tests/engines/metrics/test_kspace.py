"""medgen.engines.metrics.kspace: HFS-SDE's metrics against closed forms and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medgen.engines.metrics.kspace import hfs_metrics


def images(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(2, 1, size, size, generator=g, dtype=torch.float64) * 3
    reconstruction = reference + 0.3 * torch.randn(2, 1, size, size, generator=g, dtype=torch.float64)
    return reconstruction, reference


def test_hfs_metrics_match_closed_forms_and_skimage():
    recon, ref = images()
    phase = torch.exp(1j * torch.rand(ref.shape, dtype=torch.float64))
    metrics = hfs_metrics(recon * phase, ref)  # magnitudes are scored
    for k in range(2):
        r, l = recon[k, 0].abs().numpy(), ref[k, 0].numpy()
        psnr = 10 * math.log10((l.max() - l.min()) ** 2 / np.mean((r - l) ** 2))
        data_range = max(r.max() - r.min(), l.max() - l.min())
        ssim = structural_similarity(r, l, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
        rn, ln = r / r.max(), l / l.max()
        nmse = np.sum((rn - ln) ** 2) / np.sum(ln**2)
        assert metrics["per_slice"]["psnr"][k] == pytest.approx(psnr, rel=1e-10)
        assert metrics["per_slice"]["ssim"][k] == pytest.approx(ssim, abs=1e-5)
        assert metrics["per_slice"]["nmse"][k] == pytest.approx(nmse, rel=1e-10)
    assert metrics["psnr"] == pytest.approx(np.mean(metrics["per_slice"]["psnr"]))
    scaled = hfs_metrics(recon * 7.0, ref * 7.0)  # scale invariance (std-normalised vs input units)
    for key in ("psnr", "ssim", "nmse"):
        assert scaled[key] == pytest.approx(hfs_metrics(recon, ref)[key], rel=1e-6)


def test_hfs_metrics_reject_bad_shapes():
    recon, ref = images()
    with pytest.raises(ValueError, match="same shape"):
        hfs_metrics(recon, ref[:1])
    with pytest.raises(ValueError, match="win_size"):
        hfs_metrics(recon[..., :8, :8], ref[..., :8, :8])
    with pytest.raises(TypeError, match="reconstruction"):
        hfs_metrics([1, 2], ref)

