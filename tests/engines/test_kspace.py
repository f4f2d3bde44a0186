"""medgen.engines.kspace: HFS-SDE's metrics against scikit-image / closed forms, phantom slices, the .npz sample
format and the slice writer (files, metrics, no overwrite)."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medgen.engines.kspace import (
    KspaceReconstructionWriter,
    hfs_metrics,
    load_kspace_sample,
    phantom_mri_slices,
    save_kspace_sample,
)


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


def test_writer_writes_nifti_png_metrics_and_never_overwrites(tmp_path):
    recon, ref = images(1)
    zero_filled = ref + 1.0
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    source = tmp_path / "input.npz"
    source.write_bytes(b"x")
    writer = KspaceReconstructionWriter(tmp_path / "out", "run", info={"seed": 1}, inputs=[str(source), None])
    writer.check()
    content = writer(recon.to(torch.complex128), reference=ref, baselines={"zero_filled": zero_filled},
                     affine=affine, extra={"note": "x"})
    image = nib.load(tmp_path / "out" / "run.nii.gz")
    assert image.shape == (32, 32, 2)
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_allclose(image.get_fdata()[..., 1], recon[1, 0].abs().numpy(), rtol=1e-6)
    saved = json.loads((tmp_path / "out" / "run_metrics.json").read_text())
    assert saved == json.loads(json.dumps(content))
    assert saved["seed"] == 1 and saved["note"] == "x" and saved["shape"] == [32, 32, 2]
    assert saved["metrics"]["psnr"] == pytest.approx(hfs_metrics(recon, ref)["psnr"])
    assert saved["baselines"]["zero_filled"]["nmse"] == pytest.approx(hfs_metrics(zero_filled, ref)["nmse"])
    assert (tmp_path / "out" / "run.png").stat().st_size > 5000
    with pytest.raises(FileExistsError):
        KspaceReconstructionWriter(tmp_path / "out", "run").check()
    with pytest.raises(ValueError, match="input"):
        KspaceReconstructionWriter(tmp_path, "input.npz"[:-4], inputs=[tmp_path / "input_metrics.json"]).check()
    with pytest.raises(ValueError, match="shaped like"):
        KspaceReconstructionWriter(tmp_path / "other", "run")(recon, reference=ref[:1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run.nii.gz", "run.png", "run_metrics.json"]
