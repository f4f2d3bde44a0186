"""Fetch a bundle from a zoo into a local folder, checked and unpacked by MONAI's download code, never run.

Order of a download: resolve ``name``/``version`` in the index; fetch the archive with
:func:`monai.apps.utils.download_url` checking its SHA-256 against the index; refuse unsafe members (zip-slip,
links) before anything is written; unpack with :func:`monai.apps.utils.extractall` into a hidden staging folder
next to the target; check every file against the archive's ``checksums.sha256`` and the metadata's name and
version against the index; fetch the weights of ``large_files.yml`` that the archive left out (each checked against
its ``hash_val``); then move the bundle into place in one rename. An installed bundle of another version (or with
other content) is only replaced with ``overwrite``. Nothing of the bundle is parsed as a MONAI config or evaluated:
its configs are code (``$`` expressions, ``_target_``) and run only when the user runs the bundle.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urljoin

from monai.apps.utils import check_hash, download_url, extractall

from medgen.zoo.archive import LARGE_FILES_NAME, MANIFEST_NAME, checked_members, read_large_files, verify_manifest
from medgen.zoo.index import IndexEntry, entry_url, parse_hf_location, read_index, resolve_entry

__all__ = ["download_bundle", "install_bundle"]


def download_bundle(
    name: str,
    index: str | os.PathLike,
    bundle_dir: str | os.PathLike = "bundles",
    version: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Download bundle ``name`` from a zoo into ``<bundle_dir>/<name>`` (see the module docstring for the checks).

    Args:
        name: the bundle name (e.g. ``tpdm_brain_mri``).
        index: the zoo: its ``index.json`` or folder (path, ``file://``, ``http(s)://``), or a Hugging Face model
            repository holding the bundle (``hf://owner/repo[@revision]``, ``https://huggingface.co/owner/repo``),
            fetched with MONAI's ``huggingface_hub`` source (``version`` is then the revision).
        bundle_dir: folder the bundle is installed into (created if missing).
        version: the version to fetch; default the highest in the index.
        overwrite: replace an installed bundle of another version or with other content.
        progress: show download progress bars.

    Returns:
        the installed bundle folder.

    Raises:
        LookupError: name or version not in the index.
        monai.apps.utils.HashCheckError: the archive or a weight file does not match its SHA-256.
        ValueError: an unsafe archive member, a file that does not match the manifest, or a metadata name/version
            other than the index's.
        FileExistsError: another version is installed and ``overwrite`` is false.
    """
    bundle_dir = Path(bundle_dir)
    hf = parse_hf_location(os.fspath(index))
    expected: IndexEntry | None = None
    archive_url = None
    if hf is None:  # resolved before anything is written: an unknown name or version leaves no folder behind
        entries, index_url = read_index(index)
        expected = resolve_entry(entries, name, version)
        archive_url = entry_url(expected, index_url)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bundle_dir, prefix=".medgen-zoo-") as staging:
        staging = Path(staging)
        if expected is None:
            unpacked = _fetch_from_hf(name, hf[0], version or hf[1], staging)
        else:
            unpacked = _fetch_archive(expected, archive_url, staging, progress)
        return install_bundle(unpacked, bundle_dir, expected, archive_url, overwrite, progress)


def _fetch_archive(entry: IndexEntry, url: str, staging: Path, progress: bool) -> Path:
    archive = staging / f"{entry.name}_v{entry.version}.zip"
    download_url(url, filepath=archive, hash_val=entry.sha256, hash_type="sha256", progress=progress)
    if not archive.is_file():
        raise RuntimeError(f"downloading '{url}' wrote nothing to '{archive}'.")
    with zipfile.ZipFile(archive) as opened:
        checked_members(opened, entry.name)
    extractall(archive, staging / "unpacked", hash_val=entry.sha256, hash_type="sha256", has_base=True)
    return staging / "unpacked" / entry.name


def _fetch_from_hf(name: str, repo: str, revision: str | None, staging: Path) -> Path:
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ModuleNotFoundError("a Hugging Face zoo needs the huggingface_hub package: pip install huggingface_hub")
    from monai.bundle import scripts

    scripts.download(name=name, version=revision, bundle_dir=str(staging), source="huggingface_hub", repo=repo,
                     progress=False)
    return staging / name


