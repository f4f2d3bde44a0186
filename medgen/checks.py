"""Argument checks shared by every medgen package: each error names the argument, what was expected and what came."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = [
    "check_tensor",
    "check_finite",
    "check_folder",
    "check_positive_int",
    "check_choice",
    "check_int",
    "check_number",
    "check_volume",
    "check_volume_shape",
    "check_plane_mask",
    "check_box",
    "check_bool",
    "check_callable",
    "check_no_arguments",
    "settings_with",
]

S = TypeVar("S")


def check_tensor(value: Any, name: str, min_ndim: int = 0, layout: str = "", real_floating: bool = False) -> None:
    """Raise a clear error unless ``value`` is a tensor with at least ``min_ndim`` dims (real floating if asked).

    Args:
        value: the argument to check.
        name: its name, used in the message.
        min_ndim: minimum number of dimensions.
        layout: the expected layout, quoted in the message (e.g. ``"(..., H, W)"``).
        real_floating: also require a real floating-point dtype.

    Raises:
        TypeError: if ``value`` is not a ``torch.Tensor``, or not real floating point when ``real_floating``.
        ValueError: if it has fewer than ``min_ndim`` dims.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if value.ndim < min_ndim:
        layout = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have at least {min_ndim} dims{layout}, got shape {tuple(value.shape)}.")
    if real_floating and (value.is_complex() or not value.is_floating_point()):
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {value.dtype}.")


def check_finite(value: torch.Tensor | np.ndarray, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless every entry of ``value`` (real or complex) is finite.

    The message counts the NaN and infinite entries and gives the index of the first, so a user finds the voxel.
    """
    value = torch.as_tensor(value)
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        nan = int(torch.isnan(value).sum())
        first = tuple(int(i) for i in torch.nonzero(~finite)[0])
        raise ValueError(
            f"{name} must hold finite values, got {nan} NaN and {int((~finite).sum()) - nan} infinite of "
            f"{value.numel()} entries (the first at index {first})."
        )


def check_folder(path: str | os.PathLike, name: str) -> Path:
    """``Path(path)`` if it is a folder or can be created as one; a ``ValueError`` naming ``name`` when it, or the
    nearest of its parents that exists, is a file (checked before a long computation writes into it)."""
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == folder else f", but '{existing}' is a file"
        raise ValueError(f"{name} '{folder}' must be a folder (or one that can be created){where or ', got a file'}.")
    return folder


def check_positive_int(value: Any, name: str) -> int:
    """``value`` if it is an ``int`` (not ``bool``) ``>= 1``, else a ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> None:
    """Raise a ``ValueError`` naming ``name`` and the allowed ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def check_int(value: Any, name: str, minimum: int = 1, *, allow_none: bool = False) -> int | None:
    """``value`` if it is an ``int`` (not ``bool``) ``>= minimum`` (or ``None`` when allowed).

    Raises:
        ValueError: naming ``name``, the expected range and the received value.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}.")
    return value


