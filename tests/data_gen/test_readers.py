"""Tests for medgen.data.readers: every format written here in its real layout, read back with shape, units and
geometry checked, and the normalisations inverted to the input's units."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, DivisiblePadd, Invertd

from medgen.data import coronary_cta_phantom
from medgen.data.brats import save_brats_case
from medgen.data.multicontrast import brain_mri_contrasts
from medgen.data.readers import (
    BraTSCaseReader,
    DicomSeriesReader,
    FastMRIKspaceReader,
    LoadBraTSCased,
    LoadFastMRId,
    LoadScan,
    LoadScand,
    centre_sampled_width,
    find_scans,
    read_ismrmrd_header,
    scan_dataloader,
    scan_name,
)
from medgen.engines.samples import phantom_mri_slices
from medgen.physics.mri import fft2c, ifft2c
from medgen.transforms.intensity import kspace_std
from medgen.transforms.kspace import birdcage_sensitivity_maps
from medgen.transforms.normalize import HUWindowNormalized, InvertibleKspaceStdNormalized, TPDMNormalized



@pytest.fixture(scope="module")
def h5py():
    """fastMRI files need the optional h5py (the [fastmri] extra, also in [test])."""
    return pytest.importorskip("h5py")


def _rotation(angles_deg) -> np.ndarray:
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


# ---------------------------------------------------------------------------------------------------------------
# NIfTI in scanner units
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def scanner_nifti(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.gamma(2.0, 500.0, size=(19, 22, 13)).clip(0, 4000).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = _rotation((12, -7, 25)) @ np.diag([0.9, 1.1, 3.0])
    affine[:3, 3] = (-80.0, 95.5, -20.0)
    path = tmp_path / "subject01_t1.nii.gz"
    nib.save(nib.Nifti1Image(raw, affine), str(path))
    return path, raw, affine


def test_nifti_in_scanner_units_round_trips_through_normalisation_and_padding(scanner_nifti):
    path, raw, affine = scanner_nifti
    loader = LoadScand("image", ensure_channel_first=True)
    pipeline = Compose([loader, TPDMNormalized("image"), DivisiblePadd("image", k=8)])
    data = pipeline({"image": str(path)})
    image = data["image"]
    assert image.shape == (1, 24, 24, 16) and float(image.max()) <= 1.0 and float(image.min()) >= 0.0
    # symmetric padding by (2, 1, 1) voxels before the data: the first voxel moved by that much, orientation kept
    padded_origin = (affine @ np.array([-2.0, -1.0, -1.0, 1.0]))[:3]
    np.testing.assert_allclose(image.affine[:3, 3].numpy(), padded_origin, atol=1e-5)
    np.testing.assert_allclose(image.affine[:3, :3].numpy(), affine[:3, :3], atol=1e-6)
    data["pred"] = image * 1.0  # what an identity network would return
    restored = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=False)(data)["pred"]
    assert restored.shape == (1, *raw.shape) and restored.dtype == torch.float32
    np.testing.assert_allclose(restored.affine.numpy(), affine, atol=1e-5)
    np.testing.assert_allclose(restored[0].numpy(), raw.astype(np.float32), rtol=0, atol=4000 * 2e-7)


def test_plain_load_keeps_values_and_geometry(scanner_nifti):
    path, raw, affine = scanner_nifti
    image = LoadScan(ensure_channel_first=True)(path)
    assert image.shape == (1, *raw.shape) and image.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), raw.astype(np.float32))
    np.testing.assert_allclose(image.affine.numpy(), affine, atol=1e-5)
    assert LoadScan(dtype=None)(path).dtype == torch.int16


# ---------------------------------------------------------------------------------------------------------------
# DICOM series (SimpleITK writer, rescale slope/intercept, oblique orientation)
# ---------------------------------------------------------------------------------------------------------------
def _write_dicom_series(folder, hu, spacing, origin, direction, series_uid, slope=0.5, intercept=-1024.0, prefix="ct"):
    """One CT slice per file, int16 stored values with the rescale tags, image plane from ``direction``."""
    os.makedirs(folder, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):  # hu is (z, y, x) as SimpleITK's arrays are
        image = sitk.GetImageFromArray(hu[k][None].astype(np.float32))
        position = np.asarray(origin) + direction @ np.array([0.0, 0.0, k * spacing[2]])
        image.SetSpacing(spacing)
        image.SetDirection(direction.flatten().tolist())
        image.SetOrigin(position.tolist())
        tags = {
            "0008|0060": "CT",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.8.498.1",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])),
            "0018|0050": str(spacing[2]),
            "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1",  # int16 stored values
            "0028|1052": str(intercept),
            "0028|1053": str(slope),
            "0028|1054": "HU",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"{prefix}{k:03d}.dcm"))
        writer.Execute(image)


@pytest.fixture
def dicom_series(tmp_path):
    rng = np.random.default_rng(1)
    hu = np.round(rng.uniform(-1000, 2000, size=(7, 10, 12)) * 2) / 2  # multiples of the slope 0.5
    spacing, origin, direction = (0.7, 0.8, 2.5), (-30.0, 12.0, 100.0), _rotation((10, -5, 20))
    folder = tmp_path / "ct_series"
    _write_dicom_series(folder, hu, spacing, origin, direction, "1.2.826.0.1.3680043.8.498.2")
    return folder, hu, spacing, origin, direction


def test_dicom_series_in_hounsfield_units_with_oblique_ras_affine(dicom_series):
    folder, hu, spacing, origin, direction = dicom_series
    image = LoadScan(ensure_channel_first=True)(folder)
    # SimpleITK arrays are (z, y, x); medgen/MONAI volumes are (x, y, z)
    assert image.shape == (1, 12, 10, 7) and image.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), np.transpose(hu, (2, 1, 0)).astype(np.float32))
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    lps[:3, 3] = origin
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS to RAS
    np.testing.assert_allclose(image.affine.numpy(), expected, atol=1e-4)
    assert image.meta["modality"] == "CT"
    assert image.meta["rescale_slope"] == 0.5 and image.meta["rescale_intercept"] == -1024.0

    pipeline = Compose([LoadScand("image", ensure_channel_first=True), HUWindowNormalized("image")])
    data = pipeline({"image": str(folder)})
    np.testing.assert_allclose(data["image"][0].numpy(), (np.transpose(hu, (2, 1, 0)) + 1000) / 2000, atol=1e-6)
    data["pred"] = data["image"] * 1.0
    back = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=False)(data)["pred"]
    np.testing.assert_allclose(back[0].numpy(), np.transpose(hu, (2, 1, 0)), rtol=0, atol=2000 * 2e-7)


def test_dicom_folder_with_two_series_needs_a_choice(dicom_series, tmp_path):
    folder, hu, spacing, origin, direction = dicom_series
    _write_dicom_series(
        folder, hu[:3] + 10, spacing, (0.0, 0.0, 0.0), np.eye(3), "1.2.826.0.1.3680043.8.498.3", prefix="scout"
    )
    with pytest.raises(ValueError, match="series_name"):
        LoadScan()(folder)
    chosen = LoadScan(DicomSeriesReader(series_name="1.2.826.0.1.3680043.8.498.3"))(folder)
    assert chosen.shape == (12, 10, 3)
    np.testing.assert_array_equal(chosen.numpy(), np.transpose(hu[:3] + 10, (2, 1, 0)))


# ---------------------------------------------------------------------------------------------------------------
# fastMRI multi-coil .h5
# ---------------------------------------------------------------------------------------------------------------
HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
<fieldOfView_mm><x>280.0</x><y>140.0</y><z>4.5</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>{rh}</x><y>{rw}</y><z>1</z></matrixSize>
<fieldOfView_mm><x>140.0</x><y>140.0</y><z>3.0</z></fieldOfView_mm></reconSpace>
</encoding></ismrmrdHeader>"""


