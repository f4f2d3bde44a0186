"""Tests for medgen.transforms.kspace: HFS-SDE mask parity, Poisson-disc masks and the k-space transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.apps.reconstruction.mri_utils import root_sum_of_squares
from monai.data import MetaTensor
from scipy.ndimage import binary_erosion
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medgen.physics.mri import CartesianMRI, fft2c, ifft2c
from medgen.transforms.kspace import (
    CoilCombine,
    CoilCombined,
    EstimateCoilSensitivity,
    EstimateCoilSensitivityd,
    DEFAULT_MASK_KWARGS,
    KspaceUndersample,
    KspaceUndersampled,
    KspaceUndersampleD,
    RandKspaceUndersample,
    RandKspaceUndersampled,
    RandKspaceUndersampleD,
    RandSimulateMultiCoil,
    RandSimulateMultiCoild,
    SimulateMultiCoil,
    SimulateMultiCoild,
    birdcage_sensitivity_maps,
    center_square_mask,
    equispaced_mask,
    low_frequency_mask,
    make_mask,
    poisson_disc_mask,
    random_uniform_mask,
    variable_density_mask,
)
from tests.conftest import load_parity


@pytest.fixture(scope="module")
def hfs_masks():
    return load_parity("hfs_masks")


@pytest.fixture(scope="module")
def phantom():
    return torch.from_numpy(resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)).float()[None]


def _same(mask: torch.Tensor, ref: torch.Tensor) -> None:
    assert mask.shape == ref.shape and mask.dtype == torch.float32
    assert torch.equal(mask, ref.float())


def test_hfs_equispaced_and_low_frequency_masks(hfs_masks):
    _same(equispaced_mask(320, 4, acs_lines=24), hfs_masks["uniform_acc4_acs24"]["mask"])
    _same(equispaced_mask(320, 10, acs_lines=24), hfs_masks["uniform_acc10_acs24"]["mask"])
    _same(low_frequency_mask(320, 16), hfs_masks["low_frequency_acs16"]["mask"])
    assert equispaced_mask(320, 10, acs_lines=24)[0].sum() == 54  # "acc" is a stride: R = 5.93


def test_hfs_random_masks_with_seeded_random_state(hfs_masks):
    entry = hfs_masks["random_uniform_acc4_acs24"]
    assert entry["call"].startswith("np.random.seed(1234)")
    _same(random_uniform_mask(320, 4, 24, rng=np.random.RandomState(entry["seed"])), entry["mask"])
    entry = hfs_masks["cartesian_acc8_acs24"]
    _same(variable_density_mask(320, 8, 24, rng=np.random.RandomState(entry["seed"])), entry["mask"])
    _same(make_mask("variable_density", 320, rng=1234, acc=8, acs_lines=24), entry["mask"])


def test_hfs_center_square(hfs_masks):
    _same(center_square_mask(320, 24), hfs_masks["center_length24"]["mask"])
    m = center_square_mask((10, 12), (4, 6))
    assert m.sum() == 24 and m[3:7, 3:9].all()


def test_equispaced_true_acceleration():
    m = equispaced_mask((8, 320), 4, acs_lines=24, mode="acceleration")
    row = m[0]
    assert row.sum() == 80 and torch.all(m == row)
    assert row[148:172].all()
    outer = torch.nonzero(row).flatten()
    outer = outer[(outer < 148) | (outer >= 172)]
    gaps = torch.diff(outer[outer < 148])
    assert gaps.max() - gaps.min() <= 1


def test_random_masks_counts_and_generators():
    for rng in (np.random.default_rng(0), 3):
        m = random_uniform_mask((4, 100), 5, acs_lines=10, rng=rng)
        assert m[0].sum() == 20 and m[0, 45:55].all()
        v = variable_density_mask((4, 100), 5, acs_lines=10, rng=rng)
        assert v[0].sum() == 20 and v[0, 45:55].all()
    assert torch.equal(random_uniform_mask(64, 4, 8, rng=5), random_uniform_mask(64, 4, 8, rng=5))


def _poisson_checks(mask: torch.Tensor, accel: float, calib: int) -> None:
    h, w = mask.shape
    assert abs(h * w / mask.sum().item() - accel) < 0.1
    c0, c1 = int(h / 2 - calib / 2), int(h / 2 + calib / 2)
    assert mask[c0:c1, c0:c1].all()
    yy, xx = torch.meshgrid(torch.arange(h) - h / 2, torch.arange(w) - w / 2, indexing="ij")
    r = torch.sqrt(xx**2 + yy**2) / (h / 2)
    assert mask[r > 1.05].sum() == 0  # corners cropped
    inner, outer = mask[r < 0.4].mean(), mask[(r > 0.6) & (r < 1)].mean()
    assert inner > 1.5 * outer  # variable density


@pytest.mark.parametrize("shape,accel,calib", [(32, 3, 4), (48, 6, 0)])
def test_poisson_disc_reaches_acceleration(shape, accel, calib):
    mask = poisson_disc_mask(shape, accel, calib=calib, rng=0)
    _poisson_checks(mask, accel, calib)
    assert torch.equal(mask, poisson_disc_mask(shape, accel, calib=calib, rng=np.random.RandomState(0)))
    assert not torch.equal(mask, poisson_disc_mask(shape, accel, calib=calib, rng=1))


def test_poisson_disc_generator_and_errors():
    rng = np.random.default_rng(7)
    _poisson_checks(poisson_disc_mask(32, 4, rng=rng), 4, 0)
    with pytest.raises(ValueError, match="accel"):
        poisson_disc_mask(32, 1)
    with pytest.raises(ValueError, match="calib"):
        poisson_disc_mask(32, 4, calib=40)


@pytest.mark.slow
def test_poisson_disc_tpdm_size():
    mask = poisson_disc_mask((256, 256), 48, rng=0)
    _poisson_checks(mask, 48, 0)


def test_mask_bad_inputs():
    with pytest.raises(ValueError, match="acs_lines"):
        equispaced_mask(32, 4, acs_lines=40)
    with pytest.raises(ValueError, match="acc"):
        equispaced_mask(32, 0.5)
    with pytest.raises(ValueError, match="mode"):
        equispaced_mask(32, 4, mode="nominal")
    with pytest.raises(ValueError, match="smaller than acs_lines"):
        random_uniform_mask(32, 8, acs_lines=8, rng=0)
    with pytest.raises(TypeError, match="rng"):
        random_uniform_mask(32, 4, 4, rng="seed")
    with pytest.raises(ValueError, match="mask_type"):
        make_mask("radial", 32)


def test_kspace_undersample_image_single_coil(phantom):
    img = MetaTensor(phantom, affine=torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0])), meta={"id": "p"})
    t = RandKspaceUndersample(mask_type="equispaced", mask_kwargs={"acc": 4, "acs_lines": 8})
    kspace, zf = t(img)
    mask = equispaced_mask(64, 4, 8)
    torch.testing.assert_close(kspace.as_tensor(), mask * fft2c(phantom.to(torch.complex64)))
    torch.testing.assert_close(zf.as_tensor(), ifft2c(kspace.as_tensor()))
    assert isinstance(zf, MetaTensor) and zf.meta["id"] == "p" and torch.equal(zf.affine, img.affine)
    assert kspace.is_complex() and torch.equal(t.mask, mask)


def test_kspace_undersample_multicoil_and_kspace_input(phantom):
    maps = birdcage_sensitivity_maps((64, 64), num_coils=4)
    t = RandKspaceUndersample(mask=center_square_mask(64, 16), convention="ortho")
    kspace, zf = t(phantom, sensitivity_maps=maps)
    op = CartesianMRI(center_square_mask(64, 16), maps[None])
    torch.testing.assert_close(kspace, op(phantom[None])[0])
    torch.testing.assert_close(zf, op.adjoint(op(phantom[None]))[0])
    assert kspace.shape == (4, 64, 64) and zf.shape == (1, 64, 64)
    full_k = fft2c(maps * phantom)
    k2, zf2 = RandKspaceUndersample(mask=center_square_mask(64, 16), input_type="kspace")(full_k, maps)
    torch.testing.assert_close(k2, kspace)
    torch.testing.assert_close(zf2, zf)


def test_kspace_undersampled_dict_seeded_repeat(phantom):
    def run(seed):
        t = RandKspaceUndersampled(
            "image", kspace_keys="k", zero_filled_keys="zf", mask_key="m",
            mask_type="random", mask_kwargs={"acc": 4, "acs_lines": 8},
        )
        t.set_random_state(seed)
        return t({"image": phantom})

    a, b, c = run(0), run(0), run(1)
    assert set(a) == {"image", "k", "zf", "m"}
    assert torch.equal(a["m"], b["m"]) and not torch.equal(a["m"], c["m"])
    assert a["m"][0].sum() == 16
    torch.testing.assert_close(a["zf"], ifft2c(a["m"] * fft2c(phantom.to(torch.complex64))))
    assert RandKspaceUndersampleD is RandKspaceUndersampled


def test_simulate_multicoil_maps_normalised(phantom):
    sim = RandSimulateMultiCoil(num_coils=6, prob=0.0)
    coils = sim(phantom)
    maps = sim.sensitivity_maps
    assert coils.shape == (6, 64, 64) and coils.is_complex()
    torch.testing.assert_close(torch.sum(maps.abs() ** 2, 0), torch.ones(64, 64), atol=1e-6, rtol=0)
    torch.testing.assert_close(coils, maps * phantom)
    # smooth: neighbouring pixels differ little
    assert (maps[..., 1:] - maps[..., :-1]).abs().max() < 0.1
    vol = birdcage_sensitivity_maps((3, 16, 16), num_coils=2)
    assert vol.shape == (2, 3, 16, 16) and torch.equal(vol[:, 0], vol[:, 2])


def test_simulate_multicoild_random_rotation(phantom):
    def run(seed):
        t = RandSimulateMultiCoild("image", maps_key="maps", num_coils=4)
        t.set_random_state(seed)
        return t({"image": phantom})

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a["maps"], b["maps"]) and not torch.equal(a["maps"], c["maps"])
    assert a["image"].shape == (4, 64, 64)


def test_estimate_coil_sensitivity_against_true_maps(phantom):
    maps = birdcage_sensitivity_maps((64, 64), num_coils=8)
    kspace = fft2c(maps * phantom) * equispaced_mask(64, 4, acs_lines=24)  # undersampled outside the ACS
    est = EstimateCoilSensitivity(acs_lines=24)(kspace)
    obj = phantom[0] > 0.05 * phantom.max()
    inner = torch.from_numpy(binary_erosion(obj.numpy(), iterations=2))
    corr = torch.sum(est.conj() * maps, 0).abs() / (
        torch.linalg.vector_norm(est, dim=0) * torch.linalg.vector_norm(maps, dim=0)
    )
    rel = torch.linalg.vector_norm((est - maps)[:, inner]) / torch.linalg.vector_norm(maps[:, inner])
    # measured: mean correlation 0.9998, min 0.9967 inside the object; relative error 0.022 (eroded object)
    assert corr[obj].mean() > 0.999 and corr[obj].min() > 0.99
    assert rel < 0.04
    d = EstimateCoilSensitivityd("k", maps_keys="s", acs_lines=24)({"k": kspace})
    torch.testing.assert_close(d["s"], est)


def test_estimated_maps_in_sense_reconstruction(phantom):
    # the use the estimate is for: SENSE (CG least squares) at R = 2 with the maps estimated from the same data
    x = phantom.to(torch.complex128)[None]
    maps = birdcage_sensitivity_maps((64, 64), num_coils=8, dtype=torch.complex128)
    mask = equispaced_mask(64, 2, acs_lines=16, mode="acceleration").double()
    y = CartesianMRI(mask, maps[None])(x)
    est = EstimateCoilSensitivity(acs_lines=16, threshold=0.05)(y[0])
    obj = x[0, 0].abs() > 0.05

    def error(rec):
        return float((rec - x)[0, 0][obj].norm() / x[0, 0][obj].norm())

    with_true = error(CartesianMRI(mask, maps[None]).pseudo_inverse(y, max_iter=30, tol=1e-10))
    with_estimate = error(CartesianMRI(mask, est[None]).pseudo_inverse(y, max_iter=30, tol=1e-10))
    zero_filled = error(CartesianMRI(mask, maps[None]).adjoint(y))
    # measured: true maps 6e-6, estimated maps 0.055, zero-filled 0.244 (relative error inside the object)
    assert with_true < 1e-4
    assert with_estimate < 0.07 and with_estimate < zero_filled / 4


def test_kspace_undersampled_dict_keeps_meta_for_every_output(phantom):
    affine = torch.diag(torch.tensor([0.7, 0.7, 3.0, 1.0], dtype=torch.float64))
    image = MetaTensor(phantom, affine=affine, meta={"filename_or_obj": "slice.nii.gz"})
    maps = birdcage_sensitivity_maps((64, 64), num_coils=4)
    t = RandKspaceUndersampled(
        "image", kspace_keys="k", zero_filled_keys="zf", maps_key="maps", mask=equispaced_mask(64, 4, acs_lines=8)
    )
    out = t({"image": image, "maps": maps})
    assert out["image"] is image and out["k"].shape == (4, 64, 64) and out["zf"].shape == (1, 64, 64)
    for key in ("k", "zf"):
        assert isinstance(out[key], MetaTensor) and out[key].is_complex()
        assert torch.equal(out[key].affine, affine) and out[key].meta["filename_or_obj"] == "slice.nii.gz"
    op = CartesianMRI(out["mask"], maps[None])
    torch.testing.assert_close(out["k"].as_tensor(), op(phantom[None])[0])
    torch.testing.assert_close(out["zf"].as_tensor(), op.adjoint(op(phantom[None]))[0])


def test_transform_arguments_checked_at_construction():
    with pytest.raises(ValueError, match="acs_lines"):
        EstimateCoilSensitivity(acs_lines=0)
    with pytest.raises(ValueError, match="acs_rows"):
        EstimateCoilSensitivity(acs_rows=-2)
    with pytest.raises(ValueError, match="threshold"):
        EstimateCoilSensitivity(threshold=1.5)
    with pytest.raises(ValueError, match="num_coils"):
        RandSimulateMultiCoil(num_coils=0)
    with pytest.raises(ValueError, match="input_type"):
        RandKspaceUndersample(input_type="sinogram")
    with pytest.raises(ValueError, match="mask_type"):
        RandKspaceUndersample(mask_type="radial")
    with pytest.raises(ValueError, match="input_type"):
        CoilCombine(input_type="sinogram")


def test_coil_combine(phantom):
    maps = birdcage_sensitivity_maps((64, 64), num_coils=5)
    coils = maps * phantom
    torch.testing.assert_close(CoilCombine()(coils, maps), phantom.to(torch.complex64), atol=1e-6, rtol=0)
    rss = CoilCombine()(coils)
    torch.testing.assert_close(rss, root_sum_of_squares(coils.abs(), spatial_dim=0, ).unsqueeze(0))
    torch.testing.assert_close(rss, phantom, atol=1e-6, rtol=0)
    d = CoilCombined("k", maps_key="s", input_type="kspace")({"k": fft2c(coils), "s": maps})
    torch.testing.assert_close(d["k"], phantom.to(torch.complex64), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="sensitivity_maps"):
        CoilCombine()(coils, maps[:2])


def test_random_transforms_follow_monai_conventions(phantom):
    from monai.transforms import Compose, RandomizableTransform

    for cls in (RandKspaceUndersample, RandKspaceUndersampled, RandSimulateMultiCoil, RandSimulateMultiCoild):
        assert issubclass(cls, RandomizableTransform)
    # seeded pipelines repeat: Compose.set_random_state seeds every random transform
    def pipeline(seed):
        chain = Compose([RandSimulateMultiCoild("coils", maps_key="maps", num_coils=4),
                         RandKspaceUndersampled("image", maps_key="maps", prob=0.5)])
        chain.set_random_state(seed)
        return [chain({"image": phantom, "coils": phantom}) for _ in range(6)]

    first, again, other = pipeline(7), pipeline(7), pipeline(8)
    for a, b in zip(first, again):
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["maps"], b["maps"])
    assert any(not torch.equal(a["mask"], c["mask"]) for a, c in zip(first, other))
    # prob = 0.5 over 6 calls with this seed: some calls undersample, some keep the whole k-space
    full = [bool(d["mask"].min() == 1) for d in first]
    assert any(full) and not all(full)


def test_prob_zero_keeps_the_whole_kspace(phantom):
    kspace, zero_filled = RandKspaceUndersample(prob=0.0)(phantom)
    torch.testing.assert_close(kspace, fft2c(phantom.to(torch.complex64)))
    torch.testing.assert_close(zero_filled.real, phantom, atol=1e-6, rtol=0)
    sim = RandSimulateMultiCoil(num_coils=4, rotation=0.3, prob=0.0)
    sim.set_random_state(1)
    sim(phantom)
    torch.testing.assert_close(sim.sensitivity_maps, birdcage_sensitivity_maps((64, 64), num_coils=4, rotation=0.3))


def test_seeded_mask_equals_make_mask_with_the_same_state(phantom):
    """prob=1 draws no coin: the mask stream is the generator's (HFS-SDE's np.random streams stay reproducible)."""
    t = RandKspaceUndersample(mask_type="variable_density", mask_kwargs={"acc": 4, "acs_lines": 8})
    t.set_random_state(5)
    rng = np.random.RandomState(5)
    for _ in range(3):
        t(phantom)
        assert torch.equal(t.mask, make_mask("variable_density", (64, 64), rng=rng, acc=4, acs_lines=8))


@pytest.mark.parametrize("mask_type", sorted(DEFAULT_MASK_KWARGS))
def test_defaults_work(phantom, mask_type):
    out = RandKspaceUndersampled("image", mask_type=mask_type)({"image": phantom})
    assert out["kspace"].shape == (1, 64, 64) and 0 < float(out["mask"].mean()) < 1
    small = torch.rand(1, 32, 32)  # the defaults fit 32 columns
    assert RandKspaceUndersample(mask_type=mask_type)(small)[0].shape == (1, 32, 32)


def test_mask_arguments_checked_at_construction():
    with pytest.raises(ValueError, match=r"must give \['acc'\]"):
        RandKspaceUndersample(mask_type="random", mask_kwargs={"acs_lines": 8})
    with pytest.raises(ValueError, match=r"\['accel'\]"):
        RandKspaceUndersampled("image", mask_type="poisson", mask_kwargs={"calib": 8})
    with pytest.raises(ValueError, match="not arguments of mask_type 'equispaced'"):
        RandKspaceUndersample(mask_type="equispaced", mask_kwargs={"acc": 4, "acceleration": 2})
    with pytest.raises(ValueError, match="prob"):
        RandKspaceUndersample(prob=1.5)


def test_old_names_are_deprecated_aliases_with_their_defaults(phantom):
    with pytest.warns(FutureWarning, match="RandKspaceUndersampled"):
        old = KspaceUndersampled("image")  # failed at call time before: equispaced without arguments
    out = old({"image": phantom})
    torch.testing.assert_close(out["mask"], equispaced_mask(64, **DEFAULT_MASK_KWARGS["equispaced"]))
    assert isinstance(old, RandKspaceUndersampled) and KspaceUndersampleD is KspaceUndersampled
    with pytest.warns(FutureWarning, match="RandKspaceUndersample"):
        k_old, _ = KspaceUndersample(mask_type="equispaced", mask_kwargs={"acc": 4, "acs_lines": 8})(phantom)
    k_new, _ = RandKspaceUndersample(mask_type="equispaced", mask_kwargs={"acc": 4, "acs_lines": 8})(phantom)
    torch.testing.assert_close(k_old, k_new)

    def maps(transform):
        transform.set_random_state(3)
        return transform({"image": phantom})["maps"]

    with pytest.warns(FutureWarning, match="RandSimulateMultiCoild"):
        old_random = SimulateMultiCoild("image", maps_key="maps", num_coils=4, random_rotation=True)
    assert torch.equal(maps(old_random), maps(RandSimulateMultiCoild("image", maps_key="maps", num_coils=4)))
    with pytest.warns(FutureWarning, match="RandSimulateMultiCoil"):
        fixed = SimulateMultiCoil(num_coils=4, rotation=0.2)
    fixed(phantom)
    torch.testing.assert_close(fixed.sensitivity_maps, birdcage_sensitivity_maps((64, 64), num_coils=4, rotation=0.2))
