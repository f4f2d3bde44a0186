"""``medgen zoo verify``: the checks of Project-MONAI/model-zoo's CI (``ci/verify_bundle.py``) plus medgen's own,
run on one bundle folder.

Checks, in order (each is reported; a failing one does not stop the others):

- ``layout``: ``LICENSE``, ``configs/metadata.json``, ``configs/inference.json``, ``docs/README.md`` exist
  (model-zoo's necessary and preferred files; a bundle without ``models/model.pt`` is noted, not failed).
- ``version``: the version is in the changelog (model-zoo's ``verify_version_changes``).
- ``metadata``: ``monai.bundle.verify_metadata`` against the shipped schema, offline; every other data-format
  block a network uses is validated against the same tensor rules.
- ``large_files``: every declared weight is listed in ``large_files.yml`` and matches its hash.
- per network ``weights:<id>``: each weight file loads strictly into the network built from the config.
- per network ``net_in_out:<id>``: ``monai.bundle.verify_net_in_out`` with every declared input.
- per network ``torchscript:<id>``: :func:`export_torchscript`, then the saved module is loaded back with
  ``monai.data.load_net_with_metadata`` and compared with the eager network.
- ``smoke``: the bundle's own tiny inference run (``python -m monai.bundle run`` with the metadata's
  ``smoke_test`` overrides, in a subprocess, outputs in a temporary folder).

These checks build networks and run the bundle's configs, which are code: verify only bundles you trust. Without
``trust`` a bundle whose configs hold code (:func:`config_code`: ``$`` expressions, ``_target_`` outside
:data:`TRUSTED_TARGET_PREFIXES`) fails a ``trust`` check and nothing of it is evaluated.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medgen.zoo.archive import LARGE_FILES_NAME, large_file_entries, read_large_files
from medgen.zoo.metadata import (
    SCHEMA_PATH,
    NetworkSpec,
    bundle_networks,
    example_inputs,
    read_metadata,
    validate_metadata,
)

__all__ = [
    "Check",
    "VerifyReport",
    "TRUSTED_TARGET_PREFIXES",
    "config_code",
    "verify_bundle",
    "build_network",
    "export_torchscript",
]

_REQUIRED_FILES = ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md")

#: ``_target_`` values a config may name without counting as code: components of MONAI, medgen and torch's module and
#: data packages (a name without a dot is looked up among MONAI's components)
TRUSTED_TARGET_PREFIXES = ("monai.", "medgen.", "torch.nn.", "torch.utils.data.")
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def config_code(bundle_dir: str | Path) -> list[str]:
    """Where the configs of a bundle hold code MONAI would evaluate, as ``"<file>::<id>: <value>"`` lines.

    Reported: every ``$`` expression (Python, evaluated by ``monai.bundle``), and every ``_target_`` naming a callable
    outside :data:`TRUSTED_TARGET_PREFIXES`. The files are parsed as data (JSON, safe YAML), nothing is evaluated.

    Args:
        bundle_dir: the bundle folder; every file of its ``configs/`` is read.

    Returns:
        the code items found, empty for a bundle whose configs are plain data.
    """
    from monai.bundle import ConfigParser

    found: list[str] = []

    def walk(value: Any, where: str, name: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{where}#{key}" if where else str(key), name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}#{index}", name)
        elif isinstance(value, str):
            target = where.rsplit("#", 1)[-1] == "_target_"
            if value.startswith("$") or (target and "." in value and not value.startswith(TRUSTED_TARGET_PREFIXES)):
                found.append(f"{name}::{where}: {value[:80]}")

    configs = Path(bundle_dir) / "configs"
    for path in sorted(configs.rglob("*")) if configs.is_dir() else []:
        if path.suffix in _CONFIG_SUFFIXES and path.is_file():
            walk(ConfigParser.load_config_file(str(path)), "", path.relative_to(bundle_dir).as_posix())
    return found


@dataclass(frozen=True)
class Check:
    """Outcome of one check: ``passed`` is ``True``, ``False``, or ``None`` for a check that did not apply."""

    name: str
    passed: bool | None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class VerifyReport:
    """Every check run on a bundle."""

    bundle: str
    version: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed."""
        return all(check.passed is not False for check in self.checks)

    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.passed is False]

    def __str__(self) -> str:
        marks = {True: "PASS", False: "FAIL", None: "skip"}
        width = max((len(c.name) for c in self.checks), default=4)
        lines = [f"{self.bundle} {self.version}"]
        lines += [f"  {marks[c.passed]}  {c.name:<{width}}  {c.detail}" for c in self.checks]
        lines.append(f"{self.bundle} {self.version}: " + ("all checks passed" if self.ok else
                                                           f"{len(self.failed())} check(s) failed"))
        return "\n".join(lines)


