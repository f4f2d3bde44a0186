"""medgen.zoo.download: the round trip (pack every bundle, serve the zoo on 127.0.0.1, download one by name, run it),
tampered and unsafe archives refused, version conflicts, external weights through large_files.yml (also with MONAI's
own download/download_large_files/load), and the Hugging Face source."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.apps.utils import HashCheckError
from monai.bundle import run

from medgen.zoo import download_bundle, pack_bundle, write_index
from medgen.zoo.archive import MANIFEST_NAME
from tests.zoo.conftest import BUNDLES_DIR, copy_bundle

FAST_HFSSDE = {"steps": 4, "seed": 0, "progress": False}


def version_of(name: str) -> str:
    """The version a repository bundle declares (its archive is ``<name>_v<version>.zip``)."""
    return json.loads((BUNDLES_DIR / name / "configs" / "metadata.json").read_text())["version"]


def run_hfssde(bundle: Path, output_dir: Path) -> tuple[np.ndarray, dict]:
    run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle), output_dir=str(output_dir),
        **FAST_HFSSDE)
    prefix = "hfssde_hfs_equispaced_acc4_seed0"
    return nib.load(output_dir / f"{prefix}.nii.gz").get_fdata(), json.loads(
        (output_dir / f"{prefix}_metrics.json").read_text())


def test_round_trip_through_a_zoo_served_over_http(tmp_path: Path, zoo: Path, serve):
    base = serve(zoo)
    installed = download_bundle("hfssde_mri", base + "index.json", tmp_path / "bundles")
    assert installed == tmp_path / "bundles" / "hfssde_mri"
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["hfssde_mri"]  # no staging left behind
    for path in (BUNDLES_DIR / "hfssde_mri").rglob("*"):
        relative = path.relative_to(BUNDLES_DIR / "hfssde_mri")
        packed = relative.parts[0] not in ("outputs", "runs") and not any(
            part.startswith(".") or part == "__pycache__" for part in relative.parts)
        if path.is_file() and packed:
            assert (installed / relative).read_bytes() == path.read_bytes(), relative

    downloaded, downloaded_metrics = run_hfssde(installed, tmp_path / "from_zoo")
    source, source_metrics = run_hfssde(BUNDLES_DIR / "hfssde_mri", tmp_path / "from_source")
    np.testing.assert_array_equal(downloaded, source)
    assert downloaded_metrics["metrics"] == source_metrics["metrics"]
    assert downloaded_metrics["baselines"] == source_metrics["baselines"]


def test_a_tampered_archive_is_refused(tmp_path: Path, zoo: Path, serve):
    folder = tmp_path / "zoo"
    shutil.copytree(zoo, folder)
    archive = folder / f"padis_ct_v{version_of('padis_ct')}.zip"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(HashCheckError, match="sha256"):
        download_bundle("padis_ct", serve(folder), tmp_path / "bundles")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_a_changed_file_under_a_matching_index_hash_is_refused(tmp_path: Path, zoo: Path):
    """Whoever can rewrite the index can make the archive hash match; the manifest inside still catches a changed
    file (a publisher who rewrites the manifest too is trusted by definition: run only bundles you trust)."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    with zipfile.ZipFile(zoo / "wdm_brain_mri_v0.1.1.zip") as source, \
            zipfile.ZipFile(folder / "wdm_brain_mri_v0.1.1.zip", "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "wdm_brain_mri/configs/inference.json":
                data = data.replace(b'"$import os"', b'"$__import__(\'os\').system(\'echo pwned\')"')
            target.writestr(info, data)
    write_index(folder)
    with pytest.raises(ValueError, match="checksum mismatch for 'configs/inference.json'"):
        download_bundle("wdm_brain_mri", folder, tmp_path / "bundles")
    assert list((tmp_path / "bundles").iterdir()) == []


