"""medgen.engines.writers.base / atomic: the OutputWriter base (names, checks before the run, atomic summary),
atomic writes, affines, panel grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.engines.writers.atomic import write_atomically
from medgen.engines.writers.base import OutputWriter, as_affine, save_panel_grid_png


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
    with pytest.raises(FileExistsError, match="outputs exist"):
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


