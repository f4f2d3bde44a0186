"""Tests for medgen.data.multicontrast: one anatomy in four MR contrasts, with a BraTS-labelled lesion."""

from __future__ import annotations

import numpy as np
import pytest

from medgen.data.multicontrast import (
    BRATS_CONTRASTS,
    BRATS_LESION_LABELS,
    brain_mri_contrasts,
    intracranial_mask,
)
from medgen.data.phantoms import brain_mri_phantom

SHAPE = (40, 44, 36)


@pytest.fixture(scope="module")
def case():
    return brain_mri_contrasts(SHAPE, seed=4, return_labels=True)


def test_t1_without_lesion_is_the_brain_phantom():
    images = brain_mri_contrasts((24, 28, 20), seed=11, lesion=False)
    np.testing.assert_array_equal(images["t1"], brain_mri_phantom((24, 28, 20), seed=11))


def test_contrasts_share_the_anatomy_and_differ_in_tissue_contrast(case):
    images, tissue, lesion = case
    assert list(images) == list(BRATS_CONTRASTS)
    for image in images.values():
        assert image.shape == SHAPE and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    med = {c: {k: float(np.median(images[c][tissue == k])) for k in (3, 4, 5)} for c in images}
    csf, gm, wm = 3, 4, 5
    assert med["t1"][wm] > med["t1"][gm] > med["t1"][csf]  # T1: WM bright, CSF dark
    assert med["t2"][csf] > med["t2"][gm] > med["t2"][wm]  # T2: CSF bright, WM dark
    assert med["flair"][gm] > med["flair"][wm] > med["flair"][csf]  # FLAIR: CSF suppressed
    # same boundaries: the contrasts' edges are where the tissue labels change
    edges = np.abs(np.diff(tissue.astype(int), axis=0)) > 0
    for c in ("t1ce", "t2", "flair"):
        jump = np.abs(np.diff(images[c], axis=0))
        assert jump[edges].mean() > 3 * jump[~edges].mean()


def test_lesion_labels_and_its_contrast(case):
    images, tissue, lesion = case
    assert set(np.unique(lesion)) <= set(BRATS_LESION_LABELS) and (lesion == 2).sum() > 0 and (lesion == 3).sum() > 0
    assert np.all(tissue[lesion > 0] == 7)
    oedema, rim, wm = lesion == 2, lesion == 3, (tissue == 5) & (lesion == 0)
    assert np.median(images["flair"][oedema]) > np.median(images["flair"][wm]) + 0.2  # FLAIR-bright oedema
    assert np.median(images["t1ce"][rim]) > np.median(images["t1"][rim]) + 0.2  # contrast enhancement
    assert brain_mri_contrasts((24, 24, 24), seed=1, lesion=False, return_labels=True)[2].max() == 0


def test_skull_strip_zeroes_everything_outside_the_intracranial_mask():
    images, tissue, _ = brain_mri_contrasts((32, 32, 32), seed=5, skull_strip=True, return_labels=True)
    mask = intracranial_mask(tissue)
    assert 0.1 < mask.mean() < 0.5
    for image in images.values():
        assert np.all(image[~mask] == 0) and image[mask].min() > 0


def test_deterministic_subset_and_errors():
    a = brain_mri_contrasts((16, 16, 16), seed=3, contrasts=("flair", "t2"))
    b = brain_mri_contrasts((16, 16, 16), seed=3)
    assert list(a) == ["flair", "t2"]
    np.testing.assert_array_equal(a["flair"], b["flair"])
    assert np.abs(brain_mri_contrasts((16, 16, 16), seed=4)["t2"] - b["t2"]).mean() > 0.01
    with pytest.raises(ValueError, match="contrasts"):
        brain_mri_contrasts((16, 16, 16), contrasts=("t1", "pd"))
    with pytest.raises(ValueError, match="contrasts"):
        brain_mri_contrasts((16, 16, 16), contrasts=("t1", "t1"))
    with pytest.raises(ValueError, match="noise_std"):
        brain_mri_contrasts((16, 16, 16), noise_std=-1.0)
