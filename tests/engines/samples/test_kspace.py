"""medgen.engines.samples.kspace: phantom slices and the .npz sample format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medgen.engines.samples.kspace import load_kspace_sample, phantom_mri_slices, save_kspace_sample


def test_phantom_slices_have_unit_magnitude_range_and_smooth_phase():
    slices = phantom_mri_slices([3], image_size=32, slices_per_volume=2, depth=16)
    assert len(slices) == 2 and all(s.shape == (1, 32, 32) and s.dtype == torch.complex64 for s in slices)
    again = phantom_mri_slices([3], image_size=32, slices_per_volume=2, depth=16)
    assert all(torch.equal(a, b) for a, b in zip(slices, again))
    for image in slices:
        assert 0 <= float(image.abs().min()) and float(image.abs().max()) <= 1.0 + 1e-6
        phase = torch.angle(image[0].to(torch.complex128))
        inside = image[0].abs() > 0.3
        # the quadratic phase changes by at most 6 * (pi / 2) * (4 / 31) per pixel in x or y (|d(x^2)| <= 2 dx)
        step = torch.remainder(phase[1:] - phase[:-1] + math.pi, 2 * math.pi) - math.pi
        assert float(step[inside[1:] & inside[:-1]].abs().max()) < 6 * math.pi / 2 * 4 / 31
    with pytest.raises(ValueError, match="slice_range"):
        phantom_mri_slices([0], slice_range=(0.8, 0.2))
    with pytest.raises(ValueError, match="image_size"):
        phantom_mri_slices([0], image_size=4)


def test_npz_round_trip_and_missing_keys(tmp_path):
    kspace = torch.randn(2, 3, 8, 8, dtype=torch.complex64)
    path = save_kspace_sample(tmp_path / "s.npz", kspace=kspace, affine=np.eye(4))
    data = load_kspace_sample(path, ["kspace"])
    assert torch.equal(data["kspace"], kspace) and data["affine"].dtype == torch.float64
    with pytest.raises(FileExistsError):
        save_kspace_sample(path, kspace=kspace)
    with pytest.raises(KeyError, match="sensitivity_maps"):
        load_kspace_sample(path)
    with pytest.raises(FileNotFoundError):
        load_kspace_sample(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="empty"):
        load_kspace_sample("")

