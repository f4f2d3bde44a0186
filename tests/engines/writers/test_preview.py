"""medgen.engines.writers.preview: the columns input | strongest baseline | output | reference | |error|, scores in
the titles, three mid-planes for volumes and slices for 2D stacks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medgen.engines.writers.preview import format_scores, preview_columns, save_preview_png, strongest_baseline


def test_scores_and_the_strongest_baseline():
    assert format_scores({"psnr": 25.731, "ssim": {"mean": 0.8594}}) == "PSNR 25.73 dB / SSIM 0.859"
    assert format_scores({"psnr": 30.0, "ssim": 0.5}) == "PSNR 30.00 dB / SSIM 0.500" and format_scores(None) == ""
    scores = {"fbp": {"psnr": 25.0}, "sirt": {"psnr": 27.5}}
    assert strongest_baseline({"fbp": 1, "sirt": 2}, scores) == "sirt"
    assert strongest_baseline({"fbp": 1, "sirt": 2}) == "fbp" and strongest_baseline({}) is None


def test_columns_in_order_with_scores_and_the_error():
    rng = np.random.default_rng(0)
    reference = rng.random((8, 8, 8)).astype(np.float32)
    output = reference + 0.1
    columns = preview_columns(output[None], input=rng.random((8, 8, 2)), baselines={"weak": reference * 0,
                              "strong": reference}, reference=reference, scores={"psnr": 20.0},
                              baseline_scores={"weak": {"psnr": 5.0}, "strong": {"psnr": 40.0}},
                              display_range=(0.0, 1.0))
    assert [c.title for c in columns] == ["input", "strong\nPSNR 40.00 dB", "output\nPSNR 20.00 dB", "reference",
                                          "|output - reference|"]
    np.testing.assert_allclose(columns[4].volume, 0.1, atol=1e-6)
    assert (columns[2].vmin, columns[2].vmax) == (0.0, 1.0) and columns[4].vmax == pytest.approx(0.25)
    alone = preview_columns(output)
    assert [c.title for c in alone] == ["output"]


def test_volumes_get_three_planes_and_stacks_one_row_per_slice(tmp_path):
    volume = np.random.default_rng(1).random((8, 8, 8))
    path = save_preview_png(tmp_path / "v.png", preview_columns(volume, reference=volume), title="t")
    assert path.is_file()
    width, height = Image.open(path).size
    stack = save_preview_png(tmp_path / "s.png", preview_columns(volume[..., :2], reference=volume[..., :2]),
                             slice_axis=2)
    assert Image.open(stack).size[1] < height  # two rows instead of three
    saved = []
    save_preview_png(tmp_path / "c.png", preview_columns(volume), save=lambda p, write: (saved.append(p), write(p))[0])
    assert saved == [tmp_path / "c.png"] and (tmp_path / "c.png").is_file()
    with pytest.raises(ValueError, match="columns"):
        save_preview_png(tmp_path / "e.png", [])
    with pytest.raises(ValueError, match=".png"):
        save_preview_png(tmp_path / "e.jpg", preview_columns(volume))
    with pytest.raises(ValueError, match="one volume"):
        preview_columns(np.zeros((2, 2, 4, 4, 4)))
