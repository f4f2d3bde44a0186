"""Tests for medgen.transforms.normalize: the methods' normalisations, their inverses and MONAI's Invertd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, DivisiblePadd, Invertd, ScaleIntensityRange

from medgen.physics.mri import ifft2c
from medgen.transforms.intensity import TPDMScaleIntensity, WDMScaleIntensity, kspace_std
from medgen.transforms.normalize import (
    HUWindowNormalize,
    HUWindowNormalized,
    InvertibleKspaceStdNormalize,
    InvertibleKspaceStdNormalized,
    InvertibleScaleIntensityRange,
    InvertibleScaleIntensityRangePercentiles,
    InvertibleScaleIntensityRangePercentilesd,
    TPDMNormalize,
    TPDMNormalized,
    WDMNormalize,
    WDMNormalized,
)

OBLIQUE = torch.tensor(
    [[0.9, 0.12, 0.0, 5.0], [-0.1, 0.88, 0.21, -3.0], [0.02, -0.2, 2.5, 7.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=torch.float64,
)


def _scanner_volume(seed: int = 0, shape=(1, 13, 14, 15)) -> MetaTensor:
    """int16 scanner units (0-4000) with an oblique affine."""
    rng = np.random.default_rng(seed)
    raw = rng.gamma(2.0, 600.0, size=shape).clip(0, 4000).astype(np.int16)
    return MetaTensor(torch.from_numpy(raw), affine=OBLIQUE.clone())


@pytest.mark.parametrize(
    "ours, theirs",
    [(TPDMNormalize(), TPDMScaleIntensity()), (WDMNormalize(), WDMScaleIntensity()),
     (WDMNormalize(renormalize=False), WDMScaleIntensity(renormalize=False)), (TPDMNormalize(1, 99), TPDMScaleIntensity(1, 99))],
)
def test_same_output_as_the_existing_method_transforms(ours, theirs):
    x = _scanner_volume()
    expected = torch.as_tensor(theirs(x.float()))
    out = ours(x)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    torch.testing.assert_close(out.as_tensor(), expected.as_tensor() if isinstance(expected, MetaTensor) else expected,
                               rtol=0, atol=1e-6)
    assert torch.equal(out.affine, OBLIQUE) and len(out.applied_operations) == 1


def test_min_max_round_trip_restores_scanner_units_to_float32_precision():
    x = _scanner_volume()
    forward = TPDMNormalize()
    y = forward(x)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    back = forward.inverse(y)
    scale = float(x.max() - x.min())
    np.testing.assert_allclose(back.numpy(), x.numpy().astype(np.float32), rtol=0, atol=2e-7 * scale)
    assert torch.equal(back.affine, OBLIQUE) and back.applied_operations == []


def test_percentile_window_inverse_is_exact_inside_the_window_and_clips_outside():
    x = _scanner_volume(1).float()
    forward = WDMNormalize()
    y = forward(x)
    window = y.applied_operations[-1]["extra_info"]["windows"][0]
    back = forward.inverse(y)
    inside = (x >= window[0]) & (x <= window[1])
    assert 0.99 < float(inside.float().mean()) < 1.0
    np.testing.assert_allclose(back[inside].numpy(), x[inside].numpy(), rtol=0, atol=3e-7 * window[1])
    np.testing.assert_allclose(back[~inside].numpy().clip(*window), back[~inside].numpy(), rtol=0, atol=1e-3)


def test_channel_wise_windows_per_contrast_round_trip():
    rng = np.random.default_rng(2)
    x = MetaTensor(torch.from_numpy(np.stack([rng.uniform(0, 800, (6, 7, 8)), rng.uniform(100, 3000, (6, 7, 8))])))
    forward = InvertibleScaleIntensityRangePercentiles(0, 100, -1, 1, channel_wise=True, dtype=np.float64)
    y = forward(x)
    for c in range(2):
        assert float(y[c].min()) == -1.0 and float(y[c].max()) == 1.0
    torch.testing.assert_close(forward.inverse(y), x, rtol=1e-12, atol=1e-9)


def test_hu_window_matches_scale_intensity_range_and_is_unclipped_by_default():
    hu = MetaTensor(torch.linspace(-1100.0, 1500.0, 2 * 5 * 6 * 7).reshape(2, 5, 6, 7), affine=OBLIQUE.clone())
    forward = HUWindowNormalize()
    out = forward(hu)
    expected = ScaleIntensityRange(-1000.0, 1000.0, 0.0, 1.0)(hu.as_tensor())
    torch.testing.assert_close(out.as_tensor(), expected, rtol=0, atol=4e-7)  # float32 ulps at ~1
    assert float(out.min()) < 0 and float(out.max()) > 1  # TPDM-CT keeps values outside the window
    torch.testing.assert_close(forward.inverse(out).as_tensor(), hu.as_tensor(), rtol=0, atol=2e-4)
    clipped = HUWindowNormalize(clip=True)(hu)
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0


def test_invertd_undoes_padding_and_normalisation_on_a_network_output():
    """The pipeline a bundle runs: normalise, pad to the network's multiple, "infer", Invertd back to HU."""
    hu = MetaTensor(torch.from_numpy(np.random.default_rng(3).uniform(-1000, 1200, (1, 13, 14, 15)).astype(np.float32)),
                    affine=OBLIQUE.clone())
    pipeline = Compose([HUWindowNormalized("image"), DivisiblePadd("image", k=16)])
    data = pipeline({"image": hu})
    assert data["image"].shape == (1, 16, 16, 16)
    data["pred"] = data["image"] * 1.0  # an identity "network": the output carries the input's record
    restored = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=False)(data)["pred"]
    assert restored.shape == hu.shape
    torch.testing.assert_close(restored.affine, OBLIQUE)
    np.testing.assert_allclose(restored.numpy(), hu.numpy(), rtol=0, atol=2e-4)


