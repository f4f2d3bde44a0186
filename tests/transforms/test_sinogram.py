"""ParallelBeamProject(d) / FilteredBackProject(d): values from ParallelBeamCT, meta, volumes, dict keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medgen.physics.ct import ParallelBeamCT
from medgen.transforms.sinogram import (
    FilteredBackProject,
    FilteredBackProjectd,
    FilteredBackProjectD,
    FilteredBackProjectDict,
    ParallelBeamProject,
    ParallelBeamProjectd,
    ParallelBeamProjectD,
    ParallelBeamProjectDict,
)


@pytest.fixture(scope="module")
def image():
    phantom = resize(shepp_logan_phantom(), (32, 32), anti_aliasing=True).astype(np.float32)
    affine = torch.diag(torch.tensor([0.8, 0.8, 1.0, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(phantom)[None], affine=affine, meta={"filename_or_obj": "slice.png"})


def test_project_matches_operator_and_records_geometry(image):
    sino = ParallelBeamProject(preset="tpdm", sparsity=10)(image)
    op = ParallelBeamCT.tpdm(32, sparsity=10)
    assert isinstance(sino, MetaTensor) and sino.shape == (1, *op.sinogram_size) == (1, 46, 18)
    torch.testing.assert_close(sino.as_tensor(), op(image.as_tensor()[None])[0])
    geometry = sino.meta["ct_geometry"]
    torch.testing.assert_close(geometry["angles"], op.angles)
    assert geometry["num_detectors"] == 46 and geometry["image_size"] == (32, 32)
    torch.testing.assert_close(sino.affine, image.affine)
    # FBP rebuilds the geometry from the meta and returns to image space
    rec = FilteredBackProject()(sino)
    assert rec.shape == image.shape and "ct_geometry" not in rec.meta
    torch.testing.assert_close(rec.as_tensor(), op.fbp(sino.as_tensor()[None])[0])
    torch.testing.assert_close(rec.affine, image.affine)
    # the operator rebuilt from the meta is reused while the geometry stays the same
    fbp = FilteredBackProject()
    fbp(sino)
    first = fbp._operator(sino)
    assert fbp._operator(sino) is first
    other = ParallelBeamProject(preset="tpdm", sparsity=20)(image)
    assert fbp._operator(other) is not first and fbp._operator(other).num_angles == 9


def test_angles_operator_and_numpy(image):
    op = ParallelBeamCT(32, 12)
    sino_np = ParallelBeamProject(angles=12)(image.numpy())
    assert isinstance(sino_np, np.ndarray)
    np.testing.assert_allclose(sino_np, op(image.as_tensor()[None])[0].numpy(), rtol=1e-6, atol=1e-5)
    rec = FilteredBackProject(operator=op, filter="hann", clip=(0.0, 1.0))(sino_np)
    assert isinstance(rec, np.ndarray) and rec.min() >= 0 and rec.max() <= 1
    rec2 = FilteredBackProject(image_size=32, angles=12, filter="hann", clip=(0.0, 1.0))(torch.from_numpy(sino_np))
    np.testing.assert_allclose(rec2.numpy(), rec, atol=1e-6)


def test_volume_slicewise():
    vol = MetaTensor(torch.rand(1, 16, 16, 3))
    sino = ParallelBeamProject(angles=8)(vol)
    assert sino.shape == (1, 23, 8, 3)
    op = ParallelBeamCT(16, 8)
    torch.testing.assert_close(sino[..., 1].as_tensor(), op(vol[None, ..., 1].as_tensor())[0])
    rec = FilteredBackProject()(sino)
    assert rec.shape == vol.shape
    # slice_axis counts batched (B, C, D1, D2, D3) axes: 2 = first spatial axis
    sino0 = ParallelBeamProject(angles=8, slice_axis=2)(vol.permute(0, 3, 1, 2))
    assert sino0.shape == (1, 3, 23, 8)
    torch.testing.assert_close(sino0.as_tensor().permute(0, 2, 3, 1), sino.as_tensor())


def test_dict_versions(image):
    assert ParallelBeamProjectD is ParallelBeamProjectDict is ParallelBeamProjectd
    assert FilteredBackProjectD is FilteredBackProjectDict is FilteredBackProjectd
    pipeline = Compose(
        [
            ParallelBeamProjectd("image", measurement_key="sinogram", preset="padis", views=10),
            FilteredBackProjectd("sinogram", output_key="fbp", clip=(0.0, 1.0)),
        ]
    )
    out = pipeline({"image": image})
    assert out["image"] is image
    assert out["sinogram"].shape == (1, 512, 10)
    assert out["fbp"].shape == image.shape
    err = (out["fbp"].as_tensor() - image.as_tensor()).pow(2).mean()
    assert 10 * torch.log10(image.max() ** 2 / err) > 18  # 32 px, 10 views, Hann(0.9): measured ~20 dB
    replaced = ParallelBeamProjectd("image", angles=4)({"image": image})
    assert replaced["image"].shape == (1, 46, 4)


def test_bad_input(image):
    with pytest.raises(ValueError, match="preset"):
        ParallelBeamProject(preset="astra")
    with pytest.raises(ValueError, match="operator, a preset"):
        ParallelBeamProject()
    with pytest.raises(ValueError, match="channel-first"):
        ParallelBeamProject(angles=4)(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="geometry"):
        FilteredBackProject()(torch.zeros(1, 46, 4))
    with pytest.raises(TypeError, match="operator"):
        ParallelBeamProject(operator="ct")
