"""A zoo of MONAI bundles a team can run: pack, verify, index, download and list medgen bundles.

A zoo is a folder (or any static HTTP server serving it) of versioned bundle archives ``<name>_v<version>.zip`` and
an ``index.json``; see ``docs/zoo.md``. Bundle configs are code (MONAI evaluates their ``$`` expressions and
``_target_`` entries): :func:`download_bundle` never runs them; :func:`verify_bundle` evaluates configs that hold code
(:func:`config_code`) only with ``trust=True`` (``medgen zoo verify --trust``).
"""

from __future__ import annotations

from medgen.zoo.archive import (
    LARGE_FILES_NAME,
    MANIFEST_NAME,
    archive_name,
    checked_members,
    format_large_files,
    large_file_entries,
    pack_bundle,
    read_archive_metadata,
    read_large_files,
    verify_manifest,
)
from medgen.zoo.checks import (
    TRUSTED_TARGET_PREFIXES,
    Check,
    VerifyReport,
    build_network,
    config_code,
    export_torchscript,
    verify_bundle,
)
from medgen.zoo.download import download_bundle, install_bundle
from medgen.zoo.index import IndexEntry, parse_hf_location, read_index, resolve_entry, write_index
from medgen.zoo.metadata import (
    SCHEMA_PATH,
    NetworkSpec,
    bundle_networks,
    example_inputs,
    merge_variant,
    read_metadata,
    validate_metadata,
)

__all__ = [
    "LARGE_FILES_NAME",
    "MANIFEST_NAME",
    "TRUSTED_TARGET_PREFIXES",
    "SCHEMA_PATH",
    "Check",
    "IndexEntry",
    "NetworkSpec",
    "VerifyReport",
    "archive_name",
    "build_network",
    "bundle_networks",
    "checked_members",
    "config_code",
    "download_bundle",
    "example_inputs",
    "export_torchscript",
    "format_large_files",
    "install_bundle",
    "large_file_entries",
    "merge_variant",
    "pack_bundle",
    "parse_hf_location",
    "read_archive_metadata",
    "read_index",
    "read_large_files",
    "read_metadata",
    "resolve_entry",
    "validate_metadata",
    "verify_bundle",
    "verify_manifest",
    "write_index",
]
