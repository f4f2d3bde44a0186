"""medgen.engines.writers.kspace: the k-space slice writer (files, metrics, no overwrite)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.engines.metrics.kspace import hfs_metrics
from medgen.engines.writers.kspace import KspaceReconstructionWriter


def images(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(2, 1, size, size, generator=g, dtype=torch.float64) * 3
    reconstruction = reference + 0.3 * torch.randn(2, 1, size, size, generator=g, dtype=torch.float64)
    return reconstruction, reference


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