@pytest.mark.parametrize("transform", [TPDMNormalized("x"), WDMNormalized("x", renormalize=False),
                                       InvertibleScaleIntensityRangePercentilesd("x", 5, 95, 0, 1, clip=True)])
def test_dictionary_versions_invert(transform):
    x = MetaTensor(torch.from_numpy(np.random.default_rng(4).uniform(10, 500, (1, 6, 6, 6)).astype(np.float32)))
    data = transform({"x": x})
    back = transform.inverse(data)["x"]
    lo, hi = np.percentile(x.numpy(), [transform.normalizer.lower, transform.normalizer.upper])
    inside = (x.numpy() >= lo) & (x.numpy() <= hi)
    np.testing.assert_allclose(back.numpy()[inside], x.numpy()[inside], rtol=0, atol=1e-4)


def test_kspace_std_per_slice_and_inverse_on_the_reconstructed_image():
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 30.0, 0.01])
    kspace = torch.randn(3, 4, 8, 10, dtype=torch.complex64, generator=generator) * scales[:, None, None, None]
    forward = InvertibleKspaceStdNormalize(coeff=1.5, slice_dim=0)
    normalised = forward(MetaTensor(kspace))
    for s in range(3):  # each slice's std is 1 / 1.5, whatever its scale
        assert float(kspace_std(normalised[s].as_tensor())) == pytest.approx(1 / 1.5, rel=1e-5)
    # an image reconstructed from the normalised k-space (S, 1, H, W) scales back with the same divisors
    image = MetaTensor(ifft2c(normalised.as_tensor())[:, :1])
    image.applied_operations = normalised.applied_operations
    torch.testing.assert_close(forward.inverse(image).as_tensor(), ifft2c(kspace)[:, :1], rtol=1e-5, atol=1e-6 * 30)


def test_kspace_dict_version_and_whole_volume_divisor():
    kspace = torch.randn(2, 3, 6, 6, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    data = InvertibleKspaceStdNormalized("k", slice_dim=None)({"k": MetaTensor(kspace)})
    assert float(kspace_std(data["k"].as_tensor())) == pytest.approx(1 / 1.5, rel=1e-5)
    assert len(data["k"].applied_operations[-1]["extra_info"]["divisors"]) == 1


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="a_max must differ"):
        InvertibleScaleIntensityRange(3.0, 3.0)
    with pytest.raises(ValueError, match="b_max must differ"):
        HUWindowNormalize(b_min=1.0, b_max=1.0)
    with pytest.raises(ValueError, match="percentiles"):
        InvertibleScaleIntensityRangePercentiles(50, 10)
    with pytest.raises(ValueError, match="finite number"):
        HUWindowNormalize(hu_min=float("nan"))
    with pytest.raises(TypeError, match="real-valued"):
        TPDMNormalize()(torch.ones(1, 2, 2, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="coeff"):
        InvertibleKspaceStdNormalize(coeff=0.0)
    with pytest.raises(ValueError, match="zero standard deviation"):
        InvertibleKspaceStdNormalize()(torch.zeros(2, 2, 4, 4, dtype=torch.complex64))
    forward = TPDMNormalize()
    y = forward(_scanner_volume())
    wrong = MetaTensor(torch.zeros(2, 13, 14, 15))
    wrong.applied_operations = y.applied_operations
    with pytest.raises(ValueError, match="1 channel"):
        forward.inverse(wrong)


def test_constant_channel_is_shifted_and_round_trips():
    x = MetaTensor(torch.full((1, 3, 3, 3), 250.0))
    forward = TPDMNormalize()
    with pytest.warns(Warning, match="a_min == a_max"):
        y = forward(x)
    assert float(y.abs().max()) == 0.0
    torch.testing.assert_close(forward.inverse(y).as_tensor(), x.as_tensor())


def test_fixed_window_inverse_scale_needs_no_record():
    window = HUWindowNormalize()
    reconstruction = MetaTensor(torch.tensor([[[[0.0, 0.5, 1.0, 1.1]]]]), affine=OBLIQUE.clone())
    hu = window.inverse_scale(reconstruction)
    torch.testing.assert_close(hu.as_tensor(), torch.tensor([[[[-1000.0, 0.0, 1000.0, 1200.0]]]]), rtol=0, atol=2e-4)
    assert torch.equal(hu.affine, OBLIQUE) and hu.applied_operations == []