def _run_check(report: VerifyReport, name: str, check: Callable[[], str | tuple[None, str] | None]) -> None:
    """Run one check and record it: a returned string is the detail of a pass, ``(None, reason)`` a check that did
    not apply, an exception a failure."""
    start = time.perf_counter()
    try:
        detail = check()
        passed: bool | None = True
        if isinstance(detail, tuple):  # (None, reason): the check did not apply
            passed, detail = detail
    except Exception as e:  # noqa: BLE001 (every failure is reported, the other checks still run)
        passed, detail = False, f"{type(e).__name__}: {e}"
    report.checks.append(Check(name, passed, detail or "", time.perf_counter() - start))


def build_network(
    bundle_dir: str | Path, spec: NetworkSpec, meta_file: str | Path, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Instantiate network ``spec.net_id`` from the bundle's config (evaluates the config: trusted bundles only)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(Path(bundle_dir) / c) for c in spec.config_files])
    parser.read_meta(str(meta_file))
    parser["bundle_root"] = str(bundle_dir)
    network = parser.get_parsed_content(spec.net_id, instantiate=True)
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"config id '{spec.net_id}' is a {type(network).__name__}, not a torch.nn.Module.")
    return network.to(device)


def _load_weights(network: torch.nn.Module, path: Path) -> torch.nn.Module:
    from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint

    return load_state_dict_checked(network, read_checkpoint(path))


