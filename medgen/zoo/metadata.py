"""Bundle metadata: offline schema validation, the networks a bundle declares, and fake network inputs.

medgen bundles extend MONAI's ``configs/metadata.json`` (extra keys are allowed by the bundle specification) with:

- ``networks``: ``{net_id: {"data_format", "config_file", "weights", "verify_args", "torchscript"}}``, one entry per
  network of the inference config. ``data_format`` names the metadata block describing that network's forward
  inputs and outputs (default ``"network_data_format"``, the block MONAI's ``verify_net_in_out`` reads);
  ``config_file`` the config(s) defining ``net_id`` (default ``configs/inference.json``); ``weights`` the
  state-dict files loaded into it (bundle-relative); ``verify_args`` the ``p``/``n``/``any`` values of the fake
  input shape; ``torchscript`` how the network exports (``"trace"``). Without ``networks`` the MONAI defaults
  apply: ``network_def`` with ``models/model.pt``.
- ``smoke_test``: ``{"config_file", "overrides"}``, a tiny inference run (few steps) used by ``medgen zoo verify``.

Every input of a data-format block other than ``image`` is passed to the network as a keyword argument with that
name (MONAI's ``verify_net_in_out`` feeds only ``image``; the rest goes through its ``extra_forward_args``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.utils import get_equivalent_dtype

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_SHA256",
    "NAME_PATTERN",
    "NetworkSpec",
    "read_metadata",
    "merge_variant",
    "validate_metadata",
    "bundle_networks",
    "example_inputs",
]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "schemas" / "meta_schema_mb_spec_monai_1.6.json"
# pinned so an edit of the shipped schema is noticed (MONAI's verify_metadata checks it before validating)
SCHEMA_SHA256 = "96176453cea96858269e75f6b618b3b7043503477ef18ab3da0c0eb3643fc951"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_CONFIG = "configs/inference.json"


def read_metadata(bundle_dir: str | Path, variant: str | None = None) -> dict[str, Any]:
    """``configs/metadata.json`` of a bundle as plain JSON (nothing in it is evaluated).

    Args:
        bundle_dir: the bundle folder.
        variant: merge ``configs/metadata_<variant>.json`` over it (see :func:`merge_variant`).

    Raises:
        FileNotFoundError: a metadata file is missing.
        ValueError: a file is not a JSON object.
    """
    bundle_dir = Path(bundle_dir)
    meta = _read_json_object(bundle_dir / "configs" / "metadata.json")
    if variant is None:
        return meta
    return merge_variant(meta, _read_json_object(bundle_dir / "configs" / f"metadata_{variant}.json"))


def _read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: '{path}'.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"'{path}' is not valid JSON: {e}.") from e
    if not isinstance(content, dict):
        raise ValueError(f"'{path}' must hold a JSON object, got {type(content).__name__}.")
    return content


def merge_variant(meta: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a bundle variant (e.g. converted official weights): ``overlay``'s top-level keys replace
    ``meta``'s, except ``changelog``, whose entries are added. The variant must have its own version.

    Raises:
        ValueError: ``overlay`` has no ``version``, or the same version as ``meta``.
    """
    version = overlay.get("version")
    if not version or version == meta.get("version"):
        raise ValueError(
            f"a variant's metadata must set its own 'version' (base version {meta.get('version')!r}), got {version!r}."
        )
    merged = {**meta, **overlay}
    merged["changelog"] = {**overlay.get("changelog", {}), **meta.get("changelog", {})}
    return merged


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validate_metadata(meta: str | Path | Mapping[str, Any]) -> None:
    """Validate metadata against the shipped MONAI bundle metadata schema with ``monai.bundle.verify_metadata``,
    offline (the schema file is given to MONAI, so nothing is downloaded).

    Args:
        meta: a ``metadata.json`` path or the metadata itself.

    Raises:
        ValueError: the metadata does not validate (MONAI's message names the failing field).
        OptionalImportError: ``jsonschema`` is not installed.
    """
    from monai.bundle import verify_metadata

    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(meta, Mapping):
            meta_file = Path(tmp) / "metadata.json"
            meta_file.write_text(json.dumps(meta))
        else:
            meta_file = Path(meta)
        content = _read_json_object(meta_file)
        if "schema" not in content:
            raise ValueError(f"'{meta_file}' has no 'schema' field (the URL of its metadata schema).")
        try:
            verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA_PATH), hash_val=SCHEMA_SHA256,
                            hash_type="sha256")
        except ValueError as e:
            raise ValueError(_schema_error(content) or str(e)) from e


def _schema_error(content: Mapping[str, Any]) -> str | None:
    """The most relevant schema violation, with the path of the field (MONAI's message omits it and names the
    bundle's schema URL although the shipped copy was used)."""
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft7Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(content))
    if error is None:
        return None
    field = "/".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"metadata field '{field}': {error.message} (schema {SCHEMA_PATH.name}, shipped with medgen)."


