"""One entry point for every official checkpoint format: :func:`from_official`."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["OFFICIAL_KINDS", "from_official"]

# kind -> "module:function"; each loader takes (checkpoint, config, **options) and returns a loaded nn.Module.
OFFICIAL_KINDS: dict[str, str] = {
    "score_sde_ncsnpp": "medgen.networks.ncsnpp:ncsnpp_from_official",
    "score_sde_ddpm": "medgen.networks.ddpm:ddpm_from_official",
    "guided_unet": "medgen.networks.guided_unet:guided_unet_from_official",
    "wdm_wavunet": "medgen.networks.wavunet:wavunet_from_official",
    "sdm_unet": "medgen.networks.sdm_unet:sdm_unet_from_official",
    "padis_edm": "medgen.networks.songunet:padis_from_official",
}


def _loader(kind: str) -> Callable[..., nn.Module]:
    if kind not in OFFICIAL_KINDS:
        raise ValueError(f"kind must be one of {sorted(OFFICIAL_KINDS)}, got '{kind}'.")
    module_name, function_name = OFFICIAL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def from_official(
    kind: str, checkpoint: str | os.PathLike | Mapping[str, Any], config: Mapping[str, Any], **options: Any
) -> nn.Module:
    """Build a medgen network from an official checkpoint and the official configuration.

    Args:
        kind: the official code base and network: ``"score_sde_ncsnpp"`` (TPDM), ``"score_sde_ddpm"`` (HFS-SDE),
            ``"guided_unet"`` (WDM, cWDM), ``"wdm_wavunet"`` (WDM), ``"sdm_unet"`` (CTCA SDM), ``"padis_edm"`` (PaDIS).
        checkpoint: a path to the official file (``.pth``/``.pt``/``.pkl``) or an already-loaded dict/state dict in
            the official layout.
        config: the official configuration, with the official field names (as stored in the parity files); an
            ``ml_collections.ConfigDict`` (score_sde) is accepted too. Every loader checks it before reading
            ``checkpoint``.
        options: loader options: ``use_ema`` for score_sde checkpoints (default True for ``"score_sde_ncsnpp"``,
            False for ``"score_sde_ddpm"``, the weights each method samples with), ``key`` for ``"padis_edm"``
            snapshots (default ``"ema"``); the guided-diffusion kinds take none.

    Returns:
        the network, loaded, in eval mode, on the CPU.

    Raises:
        ValueError: unknown ``kind``, or a config value the network does not support.
        TypeError: ``config`` is not a mapping, or an option the loader does not take.
        CheckpointMismatchError: the checkpoint does not fit the configuration (lists missing, unexpected and
            mis-shaped keys).

    Example::

        net = from_official("score_sde_ncsnpp", "BMR_ZSR_256_YZ/checkpoint.pth", config)
    """
    loader = _loader(kind)
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):  # ml_collections.ConfigDict (score_sde)
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of official config fields, got {type(config).__name__}.")
    return loader(checkpoint, config, **options).eval()
