"""Data order as a function of the training iteration, so a resumed run sees the batches the uninterrupted run sees.

Ignite keeps a data-loader iterator across epochs when ``epoch_length`` is shorter than the loader, and a resumed run
starts a fresh iterator at the first batch of a new permutation: its data order differs from the uninterrupted run's
(the loss of exactness a resumed TPDM training showed). :class:`ResumableSampler` makes the order a pure function of
the position in the sample stream: pass ``p`` (0-based) over the dataset is the permutation ``torch.randperm(n,
generator=manual_seed(seed + p + 1))`` (each rank takes every ``num_replicas``-th index), the order
``DistributedSampler(seed=seed)`` gives at epoch ``p + 1`` as MONAI's trainer numbers epochs, so a run with one pass
per epoch sees the batches it saw with that sampler; an iterator created at trainer iteration ``i`` starts at sample
``i * batch_size`` of the stream. Listed in the trainer's handlers, it reads the iteration from the trainer when the
loader creates an iterator; resumed from any checkpoint, mid-epoch included, the loader yields what the uninterrupted
run got.

Give the ``DataLoader`` its own ``generator``: without one, every new iterator draws a seed from the global torch
RNG, and a resumed run creates an iterator where the uninterrupted run did not, so anything else drawing from that
RNG (dropout) would diverge.

Example::

    sampler = ResumableSampler(dataset, batch_size=16, seed=0)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, drop_last=True, generator=torch.Generator())
    trainer = SupervisedTrainer(..., train_data_loader=loader, train_handlers=[sampler, ...])
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    """Shuffled passes over a dataset, seeded per pass, started where the trainer's iteration says.

    Each pass holds ``len(sampler)`` indices per rank: the dataset size rounded down to a multiple of
    ``batch_size * num_replicas`` (the remainder of a pass is dropped, as ``drop_last=True`` does). Use it with a
    ``DataLoader(batch_size=batch_size, drop_last=True)``.

    Args:
        data_source: the dataset (only its length is used).
        batch_size: the loader's batch size per rank.
        seed: seed of the permutations (pass ``p`` is ``torch.randperm`` seeded with ``seed + p + 1``).
        shuffle: permute each pass (``False``: dataset order).
        num_replicas: number of distributed ranks (each takes every ``num_replicas``-th index of a pass).
        rank: this rank.

    Raises:
        ValueError: bad sizes, or a dataset smaller than one batch on every rank.
    """

    def __init__(
        self,
        data_source: Sized,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("num_replicas", num_replicas, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}.")
        self.size = len(data_source)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = bool(shuffle)
        self.num_replicas = num_replicas
        self.rank = rank
        self.per_rank = (self.size // (batch_size * num_replicas)) * batch_size
        if self.per_rank == 0:
            raise ValueError(
                f"the dataset ({self.size} items) is smaller than one batch of {batch_size} on each of "
                f"{num_replicas} rank(s)."
            )
        self.start_iteration = 0
        self._engine: Engine | None = None

    def __len__(self) -> int:
        return self.per_rank

    def attach(self, engine: Engine) -> None:
        """Read the start iteration from ``engine`` whenever the loader creates an iterator."""
        self._engine = engine

    def order(self, pass_index: int) -> np.ndarray:
        """The indices of pass ``pass_index`` for this rank (``len(self)`` of them)."""
        used = self.per_rank * self.num_replicas
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + int(pass_index) + 1)
            indices = torch.randperm(self.size, generator=generator)[:used]
        else:
            indices = torch.arange(used)
        return indices[self.rank :: self.num_replicas].numpy()

    def __iter__(self) -> Iterator[int]:
        """The rest of the current pass, from sample ``iteration * batch_size`` of the stream."""
        iteration = self._engine.state.iteration if self._engine is not None else self.start_iteration
        position = int(iteration) * self.batch_size
        pass_index, offset = divmod(position, self.per_rank)
        return iter(self.order(pass_index)[offset:].tolist())