@dataclass(frozen=True)
class NetworkSpec:
    """One network of a bundle, as declared in its metadata (see the module docstring)."""

    net_id: str
    data_format: str = "network_data_format"
    config_files: tuple[str, ...] = (DEFAULT_CONFIG,)
    weights: tuple[str, ...] = ("models/model.pt",)
    verify_args: dict[str, int] = field(default_factory=dict)
    torchscript: str = "trace"


_NETWORK_KEYS = {"data_format", "config_file", "weights", "verify_args", "torchscript"}


def bundle_networks(meta: Mapping[str, Any]) -> list[NetworkSpec]:
    """The networks a bundle declares (``networks``), or MONAI's default ``network_def`` with ``models/model.pt``.

    Raises:
        ValueError: a malformed entry (the message names the network and the key).
    """
    declared = meta.get("networks")
    if declared is None:
        return [NetworkSpec("network_def")]
    if not isinstance(declared, Mapping) or not declared:
        raise ValueError(f"metadata 'networks' must be a non-empty object of net_id -> spec, got {declared!r}.")
    specs = []
    for net_id, entry in declared.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"metadata networks['{net_id}'] must be an object, got {type(entry).__name__}.")
        unknown = set(entry) - _NETWORK_KEYS
        if unknown:
            raise ValueError(f"metadata networks['{net_id}'] has unknown keys {sorted(unknown)}; "
                             f"valid: {sorted(_NETWORK_KEYS)}.")
        data_format = entry.get("data_format", "network_data_format")
        if data_format not in meta:
            raise ValueError(f"metadata networks['{net_id}'] names data_format '{data_format}', not in the metadata.")
        config = entry.get("config_file", DEFAULT_CONFIG)
        configs = (config,) if isinstance(config, str) else tuple(config)
        weights = entry.get("weights", ["models/model.pt"])
        if isinstance(weights, str) or not all(isinstance(w, str) for w in weights):
            raise ValueError(f"metadata networks['{net_id}']['weights'] must be a list of paths, got {weights!r}.")
        verify_args = dict(entry.get("verify_args", {}))
        if set(verify_args) - {"p", "n", "any"}:
            raise ValueError(f"metadata networks['{net_id}']['verify_args'] takes p, n, any, got {verify_args}.")
        specs.append(NetworkSpec(net_id, data_format, configs, tuple(weights), verify_args,
                                 entry.get("torchscript", "trace")))
    return specs


def _fake_tensor(spec: Mapping[str, Any], shape_args: Mapping[str, int], seed: int, generator: torch.Generator,
                 device: str | torch.device) -> torch.Tensor:
    # MONAI's own evaluator of spatial-shape expressions, so the sizes equal those verify_net_in_out uses
    from monai.bundle.scripts import _get_fake_spatial_shape

    dtype = get_equivalent_dtype(spec["dtype"], torch.Tensor)
    spatial = _get_fake_spatial_shape(spec["spatial_shape"], **shape_args)
    shape = (1, spec["num_channels"], *spatial) if spatial else (1,)
    low, high = (spec["value_range"] or [0.0, 1.0])
    if not spatial and seed == 0:  # a per-sample scalar (noise level, diffusion step): the middle of its range
        middle = (low + high) / 2
        return torch.full(shape, round(middle) if not dtype.is_floating_point else middle, dtype=dtype, device=device)
    if not dtype.is_floating_point:
        return torch.randint(int(low), int(high) + 1, shape, generator=generator, dtype=dtype).to(device)
    return (low + (high - low) * torch.rand(shape, generator=generator)).to(device=device, dtype=dtype)


def example_inputs(
    data_format: Mapping[str, Any], p: int = 1, n: int = 1, any: int = 1, device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fake inputs of one network from its data-format block: the ``image`` tensor and every other input by name.

    Spatial inputs are uniform in their ``value_range`` (``[0, 1]`` when unknown); scalar inputs (``spatial_shape``
    ``[]``, shaped ``(1,)``) are the middle of their range with ``seed=0``, uniform in it otherwise. Shapes follow
    MONAI's expression rules (``"4*n"``, ``"*"``).

    Args:
        data_format: ``{"inputs": {...}, "outputs": {...}}``.
        p, n, any: values of the shape variables (as in ``verify_net_in_out``).
        device: where the tensors are made.
        seed: seed of the random values.

    Returns:
        ``(image, extra_inputs)``, batch size 1.
    """
    inputs = data_format["inputs"]
    generator = torch.Generator().manual_seed(seed)
    shape_args = {"p": p, "n": n, "any": any}
    image = _fake_tensor(inputs["image"], shape_args, seed, generator, device)
    extra = {k: _fake_tensor(v, shape_args, seed, generator, device) for k, v in inputs.items() if k != "image"}
    return image, extra
