"""medgen.bundle.edge: BundleEdge's checks in order (outputs, weights, inputs by kind, reference shape, memory,
checkpoint folder), the checked inputs handed on, the steps warning, and finish (summary, checkpoint folder removed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.bundle.edge import BundleEdge
from medgen.bundle.errors import BundleInputError
from medgen.engines.writers.reconstruction import ReconstructionWriter
from tests.bundles.helpers import write_nifti as nifti


def edge(tmp_path, **kwargs):
    options = dict(bundle="demo", output_dir=tmp_path / "out",
                   inputs={"input_path": tmp_path / "in.nii.gz", "reference_path": tmp_path / "ref.nii.gz"},
                   optional=["reference_path"], output_shape=lambda shapes: (1, 4, 4, 8),
                   reference_key="reference_path")
    options.update(kwargs)
    return BundleEdge(**options)


def test_checked_inputs_are_handed_on_as_float32_meta_tensors(tmp_path):
    nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 2), np.float64), np.diag([1.0, 1.0, 4.0, 1.0]))
    nifti(tmp_path / "ref.nii.gz", np.zeros((4, 4, 8), np.int16))
    checked = edge(tmp_path)
    checked.check()
    assert checked.expected_shape == (1, 4, 4, 8)
    data = checked["input_path"]
    assert data.dtype == torch.float32 and data.shape == (1, 4, 4, 2) and float(data.affine[2, 2]) == 4.0
    assert checked["reference_path"].dtype == torch.float32
    unset = edge(tmp_path, inputs={"input_path": tmp_path / "in.nii.gz", "reference_path": ""})
    unset.check()
    assert unset.data["reference_path"] is None


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: nifti(d / "in.nii.gz", np.full((4, 4, 2), np.nan, np.float32)), r"holds 32 NaN value"),
        (lambda d: nifti(d / "in.nii.gz", (np.ones((4, 4, 2)) * (1 + 1j)).astype(np.complex64)), "complex data"),
        (lambda d: nifti(d / "in.nii.gz", np.ones((4, 4, 2), np.float32), np.diag([1.0, 1.0, 0.0, 1.0])),
         r"input_path '.*in.nii.gz': its sform \(voxel-to-world matrix\) is singular"),
        (lambda d: nifti(d / "in.nii.gz", np.ones((4, 4, 2), np.float32), np.diag([np.nan, 1.0, 1.0, 1.0])),
         "its sform .* holds NaN"),
        (lambda d: nifti(d / "ref.nii.gz", np.ones((4, 4, 7), np.float32)),
         r"reference_path '.*ref.nii.gz' has shape \(1, 4, 4, 7\), but this run's output will have shape "
         r"\(1, 4, 4, 8\) \(from input_path \(1, 4, 4, 2\)\)"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, make, match):
    nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 2), np.float32))
    nifti(tmp_path / "ref.nii.gz", np.ones((4, 4, 8), np.float32))
    make(tmp_path)
    with pytest.raises(BundleInputError, match=match):
        edge(tmp_path, checkpoint_dir=tmp_path / "out" / ".ckpt").check()
    assert not (tmp_path / "out").exists()


def test_outputs_weights_memory_and_input_shapes_are_checked(tmp_path):
    nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 2), np.float32))
    nifti(tmp_path / "ref.nii.gz", np.ones((4, 4, 8), np.float32))
    writer = ReconstructionWriter(tmp_path / "out", "demo")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "demo.png").write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match="outputs exist"):
        edge(tmp_path, writer=writer).check()
    with pytest.raises(BundleInputError, match=r"checkpoint '.*model.pt' does not exist .*medgen convert"):
        edge(tmp_path, weights={"checkpoint": tmp_path / "model.pt"}).check()
    with pytest.raises(BundleInputError, match=r"input_path '.*' has shape \(1, 4, 4, 2\); this task takes "
                                               r"\(1, 8, 8, any\)"):
        edge(tmp_path, input_shapes={"input_path": (1, 8, 8, None)}).check()
    estimate = lambda shape, shapes: {"states": 100 * 1024**3, "input": float(np.prod(shapes["input_path"]))}
    with pytest.raises(BundleInputError, match=r"an estimated 100.0 GB .*lower batch_size, or pass --max_memory_gb"):
        edge(tmp_path, memory_estimate=estimate, memory_advice="lower batch_size", max_memory_gb=1).check()
    with pytest.raises(ValueError, match="kinds"):
        edge(tmp_path, kinds={"input_path": "movie"})


def kspace_sample(path, maps=None, kspace=None):
    shape = (2, 3, 8, 8)
    arrays = {"kspace": np.ones(shape, np.complex64) if kspace is None else kspace,
              "sensitivity_maps": np.ones(shape, np.complex64) if maps is None else maps, "affine": np.eye(4)}
    np.savez(path, **arrays)
    return path


def test_kspace_inputs(tmp_path):
    path = kspace_sample(tmp_path / "k.npz")
    checked = BundleEdge("demo", tmp_path / "out", inputs={"input_path": path}, kinds={"input_path": "kspace"},
                         output_shape=lambda shapes: (shapes["input_path"][0], 1, 8, 8))
    checked.check()
    assert checked["input_path"]["kspace"].dtype == torch.complex64 and checked.expected_shape == (2, 1, 8, 8)
    nan = np.ones((2, 3, 8, 8), np.complex64)
    nan[0, 0, 0, 0] = np.nan
    for kwargs, match in ((dict(kspace=nan), r"input_path\['kspace'\] '.*' holds 1 NaN value"),
                          (dict(maps=np.zeros((2, 3, 8, 8), np.complex64)), "coil sensitivities are all zero"),
                          (dict(maps=np.ones((2, 3, 8, 4), np.complex64)), "must have the shape of kspace")):
        kspace_sample(tmp_path / "bad.npz", **kwargs)
        with pytest.raises(BundleInputError, match=match):
            BundleEdge("demo", tmp_path / "out", inputs={"input_path": tmp_path / "bad.npz"},
                       kinds={"input_path": "kspace"}).check()


def test_checkpoint_folder_resume_record_steps_warning_and_finish(tmp_path, capsys):
    nifti(tmp_path / "in.nii.gz", np.ones((4, 4, 2), np.float32))
    nifti(tmp_path / "ref.nii.gz", np.ones((4, 4, 8), np.float32))
    folder = tmp_path / "out" / ".ckpt"
    first = edge(tmp_path, checkpoint_dir=folder, settings={"steps": 4}, steps=4, validated_steps=10,
                 validated_quality="20 dB with 10 steps")
    first.check()
    assert "warning: steps=4 is below the 10 steps this bundle's quality was measured with (20 dB with 10 steps)" \
        in capsys.readouterr().err
    (folder / "sampling_state.pt").write_bytes(b"state")  # an interrupted run
    with pytest.raises(BundleInputError, match=r"steps 4 \(this run: 5\)"):
        edge(tmp_path, checkpoint_dir=folder, settings={"steps": 5}).check()
    again = edge(tmp_path, checkpoint_dir=folder, settings={"steps": 4})
    again.check()
    assert again.resumed and "continuing the interrupted run" in capsys.readouterr().out
    summary = again.finish({"steps": 4, "seed": 0}, files=["out/a.nii.gz"])
    assert summary.startswith("demo: finished in") and "continuing an interrupted run" in summary
    assert not folder.exists()  # a completed run leaves nothing to resume
    kept = edge(tmp_path, checkpoint_dir=folder, settings={"steps": 4}, remove_checkpoint_dir=False)
    kept.check()
    kept.finish()
    assert folder.is_dir()