@pytest.fixture(scope="module")
def fastmri_case(tmp_path_factory, h5py):
    """A 3-slice 6-coil fastMRI-layout file: readout oversampled 2x (64 x 32), recon space 32 x 32."""
    images = torch.cat(phantom_mri_slices([3], image_size=32, slices_per_volume=3, depth=16))  # (3, 32, 32)
    oversampled = torch.zeros(3, 64, 32, dtype=torch.complex64)
    oversampled[:, 16:48] = images  # the object in the middle half of the readout FOV
    maps = birdcage_sensitivity_maps((64, 32), num_coils=6)  # (6, 64, 32)
    kspace = fft2c(maps[None] * oversampled[:, None]) * 1e-4  # scanner-like scale
    path = tmp_path_factory.mktemp("fastmri") / "file1000001.h5"
    with h5py.File(path, "w") as handle:
        handle["kspace"] = kspace.numpy()
        handle["ismrmrd_header"] = HEADER.format(h=64, w=32, rh=32, rw=32)
        handle["reconstruction_rss"] = np.zeros((3, 32, 32), np.float32)
        handle.attrs.update({"acquisition": "CORPD_FBK", "max": 4.2e-4, "norm": 0.1, "patient_id": "p1"})
    return path, kspace, oversampled, maps


def test_fastmri_reader_selects_slices_and_keeps_the_layout(fastmri_case):
    path, kspace, _, _ = fastmri_case
    data = LoadScan()(path)
    assert data.shape == (3, 6, 64, 32) and data.dtype == torch.complex64
    torch.testing.assert_close(data.as_tensor(), kspace, rtol=0, atol=0)
    assert data.meta["acquisition"] == "CORPD_FBK" and data.meta["max"] == pytest.approx(4.2e-4)
    assert data.meta["encoded_size"] == (64, 32, 1) and data.meta["recon_size"] == (32, 32, 1)
    picked = LoadScan(FastMRIKspaceReader(slices=[2, -3]))(path)
    torch.testing.assert_close(picked.as_tensor(), kspace[[2, 0]], rtol=0, atol=0)
    assert picked.meta["slice_indices"] == [2, 0]
    with pytest.raises(ValueError, match="has 3 slices"):
        LoadScan(FastMRIKspaceReader(slices=5))(path)


