"""What the examples share: their command line, the demo weights of a bundle and running a SupervisedEvaluator."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose

from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def arguments(description: str, bundle: str, steps: int, argv: Sequence[str] | None) -> argparse.Namespace:
    """``--bundle_root``, ``--output_dir``, ``--steps``, ``--seed``, ``--device``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle_root", type=Path, default=BUNDLES / bundle, help="bundle with demo weights + sample")
    parser.add_argument("--output_dir", type=Path, default=Path("outputs") / "examples", help="where SaveImaged writes")
    parser.add_argument("--steps", type=int, default=steps, help="sampling steps")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def weights(network: torch.nn.Module, path: Path, device: str) -> torch.nn.Module:
    """``network`` with the weights of ``path`` (strictly checked), on ``device``, in eval mode."""
    return load_state_dict_checked(network, read_checkpoint(path)).to(device).eval()


def evaluate(
    items: list[dict[str, Any]],
    preprocessing: Compose,
    network: Any,
    inferer: Any,
    postprocessing: Compose,
    device: str,
    prepare_batch: Any = None,
    decollate: bool = True,
) -> dict[str, Any]:
    """Run ``inferer`` over ``items`` in a plain MONAI ``SupervisedEvaluator``; returns the last iteration's output.

    ``decollate=False`` when the inferer's batch is not the loader's batch (e.g. the slices of one volume).
    """
    loader = DataLoader(Dataset(items, transform=preprocessing), batch_size=1, num_workers=0)
    options = {} if prepare_batch is None else {"prepare_batch": prepare_batch}
    evaluator = SupervisedEvaluator(device=torch.device(device), val_data_loader=loader, network=network,
                                    inferer=inferer, postprocessing=postprocessing, decollate=decollate, **options)
    evaluator.run()
    return evaluator.state.output
