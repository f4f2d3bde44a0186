"""Tests for the procedural phantoms (medgen.data.phantoms, medgen.data.coronary, medgen.data.shapes)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medgen.data.coronary import CTA_CLASSES, CTA_HU, coronary_cta_phantom
from medgen.data.phantoms import BODY_CT_LABELS, BRAIN_LABELS, body_ct_phantom, brain_mri_phantom, normalize_hu
from medgen.data.shapes import Grid, TubePainter, smooth_field

SHAPE = (48, 56, 40)  # non-cubic on purpose


@pytest.fixture(scope="module")
def brain():
    return brain_mri_phantom(SHAPE, seed=0, return_labels=True)


@pytest.fixture(scope="module")
def body():
    return body_ct_phantom(SHAPE, seed=0, return_labels=True)


@pytest.fixture(scope="module")
def cta64():
    return coronary_cta_phantom((64, 64, 64), seed=0)


# ---------------------------------------------------------------------------------------------------------------
# brain MRI
# ---------------------------------------------------------------------------------------------------------------
def test_brain_deterministic_and_seed_dependent(brain):
    image, labels = brain
    again, labels_again = brain_mri_phantom(SHAPE, seed=0, return_labels=True)
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    other, other_labels = brain_mri_phantom(SHAPE, seed=1, return_labels=True)
    assert np.abs(other - image).mean() > 0.02
    # anatomy differs, not only the noise
    assert (other_labels != labels).mean() > 0.05
    gen = brain_mri_phantom(SHAPE, seed=np.random.default_rng(0))
    assert np.array_equal(gen, image)


def test_brain_range_shape_and_tissue_contrast(brain):
    image, labels = brain
    assert image.shape == SHAPE and image.dtype == np.float32 and labels.dtype == np.uint8
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert set(np.unique(labels)) == set(BRAIN_LABELS)
    med = {k: float(np.median(image[labels == k])) for k in BRAIN_LABELS}
    # T1 contrast: WM > deep GM > GM > CSF > background; skull dark, scalp bright
    assert med[5] > med[6] > med[4] > med[3] > med[0]
    assert med[2] < med[4] and med[1] > med[4]
    fractions = np.bincount(labels.ravel(), minlength=7) / labels.size
    assert 0.03 < fractions[4] < 0.25 and 0.03 < fractions[5] < 0.25  # GM and WM
    assert fractions[6] < 0.02  # small deep nuclei


def test_brain_cortex_is_folded():
    # sulci: CSF reaches into the brain below the outer cortical surface, so GM is in contact with CSF at many depths
    _, labels = brain_mri_phantom((64, 64, 64), seed=3, return_labels=True)
    gm = labels == 4
    csf_next_to_gm = 0
    for axis in range(3):
        a, b = np.take(labels, range(1, 64), axis=axis), np.take(labels, range(63), axis=axis)
        csf_next_to_gm += np.sum((a == 3) & (b == 4)) + np.sum((a == 4) & (b == 3))
    assert csf_next_to_gm > 0.2 * gm.sum()


def test_brain_ventricle_size_varies_across_seeds():
    sizes = []
    for seed in range(4):
        _, labels = brain_mri_phantom((32, 32, 32), seed=seed, noise_std=0.0, return_labels=True)
        centre = labels[10:22, 10:22, 12:22]
        sizes.append(np.sum(centre == 3))
    assert max(sizes) > 1.5 * max(min(sizes), 1)


# ---------------------------------------------------------------------------------------------------------------
# body CT
# ---------------------------------------------------------------------------------------------------------------
def test_body_ct_hu_values(body):
    hu, labels = body
    assert hu.shape == SHAPE and hu.dtype == np.float32
    assert set(np.unique(labels)) == set(BODY_CT_LABELS)
    med = {k: float(np.median(hu[labels == k])) for k in BODY_CT_LABELS}
    assert abs(med[0] + 1000) < 40
    assert -140 < med[1] < -60
    assert 20 < med[2] < 70
    assert -900 < med[3] < -600
    assert 45 < med[4] < 75
    assert med[8] > 300 and np.percentile(hu[labels == 8], 95) > 700
    assert hu.max() > 900  # cortical shell
    assert np.array_equal(hu, body_ct_phantom(SHAPE, seed=0))
    assert np.abs(body_ct_phantom(SHAPE, seed=1) - hu).mean() > 20


def test_normalize_hu():
    hu = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    np.testing.assert_allclose(normalize_hu(hu), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(normalize_hu(hu, out_range=(-1.0, 1.0)), [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(normalize_hu(hu, clip=False), [-0.5, 0, 0.5, 1, 2])
    with pytest.raises(ValueError, match="hu_max must be > hu_min"):
        normalize_hu(hu, 10.0, 10.0)


# ---------------------------------------------------------------------------------------------------------------
# coronary CTA
# ---------------------------------------------------------------------------------------------------------------
def test_cta_classes_present_and_plausible(cta64):
    label = cta64["label"]
    assert label.dtype == np.uint8 and label.shape == (64, 64, 64)
    assert set(np.unique(label)) == set(range(9)) == set(CTA_CLASSES)
    frac = np.bincount(label.ravel(), minlength=9) / label.size
    assert frac[0] > 0.8
    assert frac[5] > frac[8] and frac[1] > frac[8] and frac[6] > frac[8]
    assert 0 < frac[8] < 0.005  # coronaries are thin
    # thin: most coronary voxels are within ~1.5 voxels of a non-coronary voxel
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(label == 8)
    assert np.percentile(depth[label == 8], 90) <= 2.0
    # the myocardium touches the LV blood pool
    lv_shell = np.zeros_like(label, dtype=bool)
    lv_shell[1:] |= label[:-1] == 1
    assert np.any(label[lv_shell] == 5)


def test_cta_image_intensities(cta64):
    label, hu, image = cta64["label"], cta64["image_hu"], cta64["image"]
    assert hu.dtype == image.dtype == np.float32
    assert image.min() == pytest.approx(-1.0) and image.max() == pytest.approx(1.0)
    assert abs(np.median(hu[label == 1]) - CTA_HU[1]) < 60  # contrast-enhanced left-heart blood is bright
    assert np.median(hu[label == 6]) > 300  # the aorta too (a tube: partial volume at 64^3)
    assert np.median(hu[label == 5]) < np.median(hu[label == 1]) - 200  # myocardium mid
    assert np.median(hu[label == 0]) < 0  # background dark
    assert np.corrcoef(image.ravel(), hu.ravel())[0, 1] > 0.999


def test_cta_determinism_and_variation(cta64):
    again = coronary_cta_phantom((64, 64, 64), seed=0)
    for key in ("label", "image_hu", "image"):
        assert np.array_equal(again[key], cta64[key])
    other = coronary_cta_phantom((64, 64, 64), seed=5)
    assert (other["label"] != cta64["label"]).mean() > 0.01


def test_cta_any_shape():
    d = coronary_cta_phantom((40, 48, 32), seed=2)
    assert d["label"].shape == d["image"].shape == (40, 48, 32)
    assert set(np.unique(d["label"])) == set(range(9))


# ---------------------------------------------------------------------------------------------------------------
# primitives, validation, speed
# ---------------------------------------------------------------------------------------------------------------
def test_smooth_field_statistics_and_resolution_independence():
    grid = Grid((40, 40, 40))
    f = smooth_field(grid.full(), np.random.default_rng(0), correlation=0.3)
    assert abs(f.mean()) < 0.3 and 0.5 < f.std() < 1.5
    fine = Grid((80, 80, 80))
    f_fine = smooth_field(fine.full(), np.random.default_rng(0), correlation=0.3)
    # the same seed gives the same field sampled at a finer grid
    assert np.corrcoef(f.ravel(), f_fine[::2, ::2, ::2].ravel())[0, 1] > 0.95


def test_tube_painter_radius_and_minimum():
    grid = Grid((32, 32, 32))
    painter = TubePainter(grid, min_radius_voxels=0.0)
    d = painter.distance(np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), 0.25)
    inside = d < 0
    # a cylinder of radius 0.25 along x: cross-section area ~ pi r^2 in normalised units
    area = inside[16].sum() * grid.voxel**2
    assert abs(area - np.pi * 0.25**2) < 0.03
    thin = TubePainter(grid, min_radius_voxels=0.7).distance(np.array([[-0.5, 0.01, 0.01], [0.5, 0.01, 0.01]]), 1e-4)
    assert (thin < 0).sum() > 0


@pytest.mark.parametrize("fn", [brain_mri_phantom, body_ct_phantom, coronary_cta_phantom])
def test_bad_arguments(fn):
    with pytest.raises(TypeError, match="shape"):
        fn(64)
    with pytest.raises(ValueError, match="shape"):
        fn((4, 64, 64))
    with pytest.raises(TypeError, match="seed"):
        fn((32, 32, 32), seed="a")


def test_speed_64():
    for fn in (brain_mri_phantom, body_ct_phantom, coronary_cta_phantom):
        start = time.perf_counter()
        fn((64, 64, 64), seed=1)
        assert time.perf_counter() - start < 3.0  # well under a second on an idle core; slack for shared CI
