"""Writing trained weights: a network's plain state dict, atomically, by the main process only."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medgen.engines.training.ema import unwrap_network
from medgen.engines.training.step import distributed_rank
from medgen.engines.writers.atomic import write_atomically

__all__ = ["save_state_dict"]


def save_state_dict(network: torch.nn.Module, path: str | os.PathLike, main_process_only: bool = True) -> Path | None:
    """Save ``network``'s plain ``state_dict`` (wrappers removed) to ``path`` atomically (temporary file + rename).

    Used by bundles to write ``models/model.pt`` only after training completed (an interrupted run never replaces
    the previous weights).

    Args:
        network: the module (``DataParallel``/``DistributedDataParallel`` are unwrapped).
        path: the ``.pt`` file to write (its folder is created).
        main_process_only: under ``torch.distributed``, only rank 0 writes.

    Returns:
        the written path, or ``None`` on a rank that does not write.

    Raises:
        TypeError: ``network`` is not an ``nn.Module``.
    """
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    if main_process_only and distributed_rank() != 0:
        return None
    state = {k: v.detach().cpu() for k, v in unwrap_network(network).state_dict().items()}
    return write_atomically(path, lambda tmp: torch.save(state, tmp), overwrite=True)

