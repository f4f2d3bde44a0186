"""Reading checkpoints safely and loading them into modules with errors that say what does not match."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgen.networks.precision import PrecisionNetwork

__all__ = [
    "CheckpointMismatchError",
    "network_parameter",
    "network_device_dtype",
    "check_network_attribute",
    "load_weights_only",
    "read_checkpoint",
    "strip_prefix",
    "load_state_dict_checked",
    "apply_ordered_ema",
    "build_uninitialized",
]


class CheckpointMismatchError(RuntimeError):
    """A state dict does not fit a module; the message lists missing, unexpected and mis-shaped keys."""


def network_parameter(network: Any) -> torch.Tensor | None:
    """The first floating-point parameter of ``network`` (or of the first module of a tuple/list/``ModuleDict``).

    Inferers read the device and dtype a network computes in from it; ``None`` for a plain callable.
    """
    if isinstance(network, nn.ModuleDict):
        candidates: Sequence[Any] = list(network.values())
    elif isinstance(network, (tuple, list, nn.ModuleList)):
        candidates = list(network)
    else:
        candidates = [network]
    for candidate in candidates:
        if isinstance(candidate, nn.Module):
            for parameter in candidate.parameters():
                if parameter.is_floating_point():
                    return parameter
    return None


def network_device_dtype(network: Any, data: torch.Tensor | None = None) -> tuple[torch.device, torch.dtype]:
    """Where and in what a sampler computes: the data's device (as MONAI's inferers), else the network's, else the
    CPU; the network's dtype, else the data's floating dtype, else float32."""
    parameter = network_parameter(network)
    device = data.device if data is not None else parameter.device if parameter is not None else torch.device("cpu")
    if parameter is not None:
        return device, parameter.dtype
    return device, data.dtype if data is not None and data.is_floating_point() else torch.float32


def check_network_attribute(network: Any, attribute: str, expected: int, why: str = "") -> None:
    """Raise a ``ValueError`` when the (unwrapped) network declares an int ``attribute`` other than ``expected``
    (``why`` explains the expectation in the message); networks without it pass."""
    found = getattr(unwrap_network(network), attribute, None)
    if isinstance(found, int) and not isinstance(found, bool) and found != expected:
        raise ValueError(f"network.{attribute} must be {expected}{why}, got {found}.")


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name the file and say why.

    The one place medgen reads a ``torch.save`` file (weights, training checkpoints, sampling states): only tensors,
    storages, numbers, strings and plain containers are rebuilt, so no code from the file runs.

    Args:
        path: an existing file.
        what: what the file is, for messages (e.g. ``"checkpoint"``, ``"resume_from"``).

    Raises:
        pickle.UnpicklingError: the file holds other Python objects (their loading could run code); nothing from the
            file was called.
        ValueError: an empty, truncated or damaged file, or not a ``torch.save`` file at all.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{what} '{path}' is empty (0 bytes): an interrupted write, not a checkpoint.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's first paragraph advises weights_only=False, which would run the file's code: keep the reason only
        reasons = [line for line in str(e).splitlines()[1:] if line.strip() and not line.startswith("Check the")]
        if "GLOBAL" not in str(e):  # not an object named by module and name: a damaged or foreign file
            raise ValueError(
                f"{what} '{path}' is not a complete torch.save file ({size} bytes; truncated, damaged or another "
                f"format): {reasons[-1].strip() if reasons else str(e).splitlines()[0]}"
            ) from e
        raise pickle.UnpicklingError(
            f"{what} '{path}' is refused: it holds Python objects other than tensors and plain containers, and "
            f"loading them could run code from the file ({reasons[0].strip() if reasons else 'unsupported object'}). "
            "medgen reads weights only; official checkpoints are converted with `medgen convert`."
        ) from e
    except Exception as e:  # noqa: BLE001 (EOFError, RuntimeError, IndexError, ...: the file is not a whole checkpoint)
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(
            f"{what} '{path}' is not a complete torch.save file ({size} bytes; truncated, damaged or another format): "
            f"{type(e).__name__}{': ' + first_line if first_line else ''}"
        ) from e


def read_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the content of a checkpoint file, or the mapping itself when one is given.

    ``.pt``/``.pth`` files are read with ``torch.load(..., weights_only=True, map_location="cpu")`` so no code from the
    file runs. EDM/PaDIS ``.pkl`` snapshots are read by :func:`medgen.networks.edm_pickle.load_edm_snapshot`.

    Args:
        checkpoint: a path to a checkpoint file, or an already-loaded mapping (returned unchanged).

    Raises:
        TypeError: ``checkpoint`` is neither a path nor a mapping, or the file holds no mapping.
        FileNotFoundError: the path does not exist (the message names `medgen convert`, which makes official ones).
        pickle.UnpicklingError: the file holds objects that could run code (refused; see :func:`load_weights_only`).
        ValueError: an empty, truncated or damaged file.
    """
    if isinstance(checkpoint, Mapping):
        return checkpoint
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path or a mapping (state dict), got {type(checkpoint).__name__}.")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file not found: '{path}'. Official checkpoints are converted into this file with "
            f"`medgen convert KIND OFFICIAL_CHECKPOINT --config CONFIG --output {path}` (see `medgen convert --help` "
            "and the bundle's docs/README.md)."
        )
    if path.suffix == ".pkl":
        from medgen.networks.edm_pickle import load_edm_snapshot

        try:
            return load_edm_snapshot(path)
        except pickle.UnpicklingError as e:
            if str(e).startswith("refused"):  # an object outside the allow-list (the message names the file)
                raise
            raise ValueError(f"checkpoint '{path}' is not a readable EDM pickle (truncated, damaged or another "
                             f"format): {type(e).__name__}: {e}") from e
        except (EOFError, ValueError) as e:
            raise ValueError(f"checkpoint '{path}' is not a readable EDM pickle (truncated, damaged or another "
                             f"format): {type(e).__name__}: {e}") from e
    content = load_weights_only(path)
    if not isinstance(content, Mapping):
        raise TypeError(f"checkpoint '{path}' holds a {type(content).__name__}, expected a dict or state dict.")
    return content


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that starts with it (keys without it are kept as they are)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``state_dict`` into ``module`` strictly, copying values onto the module's device and dtype.

    Args:
        module: the target module.
        state_dict: a flat mapping of names to tensors in ``module``'s naming.

    Returns:
        ``module``, loaded.

    Raises:
        CheckpointMismatchError: listing every missing, unexpected and mis-shaped key.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs module {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not match {type(module).__name__}:"]
        found = (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped))
        for title, items in found:
            if items:
                shown = ", ".join(items[:20]) + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")
                lines.append(f"  {len(items)} {title}: {shown}")
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)
    return module