def test_zip_slip_is_refused_before_anything_is_written(tmp_path: Path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    with zipfile.ZipFile(folder / "evil_v1.0.0.zip", "w") as archive:
        archive.writestr("evil/configs/metadata.json", json.dumps({"version": "1.0.0"}))
        archive.writestr("evil/../../escaped.txt", "owned")
    sha = hashlib.sha256((folder / "evil_v1.0.0.zip").read_bytes()).hexdigest()
    (folder / "index.json").write_text(json.dumps({"format": "medgen-zoo-index/1", "bundles": [
        {"name": "evil", "version": "1.0.0", "task": "", "sha256": sha, "size": 1, "url": "evil_v1.0.0.zip"}]}))
    with pytest.raises(ValueError, match="zip-slip"):
        download_bundle("evil", folder, tmp_path / "deep" / "bundles")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert list((tmp_path / "deep" / "bundles").iterdir()) == []


def test_another_installed_version_is_only_replaced_with_overwrite(tmp_path: Path, zoo: Path):
    folder = tmp_path / "zoo"
    shutil.copytree(zoo, folder)
    installed = download_bundle("wdm_brain_mri", folder, tmp_path / "bundles", version="0.1.1")
    assert download_bundle("wdm_brain_mri", folder, tmp_path / "bundles") == installed  # same version: no-op
    (installed / "outputs").mkdir()
    (installed / "outputs" / "mine.nii.gz").write_bytes(b"user output")
    assert download_bundle("wdm_brain_mri", folder, tmp_path / "bundles") == installed  # user files do not count

    newer = copy_bundle("wdm_brain_mri", tmp_path / "src")
    meta = json.loads((newer / "configs" / "metadata.json").read_text())
    meta["version"] = "0.2.0"
    meta["changelog"] = {"0.2.0": "test release", **meta["changelog"]}
    (newer / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4))
    (newer / "large_files.yml").write_text((newer / "large_files.yml").read_text().replace("v0.1.1", "v0.2.0"))
    pack_bundle(newer, folder)
    write_index(folder)
    with pytest.raises(FileExistsError, match="version 0.1.1.*overwrite"):
        download_bundle("wdm_brain_mri", folder, tmp_path / "bundles")
    assert json.loads((installed / "configs" / "metadata.json").read_text())["version"] == "0.1.1"
    assert (installed / "outputs" / "mine.nii.gz").is_file()

    (installed / "docs" / "README.md").write_text("edited locally")
    with pytest.raises(FileExistsError, match="differ"):
        download_bundle("wdm_brain_mri", folder, tmp_path / "bundles", version="0.1.1")

    download_bundle("wdm_brain_mri", folder, tmp_path / "bundles", overwrite=True)
    assert json.loads((installed / "configs" / "metadata.json").read_text())["version"] == "0.2.0"
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["wdm_brain_mri"]


def test_external_weights_are_fetched_through_large_files_and_checked(tmp_path: Path, serve):
    folder = tmp_path / "zoo"
    pack_bundle(BUNDLES_DIR / "tpdm_brain_mri", folder, weights="external")
    write_index(folder)
    base = serve(folder)
    installed = download_bundle("tpdm_brain_mri", base, tmp_path / "bundles")
    for weight in ("primary.pt", "auxiliary.pt"):
        assert (installed / "models" / weight).read_bytes() == (BUNDLES_DIR / "tpdm_brain_mri/models" / weight).read_bytes()

    published = folder / f"tpdm_brain_mri_v{version_of('tpdm_brain_mri')}" / "models" / "auxiliary.pt"
    state = torch.load(published, weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, published)
    with pytest.raises(HashCheckError, match="auxiliary.pt"):
        download_bundle("tpdm_brain_mri", base, tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_monai_download_large_files_and_load_fetch_and_check_the_weights(tmp_path: Path, serve):
    """Without medgen: MONAI's own download (archive URL), download_large_files (absolute URLs written by
    pack --base_url) and load (the network of configs/inference.json with the weights)."""
    from monai.bundle import download, download_large_files, load

    folder = tmp_path / "zoo"
    folder.mkdir()
    base = serve(folder)
    pack_bundle(BUNDLES_DIR / "wdm_brain_mri", folder, weights="external", base_url=base)
    with pytest.warns(UserWarning, match="No hash value"):  # MONAI's URL download checks no archive hash
        download(name="wdm_brain_mri", url=base + "wdm_brain_mri_v0.1.1.zip", bundle_dir=str(tmp_path / "bundles"),
                 progress=False)
    bundle = tmp_path / "bundles" / "wdm_brain_mri"
    assert not (bundle / "models" / "model.pt").exists()
    download_large_files(bundle_path=str(bundle))
    assert (bundle / "models" / "model.pt").read_bytes() == (BUNDLES_DIR / "wdm_brain_mri/models/model.pt").read_bytes()
    network = load("wdm_brain_mri", bundle_dir=str(tmp_path / "bundles"), workflow_type="inference", device="cpu")
    reference = torch.load(BUNDLES_DIR / "wdm_brain_mri/models/model.pt", weights_only=True)
    for key, value in network.state_dict().items():
        assert torch.equal(value, reference[key]), key

    (bundle / "models" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(bundle))


def test_hugging_face_repository_through_monais_source(tmp_path: Path, monkeypatch):
    calls = []

    def fake_download(name, version, bundle_dir, source, repo, progress):  # what huggingface_hub would write
        calls.append((name, version, source, repo))
        shutil.copytree(BUNDLES_DIR / "padis_ct", Path(bundle_dir) / name,
                        ignore=shutil.ignore_patterns("outputs", "runs"))

    monkeypatch.setattr("monai.bundle.scripts.download", fake_download)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    installed = download_bundle("padis_ct", "hf://medgen-org/padis_ct@v0.1.1", tmp_path / "bundles")
    assert calls == [("padis_ct", "v0.1.1", "huggingface_hub", "medgen-org/padis_ct")]
    assert (installed / "models" / "model.pt").is_file() and not (installed / MANIFEST_NAME).exists()

    download_bundle("padis_ct", "https://huggingface.co/medgen-org/padis_ct", tmp_path / "bundles2", version="main")
    assert calls[-1] == ("padis_ct", "main", "huggingface_hub", "medgen-org/padis_ct")

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match="pip install huggingface_hub"):
        download_bundle("padis_ct", "hf://medgen-org/padis_ct", tmp_path / "bundles3")
