"""The zoo index: one JSON file listing the packed bundles of a folder (name, version, task, sha256, size, url).

A zoo is a folder of ``<name>_v<version>.zip`` archives plus ``index.json``, served from disk or by any static
HTTP server. Entry URLs are relative to the index (so the folder can be moved or served anywhere) unless a
``base_url`` was given when indexing. A Hugging Face model repository holding one unpacked bundle is reached
through MONAI's ``huggingface_hub`` download source instead (see :func:`parse_hf_location`).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlparse

from packaging.version import InvalidVersion, Version

from medgen.zoo.archive import read_archive_metadata, sha256_file

__all__ = [
    "INDEX_NAME",
    "INDEX_FORMAT",
    "IndexEntry",
    "write_index",
    "read_index",
    "resolve_entry",
    "entry_url",
    "entry_dict",
    "index_location",
    "parse_hf_location",
]

INDEX_NAME = "index.json"
INDEX_FORMAT = "medgen-zoo-index/1"
_MAX_INDEX_BYTES = 16 << 20
_ARCHIVE_PATTERN = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)_v(?P<version>[0-9][0-9A-Za-z.+-]*)\.zip$")


@dataclass(frozen=True)
class IndexEntry:
    """One packed bundle of a zoo."""

    name: str
    version: str
    task: str
    sha256: str
    size: int
    url: str
    monai_version: str = ""
    medgen_version: str = ""


def write_index(zoo_dir: str | Path, base_url: str | None = None, output: str | Path | None = None) -> Path:
    """Write the index of every ``<name>_v<version>.zip`` in ``zoo_dir``.

    Each archive's metadata is read from inside it (its top folder must be the name and its metadata version the
    version of the file name). The index is written atomically.

    Args:
        zoo_dir: folder of packed bundles.
        base_url: URL the folder will be served at; entry URLs are then absolute, else relative to the index.
        output: index path (default ``<zoo_dir>/index.json``).

    Returns:
        the index path.

    Raises:
        ValueError: an archive whose name, top folder and metadata disagree, or no archive at all.
    """
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise NotADirectoryError(f"zoo_dir must be a folder of packed bundles, '{zoo_dir}' is not a folder.")
    entries = []
    for archive in sorted(zoo_dir.glob("*.zip")):
        match = _ARCHIVE_PATTERN.match(archive.name)
        if match is None:
            raise ValueError(f"'{archive}' is not named <name>_v<version>.zip.")
        name, meta = read_archive_metadata(archive)
        if (name, meta.get("version")) != (match["name"], match["version"]):
            raise ValueError(f"'{archive.name}' holds bundle '{name}' version {meta.get('version')!r}, "
                             f"not '{match['name']}' {match['version']}.")
        relative = quote(archive.name)
        entries.append(IndexEntry(
            name=name, version=meta["version"], task=str(meta.get("task", "")), sha256=sha256_file(archive),
            size=archive.stat().st_size, url=f"{base_url.rstrip('/')}/{relative}" if base_url else relative,
            monai_version=str(meta.get("monai_version", "")),
            medgen_version=str(meta.get("required_packages_version", {}).get("medgen", "")),
        ))
    if not entries:
        raise ValueError(f"'{zoo_dir}' holds no <name>_v<version>.zip archive; pack bundles into it first.")
    target = Path(output) if output is not None else zoo_dir / INDEX_NAME
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"format": INDEX_FORMAT, "bundles": [asdict(e) for e in entries]}, indent=2) + "\n")
    os.replace(tmp, target)
    return target


def index_location(location: str | os.PathLike) -> str:
    """The URL of an index given as a path (file or zoo folder), ``file://`` or ``http(s)://`` URL."""
    location = os.fspath(location)
    scheme = urlparse(location).scheme
    if scheme in ("http", "https", "file"):
        return location + INDEX_NAME if location.endswith("/") else location
    if len(scheme) > 1:
        raise ValueError(f"index must be a path, file://, http:// or https:// URL, got scheme '{scheme}'.")
    path = Path(location).expanduser().resolve()
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"zoo index not found: '{path}'.")
    return path.as_uri()


def read_index(location: str | os.PathLike, timeout: float = 30.0) -> tuple[list[IndexEntry], str]:
    """Read a zoo index.

    Args:
        location: a path (index file or zoo folder), ``file://`` or ``http(s)://`` URL.
        timeout: seconds to wait for an HTTP server.

    Returns:
        ``(entries, index_url)``; relative entry URLs resolve against ``index_url``.

    Raises:
        ValueError: not a medgen zoo index, or larger than 16 MiB.
    """
    url = index_location(location)
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        data = response.read(_MAX_INDEX_BYTES + 1)
    if len(data) > _MAX_INDEX_BYTES:
        raise ValueError(f"zoo index '{url}' is larger than {_MAX_INDEX_BYTES >> 20} MiB.")
    try:
        content = json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"zoo index '{url}' is not JSON: {e}.") from e
    if not isinstance(content, Mapping) or content.get("format") != INDEX_FORMAT:
        raise ValueError(f"'{url}' is not a medgen zoo index (expected format '{INDEX_FORMAT}').")
    fields = set(IndexEntry.__dataclass_fields__)
    entries = [IndexEntry(**{k: v for k, v in item.items() if k in fields}) for item in content.get("bundles", [])]
    return entries, url


def _version_key(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        return Version("0")


def resolve_entry(entries: Sequence[IndexEntry], name: str, version: str | None = None) -> IndexEntry:
    """The entry of bundle ``name`` at ``version``, or its highest version (PEP 440 order, so ``1.0.0+official``
    is above ``1.0.0`` and ``0.1.1``).

    Raises:
        LookupError: the name or version is not in the index (the message lists what is).
    """
    versions = [e for e in entries if e.name == name]
    if not versions:
        raise LookupError(f"bundle '{name}' is not in the zoo; it has: {sorted({e.name for e in entries})}.")
    if version is None:
        return max(versions, key=lambda e: _version_key(e.version))
    for entry in versions:
        if entry.version == str(version):
            return entry
    raise LookupError(f"bundle '{name}' has no version {version} in the zoo; it has: "
                      f"{sorted((e.version for e in versions), key=_version_key)}.")


def entry_url(entry: IndexEntry, index_url: str) -> str:
    """The archive URL of an entry (relative URLs resolve against the index)."""
    return urljoin(index_url, entry.url)


def parse_hf_location(location: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of a Hugging Face model repository location, or ``None`` for anything else.

    Accepted forms: ``hf://owner/repo``, ``hf://owner/repo@revision``, ``https://huggingface.co/owner/repo`` and
    ``https://huggingface.co/owner/repo/tree/revision``.

    Raises:
        ValueError: an ``hf://`` or huggingface.co URL that does not name ``owner/repo``.
    """
    parsed = urlparse(location)
    if parsed.scheme == "hf":
        path = (parsed.netloc + parsed.path).strip("/")
        repo, _, revision = path.partition("@")
        parts = repo.split("/")
        revision = revision or None
    elif parsed.scheme in ("http", "https") and parsed.netloc in ("huggingface.co", "www.huggingface.co"):
        parts = parsed.path.strip("/").split("/")
        revision = None
        if len(parts) >= 4 and parts[2] == "tree":
            parts, revision = parts[:2], "/".join(parts[3:])
        elif len(parts) != 2:
            parts = []
    else:
        return None
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"a Hugging Face location must name owner/repo (hf://owner/repo[@revision]), "
                         f"got '{location}'.")
    return "/".join(parts), revision


def entry_dict(entry: IndexEntry) -> dict[str, Any]:
    """The entry as a plain dict."""
    return asdict(entry)
