"""Versioned bundle archives: ``<name>_v<version>.zip`` with a top folder ``<name>/`` and a SHA-256 manifest.

The archive follows the MONAI bundle specification's archive format (a zip whose top folder is named after the
bundle). medgen adds ``<name>/checksums.sha256`` (``sha256sum`` format: ``<hex>  <path>`` per line, paths relative
to the bundle folder) covering every other file of the archive, so an unpacked bundle can be checked file by file
(``cd <name> && sha256sum -c checksums.sha256``). Archives are reproducible: entries are sorted and carry a fixed
timestamp and mode, so the same files give the same zip bytes and the same SHA-256.

Weights listed in ``large_files.yml`` (model-zoo's format: ``path``, ``url``, ``hash_val``, ``hash_type``) can be
left out of the archive (``weights="external"``) and published next to it; a relative ``url`` is resolved against
the zoo's location when downloading.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from monai.apps.utils import check_hash, safe_extract_member

from medgen.zoo.metadata import NAME_PATTERN, bundle_networks, read_metadata

__all__ = [
    "MANIFEST_NAME",
    "LARGE_FILES_NAME",
    "HASH_TYPES",
    "archive_name",
    "sha256_file",
    "bundle_files",
    "large_file_entries",
    "read_large_files",
    "format_large_files",
    "pack_bundle",
    "checked_members",
    "write_manifest_text",
    "verify_manifest",
    "read_archive_metadata",
]

MANIFEST_NAME = "checksums.sha256"
LARGE_FILES_NAME = "large_files.yml"
HASH_TYPES = ("md5", "sha1", "sha256", "sha512")
# never packed: run outputs, training runs, caches, model-zoo CI's downloaded schema, VCS and hidden files
_EXCLUDED_DIRS = {"outputs", "runs", "eval", "__pycache__"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def archive_name(name: str, version: str) -> str:
    """``<name>_v<version>.zip`` (model-zoo's naming)."""
    return f"{name}_v{version}.zip"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_excluded(relative: PurePosixPath) -> bool:
    parts = relative.parts
    if any(part.startswith(".") for part in parts) or relative.suffix == ".pyc":
        return True
    return parts[0] in _EXCLUDED_DIRS or "__pycache__" in parts or relative.as_posix() == MANIFEST_NAME


def bundle_files(bundle_dir: str | Path, weights: Iterable[str]) -> list[str]:
    """The files of a bundle folder that belong in its archive, as sorted POSIX paths relative to the folder.

    Left out: hidden files and folders, ``outputs/``, ``runs/``, ``eval/``, caches, an old manifest, and every file
    under ``models/`` that is neither one of ``weights`` nor a ``<weight>.json`` sidecar (so converted official
    checkpoints lying in ``models/`` are not packed into the demo version, and vice versa).

    Raises:
        ValueError: the folder holds a symbolic link (it could point outside the bundle).
    """
    bundle_dir = Path(bundle_dir)
    keep_models = set(weights) | {f"{w}.json" for w in weights}
    files = []
    for path in sorted(bundle_dir.rglob("*")):
        relative = PurePosixPath(path.relative_to(bundle_dir).as_posix())
        if _is_excluded(relative):
            continue
        if path.is_symlink():
            raise ValueError(f"bundle '{bundle_dir}' holds a symbolic link '{relative}'; archives take regular files.")
        if not path.is_file():
            continue
        if relative.parts[0] == "models" and relative.as_posix() not in keep_models:
            continue
        files.append(relative.as_posix())
    return files


def large_file_entries(
    bundle_dir: str | Path, name: str, version: str, weights: Sequence[str], base_url: str | None = None
) -> list[dict[str, str]]:
    """``large_files.yml`` entries of ``weights`` with their SHA-256.

    The ``url`` is ``<name>_v<version>/<path>``, relative to the zoo (where ``medgen zoo pack --weights external``
    puts the file), or ``base_url`` joined with it.

    Raises:
        FileNotFoundError: a weight file is missing.
    """
    entries = []
    for weight in weights:
        path = Path(bundle_dir) / weight
        if not path.is_file():
            raise FileNotFoundError(
                f"weights '{weight}' (metadata 'networks') not found in '{bundle_dir}'; official checkpoints are "
                "converted into it with `medgen convert`."
            )
        url = f"{name}_v{version}/{weight}"
        if base_url:
            url = base_url.rstrip("/") + "/" + url
        entries.append({"path": weight, "url": url, "hash_val": sha256_file(path), "hash_type": "sha256"})
    return entries


def read_large_files(path: str | Path) -> list[dict[str, str]]:
    """The entries of a ``large_files.yml``/``.yaml``/``.json`` (read with MONAI's config loader, YAML safe-loaded).

    Raises:
        ValueError: no ``large_files`` list, an entry without ``path``/``url``/``hash_val``/``hash_type``, an
            unsupported hash type, or a path that is absolute or leaves the bundle.
    """
    from monai.bundle import ConfigParser

    content = ConfigParser.load_config_file(str(path))
    entries = content.get("large_files") if isinstance(content, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError(f"'{path}' must hold a 'large_files' list, got {type(entries).__name__}.")
    for i, entry in enumerate(entries):
        missing = {"path", "url", "hash_val", "hash_type"} - set(entry or {})
        if missing:
            raise ValueError(f"'{path}' entry {i} lacks {sorted(missing)}.")
        if entry["hash_type"] not in HASH_TYPES:
            raise ValueError(f"'{path}' entry {i}: hash_type must be one of {HASH_TYPES}, got {entry['hash_type']!r}.")
        relative = PurePosixPath(entry["path"])
        if relative.is_absolute() or ".." in relative.parts or "\\" in entry["path"]:
            raise ValueError(f"'{path}' entry {i}: path must stay inside the bundle, got {entry['path']!r}.")
    return entries


def format_large_files(entries: Sequence[Mapping[str, str]]) -> str:
    """``large_files.yml`` text in model-zoo's layout (quoted strings, one block per file)."""
    lines = ["large_files:"]
    for entry in entries:
        lines += [f'  - path: "{entry["path"]}"', f'    url: "{entry["url"]}"',
                  f'    hash_val: "{entry["hash_val"]}"', f'    hash_type: "{entry["hash_type"]}"']
    return "\n".join(lines) + "\n"


def write_manifest_text(checksums: Mapping[str, str]) -> str:
    """``sha256sum`` text for ``{relative path: hex}``."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(checksums.items()))


def _parse_manifest(text: str, where: str) -> dict[str, str]:
    checksums = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64 or not path:
            raise ValueError(f"{where} line {number} is not '<sha256>  <path>': {line!r}.")
        checksums[path] = digest
    return checksums


def _zip_info(arcname: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def pack_bundle(
    bundle_dir: str | Path,
    output_dir: str | Path,
    variant: str | None = None,
    weights: str = "include",
    base_url: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Pack a bundle folder into ``<output_dir>/<name>_v<version>.zip`` with a SHA-256 manifest.

    The name is the folder's name and the version that of ``configs/metadata.json`` (or of the variant). With a
    ``variant`` (e.g. ``"official"``), ``configs/metadata_<variant>.json`` is merged over the metadata (own version
    and changelog entry, its networks and weights) and the merged metadata is what the archive holds, so a converted
    official checkpoint ships as its own version while the demo version stays as it is.

    Args:
        bundle_dir: the bundle folder (its name is the bundle's name).
        output_dir: the zoo folder the archive is written to (created if missing).
        variant: metadata variant to pack, or ``None`` for the bundle as it is.
        weights: ``"include"`` (weights inside the archive) or ``"external"`` (weights written next to it under
            ``<name>_v<version>/``, fetched on download through ``large_files.yml``).
        base_url: where the zoo will be served; makes the packed ``large_files.yml`` URLs absolute (needed for
            ``python -m monai.bundle download_large_files`` without medgen).
        overwrite: replace an existing archive of the same name.

    Returns:
        the archive path.

    Raises:
        ValueError: bad name/version/arguments, or the bundle's ``large_files.yml`` disagrees with its weights.
        FileExistsError: the archive exists and ``overwrite`` is false.
        FileNotFoundError: a declared weight file is missing.
    """
    bundle_dir = Path(bundle_dir)
    if weights not in ("include", "external"):
        raise ValueError(f"weights must be 'include' or 'external', got {weights!r}.")
    name = bundle_dir.resolve().name
    if not NAME_PATTERN.match(name):
        raise ValueError(f"bundle folder name must match {NAME_PATTERN.pattern} (model-zoo naming), got '{name}'.")
    meta = read_metadata(bundle_dir, variant)
    version = meta.get("version")
    if not isinstance(version, str) or not version:
        raise ValueError(f"'{bundle_dir}' metadata has no version.")
    if version not in meta.get("changelog", {}):
        raise ValueError(f"version {version} of '{name}' has no changelog entry.")
    weight_files = sorted({w for spec in bundle_networks(meta) for w in spec.weights})
    entries = _packed_large_files(bundle_dir, name, version, weight_files, variant, base_url)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / archive_name(name, version)
    if target.exists() and not overwrite:
        raise FileExistsError(f"archive '{target}' exists; pass overwrite=True (--overwrite) to replace it.")

    # files the archive holds with other content than the folder: the merged metadata of a variant, and a
    # large_files.yml made for these weights (unless the bundle's own file is packed as it is)
    generated: dict[str, bytes] = {}
    if variant is not None:
        generated["configs/metadata.json"] = _json_bytes(meta)
    if variant is not None or base_url or not (bundle_dir / LARGE_FILES_NAME).is_file():
        generated[LARGE_FILES_NAME] = format_large_files(entries).encode()
    files = [f for f in bundle_files(bundle_dir, weight_files) if f not in generated]
    if variant is not None:  # the overlay is merged into metadata.json; other variants' overlays stay out
        files = [f for f in files if not (f.startswith("configs/metadata_") and f.endswith(".json"))]
    external = set(weight_files) if weights == "external" else set()
    checksums = {}
    with tempfile.NamedTemporaryFile(dir=output_dir, prefix=f".{target.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            with zipfile.ZipFile(tmp, "w") as archive:
                for relative in sorted(set(files) - external | set(generated)):
                    data = generated.get(relative)
                    if data is None:
                        data = (bundle_dir / relative).read_bytes()
                    checksums[relative] = hashlib.sha256(data).hexdigest()
                    archive.writestr(_zip_info(f"{name}/{relative}"), data)
                archive.writestr(_zip_info(f"{name}/{MANIFEST_NAME}"), write_manifest_text(checksums).encode())
            tmp.close()
            for weight, entry in zip(weight_files, entries):
                if weight in external:
                    _copy_external(bundle_dir / weight, output_dir / f"{name}_v{version}" / weight, entry, overwrite)
            os.replace(tmp.name, target)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return target


def _json_bytes(content: Any) -> bytes:
    return (json.dumps(content, indent=4, ensure_ascii=False) + "\n").encode()


def _packed_large_files(
    bundle_dir: Path, name: str, version: str, weights: Sequence[str], variant: str | None, base_url: str | None
) -> list[dict[str, str]]:
    """The ``large_files.yml`` entries of the archive; the bundle's own file must agree with its weights."""
    entries = large_file_entries(bundle_dir, name, version, weights, base_url)
    committed = bundle_dir / LARGE_FILES_NAME
    if variant is None and committed.is_file():
        declared = {e["path"]: e for e in read_large_files(committed)}
        expected = {e["path"]: e for e in large_file_entries(bundle_dir, name, version, weights)}
        problems = [f"{path}: listed but not a declared weight" for path in sorted(set(declared) - set(expected))]
        problems += [f"{path}: declared weight not listed" for path in sorted(set(expected) - set(declared))]
        problems += [
            f"{path}: {declared[path]['hash_type']} differs from the file"
            for path in sorted(set(declared) & set(expected))
            if not check_hash(bundle_dir / path, declared[path]["hash_val"], declared[path]["hash_type"])
        ]
        if problems:
            raise ValueError(
                f"'{committed}' does not match the bundle's weights ({'; '.join(problems)}). For these weights it "
                f"reads:\n{format_large_files(list(expected.values()))}"
            )
        # keep the bundle's URLs (a team may host weights elsewhere); make relative ones absolute on request
        entries = [dict(declared[e["path"]]) for e in entries]
        if base_url:
            for entry in entries:
                if "://" not in entry["url"]:
                    entry["url"] = base_url.rstrip("/") + "/" + entry["url"]
    return entries


def _copy_external(source: Path, target: Path, entry: Mapping[str, str], overwrite: bool) -> None:
    if target.exists() and not overwrite:
        if check_hash(target, entry["hash_val"], entry["hash_type"]):
            return
        raise FileExistsError(f"'{target}' exists with other content; pass overwrite=True (--overwrite).")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def checked_members(archive: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The members of a bundle archive after refusing anything that could write outside ``<name>/``.

    Refused: absolute paths, ``..`` components, backslashes or drive letters, members outside the top folder
    ``<name>/``, symbolic links, duplicate names, and anything MONAI's ``safe_extract_member`` refuses.

    Raises:
        ValueError: naming the first offending member.
    """
    seen = set()
    members = archive.infolist()
    for member in members:
        filename = member.filename
        path = PurePosixPath(filename)
        if (
            "\\" in filename
            or path.is_absolute()
            or ".." in path.parts
            or (path.parts and ":" in path.parts[0])
        ):
            raise ValueError(f"archive member '{filename}' would be written outside the bundle folder (zip-slip).")
        if not path.parts or path.parts[0] != name:
            raise ValueError(f"archive member '{filename}' is not inside the top folder '{name}/'.")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ValueError(f"archive member '{filename}' is a symbolic link.")
        if filename in seen:
            raise ValueError(f"archive member '{filename}' appears twice.")
        seen.add(filename)
        safe_extract_member(member, ".")
    return members


def verify_manifest(bundle_dir: str | Path) -> dict[str, str]:
    """Check every file of an unpacked bundle against its ``checksums.sha256``.

    Files fetched later through ``large_files.yml`` may be absent from the manifest; any other file not in it, a
    listed file that is missing, or a checksum that differs is an error.

    Returns:
        the manifest, ``{relative path: sha256}``.

    Raises:
        FileNotFoundError: no manifest, or a listed file is missing.
        ValueError: a checksum differs, or an unlisted file is present.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"'{bundle_dir}' has no {MANIFEST_NAME} (not packed by medgen zoo pack).")
    checksums = _parse_manifest(manifest_path.read_text(), str(manifest_path))
    for relative, digest in checksums.items():
        path = bundle_dir / relative
        if not path.is_file():
            raise FileNotFoundError(f"'{relative}' is listed in {MANIFEST_NAME} but missing from '{bundle_dir}'.")
        if sha256_file(path) != digest:
            raise ValueError(f"checksum mismatch for '{relative}' in '{bundle_dir}': the file was altered.")
    large = {e["path"] for e in read_large_files(bundle_dir / LARGE_FILES_NAME)} if (
        bundle_dir / LARGE_FILES_NAME).is_file() else set()
    for path in bundle_dir.rglob("*"):
        relative = path.relative_to(bundle_dir).as_posix()
        if path.is_file() and relative != MANIFEST_NAME and relative not in checksums and relative not in large:
            raise ValueError(f"'{relative}' in '{bundle_dir}' is not listed in {MANIFEST_NAME}.")
    return checksums


def read_archive_metadata(archive_path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(name, metadata)`` of a bundle archive, read without extracting it (the top folder is the name).

    Raises:
        ValueError: no single top folder, no ``configs/metadata.json``, or an unsafe member.
    """
    with zipfile.ZipFile(archive_path) as archive:
        tops = {PurePosixPath(m.filename).parts[0] for m in archive.infolist() if m.filename}
        if len(tops) != 1:
            raise ValueError(f"'{archive_path}' must hold one top folder named after the bundle, got {sorted(tops)}.")
        name = tops.pop()
        checked_members(archive, name)
        try:
            data = archive.read(f"{name}/configs/metadata.json")
        except KeyError as e:
            raise ValueError(f"'{archive_path}' has no {name}/configs/metadata.json.") from e
    meta = json.load(io.BytesIO(data))
    return name, meta
