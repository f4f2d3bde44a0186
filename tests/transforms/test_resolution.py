"""ZAxisDownsample(d): values from ZAxisAverage, MetaTensor affine/pixdim update, dict measurement key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medgen.physics.zaxis import ZAxisAverage
from medgen.transforms.resolution import ZAxisDownsample, ZAxisDownsampled, ZAxisDownsampleD, ZAxisDownsampleDict


def make_volume(z: int = 10) -> MetaTensor:
    affine = torch.tensor(
        [[0.0, 0.0, 2.5, -10.0], [-1.0, 0.0, 0.0, 5.0], [0.0, 1.2, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
    )
    data = torch.rand(2, 4, 3, z, generator=torch.Generator().manual_seed(0))
    return MetaTensor(data, affine=affine, meta={"filename_or_obj": "vol.nii.gz"})


def world(affine: torch.Tensor, index: list[float]) -> torch.Tensor:
    return affine[:3, :3] @ torch.tensor(index, dtype=torch.float64) + affine[:3, 3]


@pytest.mark.parametrize("remainder", ["crop", "partial"])
def test_values_shape_and_geometry(remainder):
    vol = make_volume(10)
    out = ZAxisDownsample(4, remainder=remainder)(vol)
    expected = ZAxisAverage(4, remainder=remainder)(vol.as_tensor())
    assert isinstance(out, MetaTensor) and out.shape == expected.shape
    torch.testing.assert_close(out.as_tensor(), expected)
    # spacing along z (third spatial axis, world column 2 has length 2.5) times 4, others unchanged
    np.testing.assert_allclose(out.pixdim.numpy(), [1.0, 1.2, 10.0])
    # the centre of output voxel k is the centre of input voxels 4k..4k+3
    torch.testing.assert_close(world(out.affine, [1, 2, 1]), world(vol.affine, [1, 2, 4 + 1.5]))
    torch.testing.assert_close(vol.affine, make_volume().affine)  # input untouched
    assert out.meta["filename_or_obj"] == "vol.nii.gz"
    assert out.meta["zaxis_average"] == {"factor": 4, "axis": 3, "remainder": remainder, "length": 10}


def test_other_axis_and_numpy():
    vol = make_volume(6)
    out = ZAxisDownsample(2, axis=1)(vol)
    assert out.shape == (2, 2, 3, 6)
    np.testing.assert_allclose(out.pixdim.numpy(), [2.0, 1.2, 2.5])
    arr = ZAxisDownsample(3)(np.ones((1, 2, 2, 7), dtype=np.float32))
    assert isinstance(arr, np.ndarray) and arr.shape == (1, 2, 2, 2)


def test_dict_keeps_image_and_writes_measurement():
    assert ZAxisDownsampleD is ZAxisDownsampleDict is ZAxisDownsampled
    vol = make_volume(8)
    out = Compose([ZAxisDownsampled("image", factor=4, measurement_key="lowres")])({"image": vol})
    assert out["image"] is vol
    assert out["lowres"].shape == (2, 4, 3, 2)
    replaced = ZAxisDownsampled(["image"], factor=2)({"image": vol})
    assert replaced["image"].shape == (2, 4, 3, 4)
    assert ZAxisDownsampled("missing", factor=2, allow_missing_keys=True)({"image": vol})["image"] is vol


def test_roundtrip_with_pseudo_inverse():
    vol = make_volume(10)
    out = ZAxisDownsample(4)(vol)
    info = out.meta["zaxis_average"]
    op = ZAxisAverage(info["factor"], axis=info["axis"], remainder=info["remainder"])
    up = op.pseudo_inverse(out.as_tensor(), length=info["length"])
    assert up.shape == vol.shape
    torch.testing.assert_close(op(up), out.as_tensor())


def test_bad_input():
    with pytest.raises(ValueError, match="axis"):
        ZAxisDownsample(2, axis=0)(make_volume())
    with pytest.raises(ValueError, match="factor"):
        ZAxisDownsample(0)
    with pytest.raises(ValueError, match="remainder"):
        ZAxisDownsampled("image", factor=2, remainder="pad")
