"""Tests for medgen.transforms.espirit: sigpy's EspiritCalib (stored reference and live), properties, transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medgen.physics.mri import fft2c
from medgen.transforms import EstimateCoilSensitivity, EstimateCoilSensitivityd, espirit_maps
from medgen.transforms.kspace import birdcage_sensitivity_maps

REFERENCE = Path(__file__).parents[1] / "data" / "espirit_sigpy_reference.pt"


@pytest.fixture(scope="module")
def reference():
    # tests/data/make_espirit_reference.py: sigpy 0.1.27 EspiritCalib (defaults) of 6-coil 48 x 48 k-space
    return torch.load(REFERENCE, weights_only=True)


def _coherence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``|<a, b>| / (|a| |b|)`` over the coil axis 0."""
    return (a.conj() * b).sum(0).abs() / (a.norm(dim=0) * b.norm(dim=0)).clamp_min(1e-12)


def _support(maps: torch.Tensor) -> torch.Tensor:
    return maps.abs().sum(0) > 0


def _simulated(size=(40, 56), coils=4, seed=0):
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = ((xx / 0.8) ** 2 + (yy / 0.7) ** 2 < 1).float() * (1 + 0.5 * torch.cos(3 * xx) * torch.sin(2 * yy))
    maps = birdcage_sensitivity_maps((h, w), num_coils=coils).to(torch.complex64)
    noise = torch.randn(coils, h, w, dtype=torch.complex64, generator=torch.Generator().manual_seed(seed))
    return fft2c(maps * image) + 1e-3 * noise, image


@pytest.mark.parametrize("grid_stride", [1, 2])
def test_matches_stored_sigpy_reference(reference, grid_stride):
    maps, eigenvalues = espirit_maps(reference["kspace"], grid_stride=grid_stride, return_eigenvalues=True)
    assert maps.shape == reference["maps"].shape and maps.dtype == torch.complex64
    on_object = _support(reference["maps"]) & (reference["image"] > 0)
    coherence = _coherence(maps, reference["maps"])[on_object]
    # measured: mean 0.99996 (stride 1) / 0.99989 (stride 2), minimum 0.992 (one edge pixel where sigpy's 100 power
    # iterations have not converged)
    assert coherence.mean() > 0.999 and coherence.min() > 0.98
    # the crop (eigenvalue > 0.95) agrees except for interpolated edge pixels
    assert (_support(maps) == _support(reference["maps"])).float().mean() > (0.999 if grid_stride == 1 else 0.99)
    if grid_stride == 1:  # same phase convention (coil 0 real), so the maps agree as vectors
        torch.testing.assert_close(eigenvalues, reference["eigenvalues"][0], atol=1e-3, rtol=0)
        assert (maps - reference["maps"])[:, on_object].abs().median() < 1e-4


@pytest.mark.parametrize("grid_stride", [1, 3])
def test_matches_sigpy_live(grid_stride):
    sigpy_mri = pytest.importorskip("sigpy.mri")
    kspace, image = _simulated()
    options = dict(calib_width=16, kernel_width=5, threshold=0.03, crop=0.9)
    expected = sigpy_mri.app.EspiritCalib(
        kspace.numpy(), calib_width=16, kernel_width=5, thresh=0.03, crop=0.9, show_pbar=False
    ).run()
    expected = torch.from_numpy(np.ascontiguousarray(expected)).to(torch.complex64)
    maps = espirit_maps(kspace, grid_stride=grid_stride, **options)
    on_object = _support(expected) & (image > 0)
    assert _coherence(maps, expected)[on_object].mean() > 0.995


def test_properties_and_slices():
    kspace, image = _simulated(seed=1)
    maps = espirit_maps(kspace, calib_width=16, kernel_width=5)
    support = _support(maps)
    energy = maps.abs().pow(2).sum(0)
    torch.testing.assert_close(energy[support], torch.ones_like(energy[support]), atol=1e-5, rtol=0)
    assert torch.all(maps[:, ~support] == 0)
    assert torch.all(maps[0][support].imag.abs() <= 1e-6) and torch.all(maps[0][support].real >= 0)
    # the support is the object (with a margin of the kernel's blur), not the whole field of view
    assert support[image > 0].float().mean() > 0.99 and support.float().mean() < 0.9
    # extra axes: each (H, W) slice on its own
    other, _ = _simulated(seed=2)
    stacked = torch.stack([kspace, other], dim=1)  # (Nc, 2, H, W)
    both = espirit_maps(stacked, calib_width=16, kernel_width=5)
    torch.testing.assert_close(both[:, 0], maps)
    torch.testing.assert_close(both[:, 1], espirit_maps(other, calib_width=16, kernel_width=5))
    # complex128 in, complex128 out
    assert espirit_maps(kspace.to(torch.complex128), calib_width=16, kernel_width=5).dtype == torch.complex128


def test_estimate_coil_sensitivity_method():
    kspace, _ = _simulated(seed=3)
    default = EstimateCoilSensitivity(acs_lines=16)
    espirit = EstimateCoilSensitivity(acs_lines=16, method="espirit", kernel_width=5, grid_stride=1)
    torch.testing.assert_close(espirit(kspace), espirit_maps(kspace, calib_width=16, kernel_width=5, grid_stride=1))
    assert not torch.equal(default(kspace), espirit(kspace))  # the default stays the ACS/RSS estimate
    d = EstimateCoilSensitivityd("k", acs_lines=20, acs_rows=16, method="espirit", kernel_width=5)({"k": kspace})
    torch.testing.assert_close(d["sensitivity_maps"], espirit_maps(kspace, calib_width=16, kernel_width=5))


def test_bad_inputs():
    kspace, _ = _simulated()
    with pytest.raises(TypeError, match="kspace must be a complex"):
        espirit_maps(kspace.real)
    with pytest.raises(ValueError, match=r"kspace must have shape \(Nc"):
        espirit_maps(kspace[0])
    with pytest.raises(ValueError, match="calib_width must be <="):
        espirit_maps(kspace, calib_width=41)
    with pytest.raises(ValueError, match="kernel_width must be <= calib_width"):
        espirit_maps(kspace, calib_width=8, kernel_width=9)
    with pytest.raises(ValueError, match="crop"):
        espirit_maps(kspace, crop=1.0)
    with pytest.raises(ValueError, match="grid_stride"):
        espirit_maps(kspace, grid_stride=0)
    with pytest.raises(ValueError, match="method"):
        EstimateCoilSensitivity(method="bart")
    with pytest.raises(ValueError, match="threshold"):
        EstimateCoilSensitivity(method="espirit", svd_threshold=2.0)