def test_fastmri_crop_to_the_header_recon_size_is_an_image_domain_centre_crop(fastmri_case):
    path, kspace, oversampled, maps = fastmri_case
    cropped = LoadScan(FastMRIKspaceReader(slices=1, crop="header"))(path)
    assert cropped.shape == (1, 6, 32, 32)
    expected = (maps[None] * oversampled[:, None])[1:2, :, 16:48] * 1e-4
    torch.testing.assert_close(ifft2c(cropped.as_tensor()), expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_fastmri_undersampled_file_refuses_a_phase_crop_and_gives_its_mask(tmp_path, fastmri_case, h5py):
    _, kspace, _, _ = fastmri_case
    mask = np.zeros(32, np.float32)
    mask[::4] = 1
    mask[12:20] = 1
    path = tmp_path / "file_test.h5"
    with h5py.File(path, "w") as handle:
        handle["kspace"] = (kspace * torch.from_numpy(mask)).numpy()
        handle["mask"] = mask.astype(bool)
    loaded = LoadScan()(path)
    np.testing.assert_array_equal(loaded.meta["sampling_mask"], mask)
    assert centre_sampled_width(loaded) == 9  # columns 12-20 (20 is also on the ::4 grid)
    with pytest.raises(ValueError, match="phase-encoding"):
        LoadScan(FastMRIKspaceReader(crop=(32, 16)))(path)
    assert LoadScan(FastMRIKspaceReader(crop=(32, 32)))(path).shape == (3, 6, 32, 32)  # readout crop is fine


def test_fastmri_maps_estimated_by_espirit_combine_to_the_image(fastmri_case):
    path, _, oversampled, _ = fastmri_case
    data = LoadFastMRId("kspace", slices=[0, 2], crop="header")({"kspace": str(path)})
    kspace, maps = data["kspace"], data["sensitivity_maps"]
    assert maps.shape == kspace.shape == (2, 6, 32, 32) and maps.dtype == torch.complex64
    assert maps.meta["maps_source"] == "espirit"
    combined = torch.sum(maps.conj() * ifft2c(kspace.as_tensor()), dim=1)  # (2, 32, 32)
    truth = oversampled[[0, 2], 16:48] * 1e-4
    support = truth.abs() > 0.05 * float(truth.abs().max())
    # ESPIRiT maps are unit-norm over the coils and fixed up to a smooth phase (coil 0's is removed), so the
    # coil combination is the image's magnitude exactly, its phase up to that smooth factor
    torch.testing.assert_close(torch.sum(maps.abs() ** 2, dim=1)[support], torch.ones(int(support.sum())), atol=1e-5, rtol=0)
    error = torch.linalg.vector_norm(combined.abs()[support] - truth.abs()[support]) / torch.linalg.vector_norm(
        truth[support]
    )
    assert float(error) < 1e-3


def test_fastmri_maps_are_read_when_the_file_has_them(tmp_path, fastmri_case, h5py):
    _, kspace, _, maps = fastmri_case
    path = tmp_path / "with_maps.h5"
    with h5py.File(path, "w") as handle:
        handle["kspace"] = kspace.numpy()
        handle["s_maps"] = maps[None].expand(3, -1, -1, -1).numpy()
    data = LoadFastMRId("kspace", slices=1)({"kspace": str(path)})
    assert data["sensitivity_maps"].meta["maps_source"] == "s_maps"
    torch.testing.assert_close(data["sensitivity_maps"].as_tensor(), maps[None], rtol=0, atol=0)


def test_fastmri_pipeline_feeds_the_hfs_inferer_and_inverts_to_scanner_units(fastmri_case):
    from medgen.inferers.highfrequency import HighFrequencySpaceInferer
    from medgen.networks.ddpm import DDPMUNet
    from medgen.transforms.kspace import low_frequency_mask

    path, _, oversampled, _ = fastmri_case
    pipeline = Compose([LoadFastMRId("kspace", slices=[1, 2], crop="header"), InvertibleKspaceStdNormalized("kspace")])
    data = pipeline({"kspace": str(path)})
    for s in range(2):
        assert float(kspace_std(data["kspace"][s].as_tensor())) == pytest.approx(1 / 1.5, rel=1e-5)
    torch.manual_seed(0)
    network = DDPMUNet(image_size=32, nf=32, ch_mult=(1, 2), num_res_blocks=0, attn_resolutions=()).eval()
    mask = torch.zeros(32, 32)
    mask[:, ::2] = 1
    inferer = HighFrequencySpaceInferer(low_frequency_mask((32, 32), 4), num_steps=2, seed=0, progress=False)
    recon = inferer(data["kspace"], network, mask=mask, sensitivity_maps=data["sensitivity_maps"])
    assert recon.shape == (2, 1, 32, 32) and recon.is_complex()
    # the normalisation's record goes with the k-space; on the coil-combined image of the normalised k-space the
    # inverse must give the coil-combined image in the file's units
    combined = torch.sum(data["sensitivity_maps"].conj() * ifft2c(data["kspace"].as_tensor()), dim=1, keepdim=True)
    data["pred"] = MetaTensor(combined)
    restored = Invertd("pred", transform=pipeline, orig_keys="kspace")(data)["pred"]
    truth = oversampled[[1, 2], 16:48] * 1e-4
    assert float(restored.abs().max()) == pytest.approx(float(truth.abs().max()), rel=0.05)


def test_ismrmrd_header_parsing():
    sizes = read_ismrmrd_header(HEADER.format(h=640, w=368, rh=320, rw=320))
    assert sizes["encoded_size"] == (640, 368, 1) and sizes["recon_size"] == (320, 320, 1)
    assert sizes["recon_fov_mm"] == (140.0, 140.0, 3.0)


# ---------------------------------------------------------------------------------------------------------------
# BraTS-style case folders
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def brats_volumes():
    images, _, lesion = brain_mri_contrasts((20, 24, 16), seed=2, skull_strip=True, return_labels=True)
    scales = {"t1": 900.0, "t1ce": 1400.0, "t2": 2600.0, "flair": 700.0}  # scanner-like int16 scales
    volumes = {name: np.round(image * scales[name]).astype(np.int16) for name, image in images.items()}
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = (120.0, 120.0, -70.0)
    return volumes, lesion, affine


@pytest.mark.parametrize("convention", ["2021", "2023"])
def test_brats_case_folder_stacks_and_splits_the_contrasts(tmp_path, brats_volumes, convention):
    volumes, lesion, affine = brats_volumes
    case = tmp_path / "BraTS-case-00001"
    save_brats_case(case, case.name, {**volumes, "seg": lesion}, affine, convention=convention)
    stacked = LoadScan()(case)
    assert stacked.shape == (4, 20, 24, 16) and stacked.meta["contrasts"] == ["t1", "t1ce", "t2", "flair"]
    for c, name in enumerate(("t1", "t1ce", "t2", "flair")):
        np.testing.assert_array_equal(stacked[c].numpy(), volumes[name].astype(np.float32))
    np.testing.assert_allclose(stacked.affine.numpy(), affine, atol=1e-6)

    data = LoadBraTSCased("case", required=("t1", "t1ce", "flair"))({"case": str(case)})
    assert data["t2"].shape == (1, 20, 24, 16) and data["seg"].dtype == torch.uint8
    np.testing.assert_array_equal(data["seg"][0].numpy(), lesion)
    np.testing.assert_allclose(data["flair"].affine.numpy(), affine, atol=1e-6)


def test_brats_case_with_a_missing_contrast(tmp_path, brats_volumes):
    volumes, _, affine = brats_volumes
    case = tmp_path / "case"
    save_brats_case(case, "BraTS2021_00007", {k: v for k, v in volumes.items() if k != "t2"}, affine)
    stacked = LoadScan(BraTSCaseReader())(case)
    assert stacked.meta["contrasts"] == ["t1", "t1ce", "flair"]
    with pytest.raises(FileNotFoundError, match="t2"):
        LoadScan(BraTSCaseReader(contrasts=("t1", "t2")))(case)
    with pytest.raises(FileNotFoundError, match="required"):
        LoadBraTSCased("case", required=("t2",))({"case": str(case)})


def test_brats_case_with_mismatched_geometry_or_duplicate_files_is_refused(tmp_path, brats_volumes):
    volumes, _, affine = brats_volumes
    case = tmp_path / "case"
    save_brats_case(case, "BraTS2021_00008", {"t1": volumes["t1"], "t2": volumes["t2"]}, affine)
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(volumes["flair"], shifted), str(case / "BraTS2021_00008_flair.nii.gz"))
    with pytest.raises(ValueError, match="affine"):
        LoadScan()(case)
    with pytest.raises(ValueError, match="affine"):
        LoadBraTSCased("case")({"case": str(case)})
    nib.save(nib.Nifti1Image(volumes["t1"], affine), str(case / "BraTS2021_00008-t1n.nii.gz"))
    with pytest.raises(ValueError, match="several files"):
        LoadScan()(case)