def _positional_inputs(
    network: torch.nn.Module, image: torch.Tensor, extra: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """The forward arguments in signature order: ``image`` first, then the declared inputs by parameter name."""
    parameters = list(inspect.signature(network.forward).parameters.values())
    unknown = set(extra) - {p.name for p in parameters[1:]}
    if unknown:
        raise ValueError(f"{type(network).__name__}.forward has no parameter(s) {sorted(unknown)} declared as "
                         f"inputs in the metadata; it takes {[p.name for p in parameters]}.")
    args = [image]
    for parameter in parameters[1:]:
        if parameter.name not in extra:
            if parameter.default is inspect.Parameter.empty:
                raise ValueError(f"{type(network).__name__}.forward needs '{parameter.name}', which the metadata "
                                 "does not declare as an input.")
            break
        args.append(extra[parameter.name])
    if len(args) != len(extra) + 1:
        raise ValueError(f"the metadata inputs {sorted(extra)} of {type(network).__name__} are not the leading "
                         f"parameters of its forward {[p.name for p in parameters]}.")
    return tuple(args)


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(a.abs().max().clamp_min(torch.finfo(a.dtype).tiny))
    return float((a - b).abs().max()) / scale


def export_torchscript(
    bundle_dir: str | Path,
    spec: NetworkSpec,
    weights: str | Path,
    filepath: str | Path,
    meta: Mapping[str, Any] | None = None,
    rtol: float = 1e-4,
) -> float:
    """Export one network with its weights to TorchScript (MONAI's ``ckpt_export`` format) by tracing.

    MONAI's ``ckpt_export`` traces with the ``image`` input only; medgen's networks also take a noise level or
    diffusion step (and conditioning), so this traces ``network(image, *declared inputs)`` with MONAI's
    ``convert_to_torchscript`` and saves with ``save_net_with_metadata`` (metadata and the network's configs as extra
    files, as ``ckpt_export`` does). Scripting (``torch.jit.script``, ``ckpt_export`` without ``use_trace``) fails
    for every medgen network: their layers use Python typing constructs TorchScript does not compile
    (``Sequence[...]``, ``X | None`` unions, ``functools.lru_cache``). Trace sanity checks are off because
    NCSN++'s FIR kernels are cached across calls (the first call records the kernel construction, later calls a
    constant); instead the traced module is compared with the eager network on the example and on a second input
    of the same shape.

    Args:
        bundle_dir: the bundle folder.
        spec: the network (see :func:`medgen.zoo.metadata.bundle_networks`).
        weights: a state-dict file of the network.
        filepath: the ``.ts`` file to write.
        meta: the bundle metadata (default: read from the bundle).
        rtol: largest difference between traced and eager outputs, relative to the output's maximum.

    Returns:
        the largest relative difference measured.

    Raises:
        ValueError: the traced module's output differs by more than ``rtol``.
    """
    from monai.data import save_net_with_metadata
    from monai.networks.utils import convert_to_torchscript

    bundle_dir = Path(bundle_dir)
    meta = dict(meta) if meta is not None else read_metadata(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        meta_file = Path(tmp) / "metadata.json"
        meta_file.write_text(json.dumps(meta))
        network = _load_weights(build_network(bundle_dir, spec, meta_file), Path(weights)).eval()
    data_format = meta[spec.data_format]
    example = _positional_inputs(network, *example_inputs(data_format, **spec.verify_args))
    second = _positional_inputs(network, *example_inputs(data_format, **spec.verify_args, seed=1))
    with warnings.catch_warnings():
        # the tracer warns about tensors made from Python values (FIR kernels, embedding tables): they are
        # constants of the network, which is what the trace records; the comparisons below check the result
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = convert_to_torchscript(network, inputs=list(example), use_trace=True, check_trace=False)
    extra_files = {f"{Path(c).stem}.json": json.dumps(json.loads((bundle_dir / c).read_text())).encode()
                   for c in spec.config_files}
    save_net_with_metadata(traced, str(filepath), include_config_vals=False, append_timestamp=False,
                           meta_values=meta, more_extra_files=extra_files)
    from monai.data import load_net_with_metadata

    loaded, _, _ = load_net_with_metadata(str(filepath), map_location="cpu")
    worst = 0.0
    with torch.no_grad():
        for inputs in (example, second):
            expected = network(*inputs)
            worst = max(worst, _relative_difference(expected, traced(*inputs)),
                        _relative_difference(expected, loaded(*inputs)))
    if worst > rtol:
        raise ValueError(f"the traced {spec.net_id} differs from the eager network by {worst:.2e} (relative) > {rtol}.")
    return worst


def _check_layout(bundle_dir: Path) -> str:
    missing = [f for f in _REQUIRED_FILES if not (bundle_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"missing {missing}")
    if not (bundle_dir / "models" / "model.pt").is_file():
        return "models/model.pt absent (model-zoo's preferred weights name; the networks' weights are declared in "\
               "metadata 'networks')"
    return ""


def _check_version(meta: Mapping[str, Any]) -> str:
    version = meta.get("version")
    if not version or version not in meta.get("changelog", {}):
        raise ValueError(f"version {version!r} has no entry in 'changelog'.")
    return f"version {version}"


def _check_metadata(meta: Mapping[str, Any], specs: Sequence[NetworkSpec]) -> str:
    from jsonschema import validate

    validate_metadata(meta)
    schema = json.loads(SCHEMA_PATH.read_text())
    block_schema = {"definitions": schema["definitions"], "$ref": "#/definitions/data_format"}
    blocks = sorted({s.data_format for s in specs} - {"network_data_format"})
    for block in blocks:
        validate(meta[block], block_schema)
        for side, key in (("inputs", "image"), ("outputs", "pred")):
            if key not in meta[block][side]:
                raise ValueError(f"metadata '{block}' needs {side}.{key} (what verify_net_in_out reads).")
    return "schema " + SCHEMA_PATH.name + (f"; also {blocks}" if blocks else "")


def _check_large_files(bundle_dir: Path, meta: Mapping[str, Any], specs: Sequence[NetworkSpec], variant: bool) -> str:
    weights = sorted({w for s in specs for w in s.weights})
    path = bundle_dir / LARGE_FILES_NAME
    if variant or not path.is_file():
        if not variant:
            raise FileNotFoundError(f"no {LARGE_FILES_NAME} (model-zoo's list of weight files)")
        large_file_entries(bundle_dir, bundle_dir.name, meta["version"], weights)
        return f"{len(weights)} weight file(s) present; {LARGE_FILES_NAME} is written by pack for a variant"
    from monai.apps.utils import check_hash

    declared = {e["path"]: e for e in read_large_files(path)}
    unlisted = sorted(set(weights) - set(declared))
    if unlisted:
        raise ValueError(f"weights {unlisted} are not listed in {LARGE_FILES_NAME}")
    for weight in weights:
        entry = declared[weight]
        if not (bundle_dir / weight).is_file():
            raise FileNotFoundError(f"'{weight}' is missing: fetch it with `python -m monai.bundle "
                                    f"download_large_files --bundle_path {bundle_dir}`")
        if not check_hash(bundle_dir / weight, entry["hash_val"], entry["hash_type"]):
            raise ValueError(f"'{weight}' does not match its {entry['hash_type']} in {LARGE_FILES_NAME}")
    return f"{len(weights)} weight file(s) match their {', '.join(sorted({e['hash_type'] for e in declared.values()}))}"


def _check_weights(bundle_dir: Path, spec: NetworkSpec, meta_file: Path) -> str:
    sizes = []
    for weight in spec.weights:
        network = _load_weights(build_network(bundle_dir, spec, meta_file), bundle_dir / weight)
        sizes.append(f"{weight} ({sum(p.numel() for p in network.parameters()):,} parameters)")
    return ", ".join(sizes)


def _check_net_in_out(bundle_dir: Path, spec: NetworkSpec, meta: Mapping[str, Any], meta_file: Path) -> str:
    from monai.bundle import verify_net_in_out

    data_format = meta[spec.data_format]
    _, extra = example_inputs(data_format, **spec.verify_args)
    override = {} if spec.data_format == "network_data_format" else {"_meta_#network_data_format": data_format}
    configs = [str(bundle_dir / c) for c in spec.config_files]
    verify_net_in_out(net_id=spec.net_id, meta_file=str(meta_file), config_file=configs, device="cpu",
                      extra_forward_args=extra, bundle_root=str(bundle_dir), **spec.verify_args, **override)
    image = data_format["inputs"]["image"]
    return f"image {image['num_channels']} ch {image['spatial_shape']}" + (f" + {sorted(extra)}" if extra else "")


def _check_torchscript(bundle_dir: Path, spec: NetworkSpec, meta: Mapping[str, Any], work: Path):
    if spec.torchscript != "trace":
        return None, f"not exported: {spec.torchscript}"
    worst = export_torchscript(bundle_dir, spec, bundle_dir / spec.weights[0], work / f"{spec.net_id}.ts", meta)
    return f"traced with {spec.weights[0]}; max relative difference to eager {worst:.1e}"


def _override_args(overrides: Mapping[str, Any]) -> list[str]:
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return args


def _check_smoke(bundle_dir: Path, meta: Mapping[str, Any], meta_file: Path, work: Path, timeout: float):
    smoke = meta.get("smoke_test")
    if not smoke:
        return None, "metadata has no smoke_test"
    config = smoke.get("config_file", "configs/inference.json")
    configs = [config] if isinstance(config, str) else list(config)
    config_arg = str(bundle_dir / configs[0]) if len(configs) == 1 else repr([str(bundle_dir / c) for c in configs])
    output_dir = work / "smoke_outputs"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg, "--meta_file", str(meta_file),
               "--bundle_root", str(bundle_dir), "--output_dir", str(output_dir),
               *_override_args(smoke.get("overrides", {}))]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[1:])}` exited with {result.returncode}: {result.stderr[-2000:]}")
    written = sorted(p.name for p in output_dir.glob("*") if p.is_file())
    if not written:
        raise RuntimeError("the smoke run wrote no output")
    return f"{len(written)} output file(s): {', '.join(written[:4])}" + (" ..." if len(written) > 4 else "")


def verify_bundle(
    bundle_dir: str | Path,
    variant: str | None = None,
    smoke: bool = True,
    torchscript: bool = True,
    timeout: float = 600.0,
    trust: bool = False,
) -> VerifyReport:
    """Run every check of the module docstring on a bundle folder.

    Args:
        bundle_dir: the bundle folder.
        variant: check the metadata variant ``configs/metadata_<variant>.json`` (e.g. ``"official"``) instead.
        smoke: run the bundle's smoke test.
        torchscript: export every network to TorchScript.
        timeout: seconds allowed for the smoke run.
        trust: the user trusts the bundle's publisher: its configs may be evaluated although they hold code
            (:func:`config_code`). Without it such a bundle fails the ``trust`` check and the checks that would
            evaluate its configs (weights, net_in_out, torchscript, smoke) are not run.

    Returns:
        the report (``report.ok`` tells whether every check passed).
    """
    bundle_dir = Path(bundle_dir).resolve()
    meta = read_metadata(bundle_dir, variant)
    report = VerifyReport(bundle_dir.name, str(meta.get("version")))
    specs: list[NetworkSpec] = []

    def networks() -> str:
        specs.extend(bundle_networks(meta))
        return ", ".join(s.net_id for s in specs)

    _run_check(report, "layout", lambda: _check_layout(bundle_dir))
    _run_check(report, "version", lambda: _check_version(meta))
    _run_check(report, "networks", networks)
    _run_check(report, "metadata", lambda: _check_metadata(meta, specs))
    _run_check(report, "large_files", lambda: _check_large_files(bundle_dir, meta, specs, variant is not None))
    code = config_code(bundle_dir)
    if code and not trust:
        report.checks.append(Check("trust", False, (
            f"the configs hold code that running them would evaluate ({len(code)} item(s), e.g. {code[0]}); the "
            "networks were not built and nothing was run: pass trust=True (medgen zoo verify --trust) only for a "
            "bundle whose publisher you trust"
        )))
        return report
    with tempfile.TemporaryDirectory(prefix="medgen-zoo-verify-") as tmp:
        work = Path(tmp)
        meta_file = work / "metadata.json"
        meta_file.write_text(json.dumps(meta))
        for spec in specs:
            _run_check(report, f"weights:{spec.net_id}", lambda s=spec: _check_weights(bundle_dir, s, meta_file))
            _run_check(report, f"net_in_out:{spec.net_id}",
                       lambda s=spec: _check_net_in_out(bundle_dir, s, meta, meta_file))
            if torchscript:
                _run_check(report, f"torchscript:{spec.net_id}",
                           lambda s=spec: _check_torchscript(bundle_dir, s, meta, work))
        if smoke:
            _run_check(report, "smoke", lambda: _check_smoke(bundle_dir, meta, meta_file, work, timeout))
    return report
