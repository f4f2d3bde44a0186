"""The ``medgen`` command (python-fire): convert official checkpoints, run the demo.

Examples::

    medgen convert score_sde_ncsnpp BMR_ZSR_256_YZ/checkpoint.pth --config ncsnpp_config.json \
        --output bundles/tpdm_brain_mri/models/primary.pt
    medgen demo --output_dir outputs/demo
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


__all__ = ["convert", "demo", "main"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(
    kind: str, checkpoint: str, config: str, output: str, overwrite: bool = False, **options: Any
) -> str:
    """Convert an official checkpoint into medgen's format: a plain ``state_dict`` file plus a JSON sidecar.

    Args:
        kind: one of :data:`medgen.networks.convert.OFFICIAL_KINDS` (e.g. ``score_sde_ncsnpp``).
        checkpoint: path to the official checkpoint (``.pth``, ``.pt`` or EDM ``.pkl``).
        config: path to a JSON file holding the official configuration fields.
        output: where to write the converted ``state_dict`` (``.pt``); ``<output>.json`` records kind, config and the
            source file's SHA-256. Typically ``bundles/<name>/models/<role>.pt``.
        overwrite: replace an existing ``output``; without it an existing file is an error.
        options: passed to the loader (e.g. ``use_ema=False``).

    Returns:
        the output path.
    """
    from medgen.engines.writers import save_state_dict
    from medgen.networks.convert import from_official

    source, config_path, target = Path(checkpoint), Path(config), Path(output)
    if not config_path.is_file():
        raise FileNotFoundError(f"config must be a JSON file of official config fields, '{config_path}' not found.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"output '{target}' exists; pass --overwrite to replace it.")
    if target.resolve() in (source.resolve(), config_path.resolve()):
        raise ValueError(f"output '{target}' would overwrite an input file.")
    official_config = json.loads(config_path.read_text())
    network = from_official(kind, source, official_config, **options)
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


def demo(output_dir: str = "outputs/demo", size: int = 64, seed: int = 0) -> None:
    """Physics round trip on the procedural brain phantom: z-axis super-resolution and sparse-view CT.

    Writes ``phantom.nii.gz``, ``zaxis_lowres.nii.gz``, ``zaxis_pinv.nii.gz``, ``ct_fbp.nii.gz``, a PNG of the three
    orthogonal mid-slices of each and ``metrics.json`` into ``output_dir``, and prints the metrics.
    """
    from medgen.demo import physics_round_trip

    physics_round_trip(output_dir=output_dir, size=size, seed=seed)


def main() -> None:
    import fire

    fire.Fire({"convert": convert, "demo": demo})


if __name__ == "__main__":
    main()