def _read_metadata(bundle: Path) -> dict:
    meta_file = bundle / "configs" / "metadata.json"
    if not meta_file.is_file():
        raise ValueError(f"'{bundle.name}' has no configs/metadata.json: not a MONAI bundle.")
    return json.loads(meta_file.read_text())


def install_bundle(
    unpacked: Path,
    bundle_dir: Path,
    expected: IndexEntry | None = None,
    archive_url: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Check an unpacked bundle, fetch its external weights, and move it to ``<bundle_dir>/<name>``.

    Args:
        unpacked: the unpacked bundle folder (named after the bundle), on the same file system as ``bundle_dir``.
        bundle_dir: where bundles are installed.
        expected: the index entry it came from (name and version must match), or ``None``.
        archive_url: URL of the archive; relative ``large_files.yml`` URLs resolve against it.
        overwrite: replace an installed bundle of another version or with other content.
        progress: show download progress bars.

    Returns:
        the installed bundle folder.
    """
    meta = _read_metadata(unpacked)
    if expected is not None and (unpacked.name, meta.get("version")) != (expected.name, expected.version):
        raise ValueError(f"the archive holds '{unpacked.name}' version {meta.get('version')!r}, but the index "
                         f"lists '{expected.name}' {expected.version}.")
    has_manifest = (unpacked / MANIFEST_NAME).is_file()
    if has_manifest:
        verify_manifest(unpacked)
    elif expected is not None:
        raise ValueError(f"the archive of '{unpacked.name}' has no {MANIFEST_NAME}: not packed by medgen zoo pack.")
    _fetch_large_files(unpacked, archive_url, progress)

    target = bundle_dir / unpacked.name
    if target.exists() or target.is_symlink():
        if _same_bundle(target, unpacked, meta):
            return target
        if not overwrite:
            raise FileExistsError(
                f"'{target}' holds {_installed_description(target, meta)}; it is not replaced by "
                f"{unpacked.name} {meta.get('version')} without overwrite=True (--overwrite)."
            )
        old = unpacked.parent / f".{unpacked.name}.replaced"
        os.replace(target, old)
        os.replace(unpacked, target)
        shutil.rmtree(old)
    else:
        os.replace(unpacked, target)
    return target


def _fetch_large_files(bundle: Path, archive_url: str | None, progress: bool) -> None:
    large_files = bundle / LARGE_FILES_NAME
    if not large_files.is_file():
        return
    root = bundle.resolve()
    for entry in read_large_files(large_files):
        target = bundle / entry["path"]
        if root not in target.resolve().parents:
            raise ValueError(f"large_files.yml path '{entry['path']}' leaves the bundle folder.")
        if target.is_file():
            if not check_hash(target, entry["hash_val"], entry["hash_type"]):
                raise ValueError(f"'{entry['path']}' does not match its {entry['hash_type']} in large_files.yml.")
            continue
        url = entry["url"]
        if "://" not in url:
            if archive_url is None:
                raise ValueError(f"large_files.yml URL '{url}' is relative, and there is no zoo URL to resolve it.")
            url = urljoin(archive_url, url)
        download_url(url, filepath=target, hash_val=entry["hash_val"], hash_type=entry["hash_type"],
                     progress=progress)
        if not target.is_file():
            raise RuntimeError(f"downloading '{url}' wrote nothing to '{target}'.")


def _installed_description(target: Path, meta: dict) -> str:
    try:
        installed = _read_metadata(target).get("version")
    except (ValueError, OSError, json.JSONDecodeError):
        return "something that is not a MONAI bundle"
    if installed == meta.get("version"):
        return f"version {installed} with files that differ from the archive's"
    return f"version {installed}"


def _same_bundle(target: Path, unpacked: Path, meta: dict) -> bool:
    """Whether ``target`` already holds this version with every file of ``unpacked`` unchanged (downloading again is
    then a no-op; files the user added there, such as ``outputs/``, do not count)."""
    try:
        if not target.is_dir() or _read_metadata(target).get("version") != meta.get("version"):
            return False
    except (ValueError, OSError, json.JSONDecodeError):
        return False
    for path in unpacked.rglob("*"):
        if path.is_file():
            installed = target / path.relative_to(unpacked)
            if not installed.is_file() or installed.read_bytes() != path.read_bytes():
                return False
    return True
