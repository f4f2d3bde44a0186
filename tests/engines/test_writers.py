"""medgen.engines.writers: the OutputWriter base (names, checks before the run, atomic summary), atomic writes,
affines, panel grids, state dicts, and GeneratedVolumeWriter (files, affine, statistics, no overwrite before sampling)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.writers import (
    GeneratedVolumeWriter,
    OutputWriter,
    as_affine,
    save_panel_grid_png,
    save_state_dict,
    volume_statistics,
    write_atomically,
)


def test_writes_nifti_png_and_statistics(tmp_path):
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    data = torch.linspace(0, 1, 2 * 8 * 8 * 6).reshape(2, 1, 8, 8, 6)
    writer = GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed3", info={"seed": 3}, threshold=0.5)
    writer.check(2)
    content = writer(MetaTensor(data, affine=affine))
    for k in range(2):
        image = nib.load(tmp_path / "out" / f"wdm_seed3_{k}.nii.gz")
        assert image.shape == (8, 8, 6)
        np.testing.assert_allclose(image.affine, affine.numpy())
        np.testing.assert_allclose(image.get_fdata(), data[k, 0].numpy(), atol=1e-7)
        assert (tmp_path / "out" / f"wdm_seed3_{k}.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "wdm_seed3_stats.json").read_text())
    assert saved == json.loads(json.dumps(content))
    assert saved["seed"] == 3 and saved["samples"][1]["max"] == pytest.approx(1.0)
    assert saved["samples"][0]["fraction_above_threshold"] == pytest.approx(
        float((data[0] > 0.5).double().mean()))
    assert saved["samples"][0]["mean"] == pytest.approx(float(data[0].double().mean()), abs=1e-6)
    with pytest.raises(FileExistsError, match="outputs exist"):
        GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed3").check(1)
    GeneratedVolumeWriter(tmp_path / "out", prefix="wdm_seed4").check(1)


def test_statistics_and_bad_inputs(tmp_path):
    stats = volume_statistics(np.arange(101, dtype=np.float32))
    assert stats["p01"] == pytest.approx(1.0) and stats["p99"] == pytest.approx(99.0) and stats["std"] > 0
    with pytest.raises(ValueError, match="prefix"):
        GeneratedVolumeWriter(tmp_path, prefix="a/b")
    with pytest.raises(ValueError, match="num_samples"):
        GeneratedVolumeWriter(tmp_path).check(0)
    with pytest.raises(ValueError, match="volumes"):
        GeneratedVolumeWriter(tmp_path)(torch.zeros(4, 4, 4))


class NoteWriter(OutputWriter):
    """The smallest writer: the default one-result paths, only the JSON summary is written."""

    def __call__(self, value: float) -> dict:
        elapsed = self.seconds_since_check()
        return self.write_summary(self.paths()["metrics"], {**self.info, "seconds": elapsed, "value": value})


def test_output_writer_names_checks_and_writes_the_summary(tmp_path):
    source = tmp_path / "run.png"
    source.write_bytes(b"input")
    writer = NoteWriter(tmp_path / "out", "run", info={"seed": 1}, inputs=[str(source), None, ""])
    assert writer.inputs == (str(source),)
    assert writer.target("_x.json") == tmp_path / "out" / "run_x.json"
    assert writer.paths() == {"nifti": tmp_path / "out" / "run.nii.gz", "png": tmp_path / "out" / "run.png",
                              "metrics": tmp_path / "out" / "run_metrics.json"}
    writer.check()
    assert writer._started is not None
    content = writer(2.5)
    assert json.loads((tmp_path / "out" / "run_metrics.json").read_text()) == content
    assert content["seed"] == 1 and content["value"] == 2.5 and content["seconds"] >= 0 and writer._started is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run_metrics.json"]  # no temporary file left
    with pytest.raises(FileExistsError, match="outputs exist"):
        writer.check()
    with pytest.raises(FileExistsError, match="outputs exist"):
        writer(3.0)  # a call without check checks too
    late = NoteWriter(tmp_path / "out", "late")
    late.check()
    (tmp_path / "out" / "late_metrics.json").write_text("written by another run meanwhile")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        late(1.0)
    assert (tmp_path / "out" / "late_metrics.json").read_text() == "written by another run meanwhile"
    NoteWriter(tmp_path / "out", "run", overwrite=True)(3.0)
    assert json.loads((tmp_path / "out" / "run_metrics.json").read_text())["value"] == 3.0
    # an input is never an output, not even with overwrite=True
    with pytest.raises(ValueError, match="input file"):
        NoteWriter(tmp_path, "run", overwrite=True, inputs=[source]).check()
    for prefix in ("", "a/b", None):
        with pytest.raises(ValueError, match="prefix"):
            NoteWriter(tmp_path, prefix)


def test_write_atomically_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.json"
    assert write_atomically(target, lambda tmp: tmp.write_text("1")) == target and target.read_text() == "1"

    def broken(tmp):
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, broken, overwrite=True)
    assert target.read_text() == "1" and [p.name for p in target.parent.iterdir()] == ["a.json"]
    with pytest.raises(FileExistsError):
        write_atomically(target, lambda tmp: tmp.write_text("2"))
    with pytest.raises(ValueError, match="input file"):
        write_atomically(target, lambda tmp: tmp.write_text("2"), overwrite=True, inputs=[str(target)])
    assert target.read_text() == "1"


def test_as_affine_picks_the_given_the_meta_or_the_identity_affine():
    batch = torch.stack([torch.diag(torch.tensor([s, s, s, 1.0], dtype=torch.float64)) for s in (1.0, 2.0)])
    np.testing.assert_array_equal(as_affine(batch, index=1), batch[1].numpy())
    np.testing.assert_array_equal(as_affine(batch[0].float(), index=1), batch[0].numpy())  # one affine serves all
    volume = MetaTensor(torch.zeros(1, 2, 2, 2), affine=batch[1])
    np.testing.assert_array_equal(as_affine(None, volume), batch[1].numpy())
    np.testing.assert_array_equal(as_affine(batch[0], volume), batch[0].numpy())  # an explicit affine wins
    assert as_affine(None, torch.zeros(2, 2, 2)).dtype == np.float64
    np.testing.assert_array_equal(as_affine(), np.eye(4))


def test_save_panel_grid_png_draws_a_grid_and_checks_it(tmp_path):
    rows = [[("a", np.zeros((8, 6))), ("b", np.ones((8, 6)))], [("c", np.eye(8)[:, :6]), ("d", np.zeros((8, 6)))]]
    path = save_panel_grid_png(rows, tmp_path / "grid.png", title="t", vmin=0.0, vmax=1.0, panel_size=(2.0, 2.0))
    height, width = plt_image_size(path)
    assert (width, height) == (400, 440)  # 2 x 2 inch panels, 0.4 inch for the title, 100 dpi
    with pytest.raises(FileExistsError):
        save_panel_grid_png(rows, path)
    with pytest.raises(ValueError, match="same length"):
        save_panel_grid_png([rows[0], rows[1][:1]], tmp_path / "ragged.png")
    with pytest.raises(ValueError, match=".png"):
        save_panel_grid_png(rows, tmp_path / "grid.jpg")


def plt_image_size(path) -> tuple[int, int]:
    from matplotlib.image import imread

    return imread(path).shape[:2]


def test_save_state_dict_unwraps_and_replaces_atomically(tmp_path):
    network = torch.nn.Linear(3, 2)
    path = save_state_dict(torch.nn.DataParallel(network), tmp_path / "models" / "model.pt")
    state = torch.load(path, weights_only=True)
    assert state.keys() == network.state_dict().keys()  # no "module." prefix
    with torch.no_grad():
        network.weight.add_(1.0)
    save_state_dict(network, path)  # the weights of a finished run replace the previous ones
    assert torch.equal(torch.load(path, weights_only=True)["weight"], network.weight)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
    with pytest.raises(TypeError, match="network"):
        save_state_dict({"weight": network.weight}, path)


def test_generated_volume_writer_never_writes_over_an_input(tmp_path):
    condition = tmp_path / "wdm_seed0_0.nii.gz"
    with pytest.raises(ValueError, match="input file"):
        GeneratedVolumeWriter(tmp_path, prefix="wdm_seed0", inputs=[condition], overwrite=True).check(1)
