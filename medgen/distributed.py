"""Sharded inference over ``torch.distributed``: the items of each network call split across ranks.

Every rank runs the same sampler on the same inputs with the same seed, so everything that is not a network call
(random draws, consistency terms, operators, Langevin step sizes) is replicated and identical across ranks. Only the
network's batch is divided: :class:`Sharding` gives each rank a contiguous share of the items and all-gathers the
shares' outputs, so every rank holds the full result after each call and the run equals the single-process run. The
chunked map (:func:`medgen.diffusion.chunked.chunked_map`) is where it acts; inferers take it as their ``shard``
option (TPDM's slices of a minibatch, PaDIS' patches, SDM's slabs).

Launch with ``torchrun`` (``torchrun --nproc_per_node 2 -m monai.bundle run --config_file "['configs/inference.json',
'configs/multi_gpu_inference.json']"``): the process group must be initialised before the first call (the bundle
configs' ``initialize`` does it).

Example (a single process: a world of one, nothing is split)::

    import torch
    from medgen.distributed import Sharding

    sharding = Sharding(None)
    share = sharding.share(10)                          # slice(0, 10) on a world of one
    full = sharding.all_gather(torch.arange(10.0)[share], 10)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Sharding", "as_sharding"]


class Sharding:
    """A process group's ranks, each owning a contiguous share of a call's items.

    Args:
        group: a ``torch.distributed`` process group, ``None`` (no sharding: a world of one) or ``"world"`` (the
            default group, which must be initialised).

    Raises:
        RuntimeError: ``group="world"`` before ``torch.distributed.init_process_group``.
    """

    def __init__(self, group: Any = None) -> None:
        if isinstance(group, str):
            if group != "world":
                raise ValueError(f"group must be a process group, None or 'world', got {group!r}.")
            if not (dist.is_available() and dist.is_initialized()):
                raise RuntimeError(
                    "shard='world' needs torch.distributed initialised first (launch with torchrun and call "
                    "torch.distributed.init_process_group)."
                )
            group = dist.group.WORLD
        self.group = group
        self.world_size = 1 if group is None else dist.get_world_size(group)
        self.rank = 0 if group is None else dist.get_rank(group)

    @property
    def active(self) -> bool:
        """Whether there is more than one rank."""
        return self.world_size > 1

    def share_size(self, count: int) -> int:
        """Items per rank for ``count`` items (``ceil(count / world_size)``; the last ranks may hold fewer)."""
        return math.ceil(count / self.world_size)

    def share(self, count: int) -> slice:
        """This rank's items of ``count`` (possibly empty on the last ranks)."""
        size = self.share_size(count)
        start = min(self.rank * size, count)
        return slice(start, min(start + size, count))

    def all_gather(self, local: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's share concatenated in rank order: ``(count, ...)`` from this rank's ``(len(share), ...)``.

        Shares are padded to the same length for the collective and trimmed after it.

        Raises:
            ValueError: ``local`` is not this rank's share of ``count`` items.
        """
        share = self.share(count)
        if local.shape[0] != share.stop - share.start:
            raise ValueError(
                f"local must hold this rank's {share.stop - share.start} of {count} items, got {local.shape[0]}."
            )
        if not self.active:
            return local
        size = self.share_size(count)
        padded = local.new_zeros((size, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous(), group=self.group)
        return torch.cat(parts)[:count]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(world_size={self.world_size}, rank={self.rank})"


def as_sharding(shard: Any) -> Sharding:
    """An inferer's ``shard`` option as a :class:`Sharding`.

    Args:
        shard: ``False``/``None`` (no sharding), ``True`` (the default process group, when it is initialised with
            more than one rank; else no sharding), a process group, or a :class:`Sharding`.

    Raises:
        TypeError: anything else.
    """
    if isinstance(shard, Sharding):
        return shard
    if shard is None or shard is False:
        return Sharding(None)
    if shard is True:
        initialised = dist.is_available() and dist.is_initialized()
        return Sharding("world" if initialised else None)
    if dist.is_available() and isinstance(shard, dist.ProcessGroup):
        return Sharding(shard)
    raise TypeError(f"shard must be a bool, a torch.distributed process group or a Sharding, got {type(shard).__name__}.")
