"""Tests for medgen.transforms.intensity against numpy re-statements of the official loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.transforms.intensity import (
    KspaceStdNormalize,
    KspaceStdNormalized,
    TPDMScaleIntensity,
    TPDMScaleIntensityd,
    WDMScaleIntensity,
    WDMScaleIntensityd,
    WDMScaleIntensityD,
    kspace_std,
)


def _wdm_numpy(x: np.ndarray, renormalize: bool) -> np.ndarray:
    """WDM bratsloader: clip at quantiles 0.001/0.999, min-max, then 2x-1."""
    clipped = np.clip(x, np.quantile(x, 0.001), np.quantile(x, 0.999))
    out = (clipped - np.min(clipped)) / (np.max(clipped) - np.min(clipped))
    return 2 * out - 1 if renormalize else out


def _brain_like(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 150.0, size=shape)
    x[: shape[0] // 4] = 0.0  # background
    x.flat[rng.integers(0, x.size, 20)] = 1e5  # hot outliers the clip removes
    return x


@pytest.mark.parametrize("shape", [(20, 24, 16), (102, 102, 102)])  # torch.quantile path and numpy path (>1M voxels)
@pytest.mark.parametrize("renormalize", [True, False])
def test_wdm_matches_official_loader(shape, renormalize):
    x = _brain_like(shape, 0)
    out = WDMScaleIntensity(renormalize=renormalize)(torch.from_numpy(x)[None].float())
    ref = _wdm_numpy(x, renormalize)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), ref, atol=2e-6)
    lo = -1.0 if renormalize else 0.0
    assert out.min() == lo and out.max() == 1.0


def test_cwdm_channel_wise_and_dict_keeps_meta():
    x = np.stack([_brain_like((12, 10, 8), 1), 7.0 * _brain_like((12, 10, 8), 2)])
    img = MetaTensor(torch.from_numpy(x).float(), affine=torch.diag(torch.tensor([1.0, 2.0, 3.0, 1.0])))
    d = WDMScaleIntensityd("img", renormalize=False)({"img": img})
    for c in range(2):
        np.testing.assert_allclose(d["img"][c].numpy(), _wdm_numpy(x[c], False), atol=2e-6)
    assert isinstance(d["img"], MetaTensor) and torch.equal(d["img"].affine, img.affine)
    assert WDMScaleIntensityD is WDMScaleIntensityd


def test_tpdm_min_max_and_percentile():
    x = _brain_like((1, 16, 16), 3)
    out = TPDMScaleIntensity()(torch.from_numpy(x).float())
    np.testing.assert_allclose(out.numpy(), (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    win = TPDMScaleIntensityd("a", lower=1.0, upper=99.0)({"a": torch.from_numpy(x)})["a"]
    lo, hi = np.percentile(x, 1.0), np.percentile(x, 99.0)
    np.testing.assert_allclose(win.numpy(), np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_hfs_kspace_std_normalisation():
    rng = np.random.default_rng(4)
    k = (rng.normal(size=(4, 32, 32)) + 1j * rng.normal(size=(4, 32, 32))).astype(np.complex64) * 3e-4 + 1e-4
    ref = k / (1.5 * np.std(k.astype(np.complex128)))
    assert abs(kspace_std(torch.from_numpy(k)).item() - np.std(k.astype(np.complex128))) < 1e-9
    out = KspaceStdNormalize()(torch.from_numpy(k))
    assert out.dtype == torch.complex64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert abs(kspace_std(out).item() - 1 / 1.5) < 1e-6


def test_hfs_kspace_std_dict_ref_key_and_factor():
    rng = np.random.default_rng(5)
    k = torch.from_numpy(rng.normal(size=(2, 8, 8)) + 1j * rng.normal(size=(2, 8, 8)))
    image = torch.from_numpy(rng.normal(size=(1, 8, 8)))
    d = KspaceStdNormalized(["kspace", "image"], ref_key="kspace", factor_key="scale")({"kspace": k, "image": image})
    scale = 1.5 * np.std(k.numpy())
    assert abs(d["scale"].item() - scale) < 1e-12
    np.testing.assert_allclose(d["image"].numpy(), image.numpy() / scale, rtol=1e-12)
    np.testing.assert_allclose(d["kspace"].numpy(), k.numpy() / scale, rtol=1e-12)


def test_hfs_kspace_std_errors():
    with pytest.raises(ValueError, match="coeff"):
        KspaceStdNormalize(coeff=0)
    with pytest.raises(ValueError, match="zero standard deviation"):
        KspaceStdNormalize()(torch.ones(2, 4, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="floating-point or complex"):
        KspaceStdNormalize()(torch.ones(2, 4, 4, dtype=torch.int64))