# ---------------------------------------------------------------------------------------------------------------
# ImageCAS-style coronary label map (sdm_ctca input)
# ---------------------------------------------------------------------------------------------------------------
def test_imagecas_style_label_nifti_keeps_classes_and_geometry(tmp_path):
    labels = coronary_cta_phantom((24, 24, 20), seed=1)["label"].astype(np.uint8)
    affine = np.diag([-0.35, -0.35, 0.5, 1.0])  # ImageCAS: sub-millimetre in-plane, 0.5 mm slices, LPS-like
    affine[:3, 3] = (45.0, 30.0, -120.0)
    path = tmp_path / "1.label.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), str(path))
    image = LoadScan(ensure_channel_first=True)(path)
    assert image.shape == (1, 24, 24, 20)
    np.testing.assert_array_equal(image[0].numpy(), labels.astype(np.float32))
    assert set(np.unique(image.numpy()).astype(int)) == set(np.unique(labels).astype(int))
    np.testing.assert_allclose(image.affine.numpy(), affine, atol=1e-6)
    assert scan_name(path) == "1.label"


# ---------------------------------------------------------------------------------------------------------------
# folders of inputs
# ---------------------------------------------------------------------------------------------------------------
def test_find_scans_and_dataloader_over_a_folder(tmp_path, scanner_nifti, dicom_series, brats_volumes):
    path, raw, affine = scanner_nifti
    folder, *_ = dicom_series
    volumes, _, brats_affine = brats_volumes
    save_brats_case(tmp_path / "case07", "case07", volumes, brats_affine)
    (tmp_path / "notes.txt").write_text("not a scan")
    nib.save(nib.Nifti1Image(raw[:8, :8, :8], affine), str(tmp_path / "second.nii"))
    scans = find_scans(tmp_path)
    assert [os.path.basename(s) for s in scans] == ["case07", "ct_series", "second.nii", "subject01_t1.nii.gz"]
    assert find_scans(folder) == [str(folder)]

    nifti_only = [s for s in scans if s.endswith((".nii", ".nii.gz"))]
    loader = scan_dataloader(nifti_only, LoadScand("image", ensure_channel_first=True))
    items = list(loader)
    assert [item["name"][0] for item in items] == ["second", "subject01_t1"]
    assert items[0]["image"].shape == (1, 1, 8, 8, 8) and items[1]["image"].shape == (1, 1, 19, 22, 13)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_scans(tmp_path / "missing")


def test_fastmri_without_h5py_names_the_extra(tmp_path, monkeypatch):
    import medgen.data.readers as readers

    monkeypatch.setattr(readers, "has_h5py", False)
    path = tmp_path / "file.h5"
    path.write_bytes(b"")
    with pytest.raises(ImportError, match=r"medgen\[fastmri\]"):
        LoadScan()(path)
