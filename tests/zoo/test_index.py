"""medgen.zoo.index: the index of a zoo folder, reading it from a path, file:// and http://, version resolution,
Hugging Face locations."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from medgen.zoo import parse_hf_location, read_index, resolve_entry, write_index
from medgen.zoo.index import INDEX_FORMAT, IndexEntry
from tests.zoo.conftest import BUNDLE_NAMES


def test_index_lists_every_archive_with_its_sha256(zoo: Path):
    content = json.loads((zoo / "index.json").read_text())
    assert content["format"] == INDEX_FORMAT
    entries = {e["name"]: e for e in content["bundles"]}
    assert sorted(entries) == BUNDLE_NAMES
    for name, entry in entries.items():
        archive = zoo / f"{name}_v{entry['version']}.zip"
        assert entry["url"] == archive.name and entry["size"] == archive.stat().st_size
        assert entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert entry["task"] and entry["medgen_version"] == "0.1.0" and entry["monai_version"]


def test_index_with_a_base_url_and_bad_folders(tmp_path: Path, zoo: Path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    with pytest.raises(ValueError, match="no <name>_v<version>.zip"):
        write_index(folder)
    shutil.copy(zoo / "wdm_brain_mri_v0.1.1.zip", folder)
    index = write_index(folder, base_url="https://example.org/medgen-zoo/")
    (entry,) = json.loads(index.read_text())["bundles"]
    assert entry["url"] == "https://example.org/medgen-zoo/wdm_brain_mri_v0.1.1.zip"
    shutil.copy(zoo / "wdm_brain_mri_v0.1.1.zip", folder / "wdm_brain_mri_v0.2.0.zip")
    with pytest.raises(ValueError, match="version '0.1.1'"):
        write_index(folder)
    with pytest.raises(NotADirectoryError):
        write_index(folder / "missing")


def test_read_index_from_a_path_a_folder_file_and_http(zoo: Path, serve):
    by_file, url = read_index(zoo / "index.json")
    assert url == (zoo / "index.json").as_uri()
    assert read_index(zoo)[0] == by_file
    assert read_index((zoo / "index.json").as_uri())[0] == by_file
    base = serve(zoo)
    by_http, url = read_index(base + "index.json")
    assert by_http == by_file and url == base + "index.json"
    assert read_index(base)[1] == base + "index.json"
    with pytest.raises(FileNotFoundError, match="zoo index not found"):
        read_index(zoo / "missing.json")
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        read_index("ftp://example.org/index.json")


def test_read_index_refuses_other_json(tmp_path: Path):
    (tmp_path / "index.json").write_text(json.dumps({"bundles": []}))
    with pytest.raises(ValueError, match="not a medgen zoo index"):
        read_index(tmp_path)


def entry(name: str, version: str) -> IndexEntry:
    return IndexEntry(name=name, version=version, task="", sha256="0" * 64, size=1, url=f"{name}_v{version}.zip")


def test_resolve_entry_picks_a_version_or_the_highest():
    entries = [entry("tpdm_brain_mri", v) for v in ("0.1.0", "0.1.1", "0.10.0", "1.0.0+official")] + [
        entry("wdm_brain_mri", "0.1.1")]
    assert resolve_entry(entries, "tpdm_brain_mri").version == "1.0.0+official"
    assert resolve_entry(entries, "tpdm_brain_mri", "0.1.1").version == "0.1.1"
    assert resolve_entry(entries[:3], "tpdm_brain_mri").version == "0.10.0"  # PEP 440 order, not text order
    with pytest.raises(LookupError, match="wdm_brain_mri"):
        resolve_entry(entries, "tpdm")
    with pytest.raises(LookupError, match="0.1.0"):
        resolve_entry(entries, "tpdm_brain_mri", "2.0.0")


@pytest.mark.parametrize(
    "location, expected",
    [
        ("hf://medgen/tpdm_brain_mri", ("medgen/tpdm_brain_mri", None)),
        ("hf://medgen/tpdm_brain_mri@v0.1.1", ("medgen/tpdm_brain_mri", "v0.1.1")),
        ("https://huggingface.co/medgen/tpdm_brain_mri", ("medgen/tpdm_brain_mri", None)),
        ("https://huggingface.co/medgen/tpdm_brain_mri/tree/0.1.1", ("medgen/tpdm_brain_mri", "0.1.1")),
        ("https://example.org/zoo/index.json", None),
        ("zoo/index.json", None),
    ],
)
def test_hugging_face_locations(location, expected):
    assert parse_hf_location(location) == expected


@pytest.mark.parametrize("location", ["hf://medgen", "https://huggingface.co/medgen", "hf://a/b/c"])
def test_bad_hugging_face_locations(location):
    with pytest.raises(ValueError, match="owner/repo"):
        parse_hf_location(location)
