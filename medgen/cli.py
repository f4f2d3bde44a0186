"""The ``medgen`` command (python-fire): convert official checkpoints, run the demo, publish and fetch bundles.

The docstrings of the command functions are what ``medgen <command> --help`` shows, so they are plain text.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any


__all__ = ["convert", "demo", "zoo_pack", "zoo_verify", "zoo_index", "zoo_download", "zoo_list", "main"]

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(
    kind: str, checkpoint: str, config: str, output: str, overwrite: bool = False, **options: Any
) -> str:
    """Convert an official checkpoint into medgen's format: a plain state_dict file plus a JSON sidecar.

    KIND is one of medgen.networks.convert.OFFICIAL_KINDS.
    <output>.json records kind, config and the source file's SHA-256.
    A refused conversion (unknown kind, missing or damaged file, mismatched weights, existing output) prints one
    line on stderr and exits with status 1; nothing is written.

    Example (the TPDM primary network):
    medgen convert score_sde_ncsnpp BMR_ZSR_256_YZ/checkpoint.pth
        --config bundles/tpdm_brain_mri/configs/official_ncsnpp_256.json
        --output bundles/tpdm_brain_mri/models/bmr_zsr_256_yz.pt

    Args:
        kind: the official code base and network (see KIND above).
        checkpoint: path to the official checkpoint (.pth, .pt or EDM .pkl).
        config: path to a JSON file of the official configuration fields (bundles ship configs/official_*.json).
        output: where to write the state_dict (.pt): the bundles/<name>/models/ file its official config reads.
        overwrite: replace an existing output; without it an existing file is an error.
        options: passed to the loader (e.g. --use_ema False).

    Returns:
        the output path.
    """
    import pickle

    from medgen.engines.training import save_state_dict
    from medgen.networks import CheckpointMismatchError
    from medgen.networks.convert import from_official

    source, target = Path(checkpoint), Path(output)
    try:
        official_config = _check_convert_arguments(kind, source, Path(config), target, overwrite)
        network = from_official(kind, source, official_config, **options)
    except (*_user_errors(), pickle.UnpicklingError, CheckpointMismatchError) as e:
        raise _CommandError("convert", e) from e
    save_state_dict(network, target, main_process_only=False)
    sidecar = {
        "kind": kind,
        "config": official_config,
        "options": options,
        "source": source.name,
        "source_sha256": _sha256(source),
        "num_parameters": sum(p.numel() for p in network.parameters()),
    }
    tmp = target.with_name(f".{target.name}.json.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, default=str))
    os.replace(tmp, target.with_name(target.name + ".json"))
    print(f"wrote {target} ({sidecar['num_parameters']:,} parameters)")
    return str(target)


def _check_convert_arguments(kind: str, source: Path, config_path: Path, target: Path, overwrite: bool) -> dict:
    """The official config of a ``convert`` call, after the checks that need no loading (each names its argument)."""
    from medgen.checks import check_choice, check_folder
    from medgen.networks.convert import OFFICIAL_KINDS

    check_choice(kind, "kind", sorted(OFFICIAL_KINDS))
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint '{source}' is not a file; give the official checkpoint (.pth, .pt, .pkl).")
    if not config_path.is_file():
        raise FileNotFoundError(f"config must be a JSON file of official config fields, '{config_path}' not found.")
    try:
        official_config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config '{config_path}' is not JSON: {e}.") from e
    if not isinstance(official_config, dict):
        raise ValueError(f"config '{config_path}' must hold a JSON object of official config fields, got "
                         f"{type(official_config).__name__}.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"output '{target}' exists; pass --overwrite to replace it.")
    if target.resolve() in (source.resolve(), config_path.resolve()):
        raise ValueError(f"output '{target}' would overwrite an input file.")
    check_folder(target.parent, "the folder of output")  # created when the weights are written
    return official_config


def demo(output_dir: str = "outputs/demo", size: int = 64, seed: int = 0) -> None:
    """Physics round trip on the procedural brain phantom: z-axis super-resolution and sparse-view CT.

    Writes phantom.nii.gz, zaxis_lowres.nii.gz, zaxis_pinv.nii.gz, ct_fbp.nii.gz, a PNG of the three orthogonal
    mid-slices of each and metrics.json into output_dir, and prints the metrics.

    Args:
        output_dir: folder for the outputs (existing files are not overwritten).
        size: edge length of the cubic phantom in voxels.
        seed: seed of the phantom.
    """
    from medgen.demo import physics_round_trip

    physics_round_trip(output_dir=output_dir, size=size, seed=seed)


class _CommandError(SystemExit):
    """A refused command: one line ``medgen <command>: <error type>: <message>`` on stderr, exit status 1."""

    def __init__(self, command: str, error: BaseException) -> None:
        print(f"medgen {command}: {type(error).__name__}: {error}", file=sys.stderr)
        super().__init__(1)


def _user_errors() -> tuple[type[BaseException], ...]:
    from monai.apps.utils import HashCheckError

    return ValueError, TypeError, LookupError, OSError, HashCheckError


def zoo_pack(
    *bundles: str,
    output_dir: str = "zoo",
    variant: str | None = None,
    weights: str = "include",
    base_url: str | None = None,
    overwrite: bool = False,
) -> None:
    """Pack bundle folders into versioned archives <name>_v<version>.zip with a SHA-256 manifest.

    Example: medgen zoo pack bundles/tpdm_brain_mri bundles/wdm_brain_mri --output_dir zoo

    Official weights: convert them into the bundle's models/ folder with medgen convert, then
    medgen zoo pack bundles/tpdm_brain_mri --variant official packs them as version 1.0.0+official (from
    configs/metadata_official.json) without the demo weights; the demo version is packed as before.

    Args:
        bundles: bundle folders (e.g. bundles/tpdm_brain_mri).
        output_dir: the zoo folder the archives are written to.
        variant: pack configs/metadata_<variant>.json as its own version (e.g. official; see below).
        weights: include (weights inside the archive) or external (next to it, fetched through large_files.yml).
        base_url: URL the zoo will be served at, to write absolute weight URLs into large_files.yml.
        overwrite: replace existing archives of the same name and version.
    """
    from medgen.zoo import pack_bundle

    if not bundles:
        raise _CommandError("zoo", ValueError("give at least one bundle folder, e.g. medgen zoo pack "
                                              "bundles/tpdm_brain_mri"))
    for bundle in bundles:
        try:
            archive = pack_bundle(bundle, output_dir, variant, weights, base_url, overwrite)
        except _user_errors() as e:
            raise _CommandError("zoo", e) from e
        print(f"packed {bundle} -> {archive} ({archive.stat().st_size:,} bytes)")


def zoo_verify(
    *bundles: str, variant: str | None = None, smoke: bool = True, torchscript: bool = True, trust: bool = False
) -> None:
    """Run MONAI model-zoo's checks and the bundle's smoke test on bundle folders; exit 1 if any check fails.

    Checks: required files, version in changelog, metadata against MONAI's bundle metadata schema (offline),
    large_files.yml hashes, weights load into each network, verify_net_in_out per network, TorchScript export per
    network, and a tiny inference run (python -m monai.bundle run with the metadata's smoke_test settings).
    This builds the networks and runs the bundle's configs, which are code ($ expressions, _target_ outside monai,
    medgen, torch.nn, torch.utils.data): without --trust such a bundle fails the trust check and nothing of it runs.
    Pass --trust only for bundles whose publisher you trust.

    Example: medgen zoo verify bundles/tpdm_brain_mri --trust

    Args:
        bundles: bundle folders.
        variant: verify the metadata variant configs/metadata_<variant>.json (e.g. official) instead.
        smoke: run the smoke test.
        torchscript: export every network to TorchScript.
        trust: evaluate the bundle's configs although they hold code (you trust its publisher).
    """
    from medgen.zoo import verify_bundle

    failed = []
    for bundle in bundles:
        report = verify_bundle(bundle, variant=variant, smoke=smoke, torchscript=torchscript, trust=trust)
        print(report)
        if not report.ok:
            failed.append(bundle)
    if failed:
        raise _CommandError("zoo", RuntimeError(f"checks failed for {failed}"))


def zoo_index(zoo_dir: str = "zoo", base_url: str | None = None, output: str | None = None) -> None:
    """Write index.json listing every packed bundle of a zoo folder (name, version, task, sha256, size, url).

    The folder can then be served by any static HTTP server (or used as a path).

    Example: medgen zoo index zoo --base_url https://example.org/zoo

    Args:
        zoo_dir: folder of <name>_v<version>.zip archives.
        base_url: URL the folder will be served at (absolute entry URLs); default URLs relative to the index.
        output: index path (default <zoo_dir>/index.json).
    """
    from medgen.zoo import read_index, write_index

    try:
        path = write_index(zoo_dir, base_url, output)
    except _user_errors() as e:
        raise _CommandError("zoo", e) from e
    entries, _ = read_index(path)
    print(f"wrote {path}: {len(entries)} bundle(s)")


def zoo_download(
    name: str, index: str, bundle_dir: str = "bundles", version: str | None = None, overwrite: bool = False
) -> None:
    """Download a bundle from a zoo into <bundle_dir>/<name>, checked against the index's SHA-256.

    The archive is unpacked with MONAI's download code after refusing entries that would land outside the bundle
    folder, every file is checked against the archive's checksums.sha256, and weights listed in large_files.yml
    are fetched and checked against their hash. An installed bundle of another version is not replaced without
    --overwrite. Download never runs anything from the bundle: its configs are code (MONAI evaluates their $
    expressions), so run a downloaded bundle only if you trust its publisher.

    A zoo is a folder or static HTTP server with index.json (medgen zoo index), or a Hugging Face model repository
    holding one bundle (hf://owner/repo[@revision] or https://huggingface.co/owner/repo, fetched through MONAI's
    huggingface_hub source; needs pip install huggingface_hub).

    Example: medgen zoo download tpdm_brain_mri --index https://example.org/zoo/index.json --bundle_dir bundles

    Args:
        name: bundle name (see medgen zoo list).
        index: the zoo: index.json or its folder (path, file://, http(s):// URL), or hf://owner/repo[@revision].
        bundle_dir: folder to install into.
        version: version to fetch (default: the highest in the index).
        overwrite: replace an installed bundle of another version.
    """
    from medgen.zoo import download_bundle

    try:
        target = download_bundle(name, index, bundle_dir, None if version is None else str(version), overwrite)
    except _user_errors() as e:
        raise _CommandError("zoo", e) from e
    meta = json.loads((target / "configs" / "metadata.json").read_text())
    print(f"installed {name} {meta.get('version')} in {target}")
    print(f"run it (only if you trust it): python -m monai.bundle run --config_file {target}/configs/inference.json "
          f"--bundle_root {target}")


def zoo_list(index: str = "zoo") -> None:
    """List the bundles of a zoo index (name, version, size, task).

    Example: medgen zoo list https://example.org/zoo/index.json

    Args:
        index: the zoo's index.json or folder (path, file://, http:// or https:// URL).
    """
    from medgen.zoo import read_index

    try:
        entries, url = read_index(index)
    except _user_errors() as e:
        raise _CommandError("zoo", e) from e
    print(f"{url}: {len(entries)} bundle(s)")
    width = max((len(e.name) for e in entries), default=4)
    for entry in sorted(entries, key=lambda e: (e.name, e.version)):
        print(f"  {entry.name:<{width}}  {entry.version:<16} {entry.size / 1e6:7.1f} MB  {entry.task}")


def _bundle_lines() -> list[str]:
    if not BUNDLES_DIR.is_dir():
        return ["  (no bundles folder next to this installation: fetch bundles with medgen zoo download)"]
    lines = []
    for meta_file in sorted(BUNDLES_DIR.glob("*/configs/metadata.json")):
        bundle = meta_file.parents[1]
        try:
            title = json.loads(meta_file.read_text()).get("name", "")
        except (OSError, json.JSONDecodeError):
            title = ""
        try:
            shown = bundle.relative_to(Path.cwd())
        except ValueError:
            shown = bundle
        lines += [f"  {bundle.name}: {title}",
                  f"    python -m monai.bundle run --config_file {shown}/configs/inference.json --bundle_root {shown}"]
    return lines


def overview() -> str:
    """The text of ``medgen --help``."""
    return "\n".join([
        "medgen: five published 3D medical-imaging diffusion methods (TPDM, WDM/cWDM, PaDIS, HFS-SDE, CTCA SDM)",
        "as MONAI transforms, networks, inferers and bundles.",
        "",
        "The main way to use medgen is its MONAI bundles. Each runs on a small sample it ships:",
        *_bundle_lines(),
        "Parameters are config keys, overridable on the command line (e.g. --steps 20 --seed 3 --output_dir out).",
        "",
        "usage: medgen COMMAND [ARGS]   (medgen COMMAND --help for details)",
        "  convert       convert an official checkpoint into medgen's format",
        "  demo          physics round trip on a brain phantom (no network)",
        "  zoo pack      pack bundles into versioned archives",
        "  zoo verify    run MONAI model-zoo's checks and the bundle's smoke test",
        "  zoo index     write the index of a zoo folder",
        "  zoo download  fetch a bundle from a zoo (folder, HTTP server or Hugging Face repository)",
        "  zoo list      list the bundles of a zoo",
        "",
        "Security: bundle configs are code (MONAI evaluates their $ expressions), so run only bundles you trust.",
        "Weights load without running code (torch.load weights_only=True; a restricted unpickler for EDM .pkl).",
    ])


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview())
        return
    import fire

    from medgen.networks.convert import OFFICIAL_KINDS

    convert.__doc__ = convert.__doc__.replace("medgen.networks.convert.OFFICIAL_KINDS", ", ".join(OFFICIAL_KINDS))
    zoo = {"pack": zoo_pack, "verify": zoo_verify, "index": zoo_index, "download": zoo_download, "list": zoo_list}
    fire.Fire({"convert": convert, "demo": demo, "zoo": zoo}, name="medgen")


if __name__ == "__main__":
    main()
