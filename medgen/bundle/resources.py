"""What a run needs from the machine, checked before it starts: memory for the sampling and a writable output folder.

- :func:`available_memory`: bytes a run can allocate on a device (CUDA: free device memory; CPU: the kernel's
  ``MemAvailable``, else free physical pages);
- :func:`check_memory`: an estimate (named terms, in bytes) against what is available, or against the limit the
  user sets with the ``max_memory_gb`` key; the error gives the estimate, its terms and the key that overrides it;
- :func:`largest_slice`, :func:`format_bytes`: helpers of the bundles' estimates;
- :func:`check_output_dir`: the output folder is a folder (or can be created), can be written (probed with a real
  file) and has room for the outputs.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from medgen.bundle.errors import BundleInputError

__all__ = ["available_memory", "check_memory", "check_output_dir", "format_bytes", "largest_slice"]


def format_bytes(size: float) -> str:
    """``1536 -> "1.5 KB"``, ``3.2e10 -> "29.8 GB"`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def largest_slice(shape: Sequence[int]) -> int:
    """Pixels of the largest 2D slice of a volume's spatial ``shape`` (the product of its two largest sizes)."""
    sizes = sorted((int(s) for s in shape), reverse=True)
    return sizes[0] * (sizes[1] if len(sizes) > 1 else 1)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a run can allocate on ``device`` now, or ``None`` when the platform does not say.

    CUDA: ``torch.cuda.mem_get_info`` (free device memory). CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else the free physical pages (``os.sysconf``).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    available = _meminfo_available()
    if available is not None:
        return available
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    estimate: Mapping[str, float],
    device: torch.device | str = "cpu",
    max_memory_gb: float | None = None,
    key: str = "max_memory_gb",
    advice: str = "",
) -> dict[str, Any]:
    """Refuse a run whose estimated peak memory exceeds what ``device`` has (or the limit ``max_memory_gb``).

    Args:
        estimate: the estimate's terms, ``{what: bytes}`` (their sum is the peak).
        device: where the run computes.
        max_memory_gb: the user's limit in GiB (``None``: what the device has available now).
        key: the config key of the limit, named in the message.
        advice: what else lowers the estimate (e.g. ``"lower batch_size"``), named in the message.

    Returns:
        ``{"estimate_bytes", "terms", "limit_bytes", "limit_source"}``.

    Raises:
        BundleInputError: the estimate is above the limit, or ``max_memory_gb`` is not a positive number.
    """
    total = float(sum(estimate.values()))
    if max_memory_gb is not None:
        if isinstance(max_memory_gb, bool) or not isinstance(max_memory_gb, (int, float)) or not max_memory_gb > 0:
            raise BundleInputError(f"{key} must be a number of GB > 0 or None, got {max_memory_gb!r}.")
        limit, source = float(max_memory_gb) * 1024**3, f"the limit {key}={max_memory_gb}"
    else:
        available = available_memory(device)
        limit = math.inf if available is None else float(available)
        source = "unknown" if available is None else f"the {format_bytes(limit)} available on {torch.device(device)}"
    if total > limit:
        terms = " + ".join(f"{what} {format_bytes(size)}" for what, size in estimate.items())
        raise BundleInputError(
            f"the run needs an estimated {format_bytes(total)} of memory at its peak ({terms}), more than {source}; "
            f"{advice + ', or ' if advice else ''}pass --{key} <GB> to run with a higher limit."
        )
    return {"estimate_bytes": total, "terms": dict(estimate), "limit_bytes": limit, "limit_source": source}


def check_output_dir(path: Any, key: str = "output_dir", needed_bytes: float = 0.0) -> Path:
    """Check that ``path`` is (or can be created as) a writable folder with room for ``needed_bytes``.

    The folder is probed by creating and removing a file in it. A folder that does not exist is NOT created here
    (the writer creates it when it writes); its nearest existing parent is probed instead.

    Raises:
        BundleInputError: ``path`` is unset or a file, a parent is a file, the folder cannot be written, or the file
            system has less free space than ``needed_bytes``.
    """
    if path is None or str(path) == "":
        raise BundleInputError(f"{key} is not set; give a folder with --{key} <folder>.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BundleInputError(f"{key} '{path}' is a file, not a folder; give a folder with --{key} <folder>.")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise BundleInputError(f"{key} '{path}' cannot be created: '{existing}' is a file, not a folder.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".medgen-write-probe-"):
            pass
    except OSError as e:
        raise BundleInputError(
            f"{key} '{path}' is not writable ({'probed in ' + repr(str(existing)) + ': ' if existing != folder else ''}"
            f"{e.strerror or e}); choose another folder with --{key} <folder>."
        ) from e
    free = shutil.disk_usage(existing).free
    if needed_bytes and free < needed_bytes:
        raise BundleInputError(
            f"{key} '{path}' has {format_bytes(free)} free; the outputs need about {format_bytes(needed_bytes)}: free "
            f"some space or choose another folder with --{key} <folder>."
        )
    return folder