def apply_ordered_ema(module: nn.Module, shadow_params: list[torch.Tensor]) -> nn.Module:
    """Copy score_sde-style EMA weights onto ``module``'s trainable parameters, matched by ORDER.

    score_sde's ``ExponentialMovingAverage`` stores ``shadow_params`` as a list holding one tensor per parameter with
    ``requires_grad=True``, in ``module.parameters()`` order (buffers and frozen parameters such as NCSN++'s Fourier
    weights are not in it).

    Raises:
        CheckpointMismatchError: the list length or a shape does not match.
    """
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if len(trainable) != len(shadow_params):
        raise CheckpointMismatchError(
            f"EMA holds {len(shadow_params)} tensors but {type(module).__name__} has {len(trainable)} trainable "
            "parameters; the checkpoint was made with another configuration."
        )
    bad = [
        f"{name}: EMA {tuple(s.shape)} vs module {tuple(p.shape)}"
        for (name, p), s in zip(trainable, shadow_params)
        if tuple(p.shape) != tuple(s.shape)
    ]
    if bad:
        raise CheckpointMismatchError("EMA tensors do not match parameters: " + ", ".join(bad[:20]))
    with torch.no_grad():
        for (_, p), s in zip(trainable, shadow_params):
            p.copy_(s.to(device=p.device, dtype=p.dtype))
    return module


def build_uninitialized(factory: Callable[[], nn.Module], device: str | torch.device = "cpu") -> nn.Module:
    """Build a network without drawing initial weights, for loaders that overwrite every state-dict entry.

    ``factory`` runs on the ``meta`` device (no memory, no random draws: the global RNG is left untouched, and a
    configuration error is raised before any checkpoint is read); the result then gets uninitialised storage on
    ``device``. Only use it when a strict load (:func:`load_state_dict_checked`) follows.

    Args:
        factory: builds the network, e.g. ``lambda: NCSNpp.from_config(config)``.
        device: where the storage is allocated.

    Returns:
        the network with uninitialised parameters and buffers on ``device``.
    """
    with torch.device("meta"):
        network = factory()
    return network.to_empty(device=device)


def unwrap_network(network: Any) -> Any:
    """The module inside (possibly nested) ``DataParallel``/``DistributedDataParallel``/
    :class:`~medgen.networks.precision.PrecisionNetwork` wrappers and classes marked ``unwraps_to_module``
    (:class:`~medgen.diffusion.chunked.ChunkedNetwork`); anything else is returned unchanged (plain
    modules, callables). Only these wrappers are unwrapped: a network that merely has a child called ``module`` is
    left as it is."""
    while isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel, PrecisionNetwork)) or getattr(
        type(network), "unwraps_to_module", False
    ):
        network = network.module
    return network