def check_number(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    allow_none: bool = False,
    finite: bool = False,
) -> float | None:
    """``float(value)`` if it is a real number (not ``bool``) in ``[low, high]``, an end excluded when it is open, and
    finite when ``finite``.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is NaN, infinite with ``finite``, or outside the range (the message names ``name``, the
            range and the value).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number{' or None' if allow_none else ''}, got {type(value).__name__}.")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if math.isnan(value) or value < low or value > high or (open_low and value == low) or (open_high and value == high):
        bounds = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be in {bounds}, got {value}.")
    return value


def check_volume(value: Any, name: str, channels: int | None = None, allow_complex: bool = False) -> torch.Tensor:
    """``value`` as a plain tensor if it is a non-empty batch of volumes ``(B, C, D0, D1, D2)``, else a clear error.

    Args:
        value: the argument to check (a tensor or MetaTensor; the meta is dropped in the result).
        name: its name, used in messages.
        channels: the required ``C`` (``None``: any).
        allow_complex: accept complex data (k-space volumes); otherwise it must be real floating point.

    Raises:
        TypeError: not a tensor, complex when not allowed, or not floating point.
        ValueError: not 5 dims, the wrong number of channels, or empty.
    """
    layout = f"(B, {'C' if channels is None else f'C={channels}'}, D0, D1, D2)"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor {layout}, got {type(value).__name__}.")
    if value.ndim != 5 or (channels is not None and value.shape[1] != channels):
        raise ValueError(f"{name} must have shape {layout}, got {tuple(value.shape)}.")
    if value.is_complex() and not allow_complex:
        raise TypeError(f"{name} must be real, got {value.dtype}.")
    if not (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{name} must be floating point, got {value.dtype}.")
    if min(value.shape) < 1:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}.")
    return value.as_tensor() if hasattr(value, "as_tensor") else value


def check_volume_shape(
    value: Any, name: str, channels: int | None = None, allow_spatial: bool = False
) -> tuple[int, int, int, int, int]:
    """The shape ``(B, C, D0, D1, D2)`` of ``value``: a template volume (:func:`check_volume`) or such a shape.

    Args:
        value: a volume, or a sequence of positive ints.
        name: the argument's name, used in messages.
        channels: the required ``C`` (``None``: any).
        allow_spatial: also accept ``(D0, D1, D2)``, read as ``(1, channels or 1, D0, D1, D2)``.

    Raises:
        TypeError: neither a tensor nor a shape (positive ints, as many as accepted).
        ValueError: the wrong number of channels (or a volume that :func:`check_volume` refuses).
    """
    if isinstance(value, torch.Tensor):
        return tuple(int(s) for s in check_volume(value, name, channels).shape)  # type: ignore[return-value]
    accepted = f"{'(D0, D1, D2) or ' if allow_spatial else ''}(B, {'C' if channels is None else channels}, D0, D1, D2)"
    lengths = (3, 5) if allow_spatial else (5,)
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) not in lengths or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in value
    ):
        raise TypeError(f"{name} must be a template volume or a shape {accepted} of positive ints, got {value!r}.")
    shape = (1, channels or 1, *value) if len(value) == 3 else tuple(value)
    if channels is not None and shape[1] != channels:
        raise ValueError(f"{name} must be a template volume or a shape {accepted}, got {tuple(value)}.")
    return shape  # type: ignore[return-value]


def check_plane_mask(mask: Any, name: str) -> torch.Tensor:
    """A mask shared by every item, ``(H, W)`` or ``(1, ..., 1, H, W)`` (real, bool or complex: real part), as a
    float32 ``(H, W)``; else a ``TypeError``/``ValueError`` naming ``name``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}.")
    if mask.ndim < 2 or any(s != 1 for s in mask.shape[:-2]):
        raise ValueError(f"{name} must be shaped (H, W) or (1, ..., 1, H, W), got {tuple(mask.shape)}.")
    mask = mask.real if mask.is_complex() else mask
    return mask.reshape(mask.shape[-2:]).to(torch.float32)


def check_box(
    box: Any, name: str = "box", *, finite: bool = False, allow_none: bool = True
) -> tuple[float, float] | None:
    """``(low, high)`` as floats with ``low < high`` (either may be infinite unless ``finite``), or ``None`` when
    allowed; else a ``ValueError`` naming ``name``."""
    if box is None and allow_none:
        return None
    if (
        not isinstance(box, Sequence)
        or len(box) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in box)
        or (finite and not all(math.isfinite(v) for v in box))
        or not box[0] < box[1]
    ):
        numbers = "finite numbers" if finite else "numbers"
        raise ValueError(
            f"{name} must be {'None or ' if allow_none else ''}a pair (low, high) of {numbers} with low < high, "
            f"got {box!r}."
        )
    return float(box[0]), float(box[1])


def check_bool(value: Any, name: str) -> None:
    """Raise a ``TypeError`` naming ``name`` and the type received unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}.")


def check_callable(value: Any, name: str) -> None:
    """Raise a ``TypeError`` naming ``name`` and the type received unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}.")


def check_no_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise a ``TypeError`` listing ``args`` (numbered from 2, after an inferer's ``inputs`` and ``network``) and
    ``kwargs``, the extra arguments of a call that takes none."""
    if args or kwargs:
        unexpected = [f"positional #{i + 2}" for i in range(len(args))] + sorted(kwargs)
        raise TypeError(f"unexpected arguments: {', '.join(unexpected)}.")


def settings_with(base: S, overrides: Mapping[str, Any], owner: str) -> S:
    """``base`` (a frozen settings dataclass) with ``overrides`` replaced; its ``__post_init__`` validates them.

    Raises:
        TypeError: an override is not a field, named with the closest field (``stpes`` -> ``steps``) and all fields.
    """
    fields = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"{owner} got an unknown setting {unknown[0]!r}{hint} (the settings of {type(base).__name__}: "
            f"{', '.join(fields)})."
        )
    return dataclasses.replace(base, **overrides)  # type: ignore[type-var]
