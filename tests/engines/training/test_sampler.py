"""medgen.engines.training.sampler: the order DistributedSampler gives per MONAI epoch, continued from any
iteration, ranks disjoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

from medgen.engines.training.sampler import ResumableSampler


def test_one_pass_per_epoch_is_the_distributed_sampler_order():
    data = list(range(12))
    sampler = ResumableSampler(data, batch_size=4, seed=5)
    reference = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=5)
    for epoch in (1, 2, 3):  # MONAI's trainer calls set_epoch(engine.state.epoch), 1-based
        reference.set_epoch(epoch)
        assert sampler.order(epoch - 1).tolist() == list(reference)
    assert len(sampler) == 12


def test_an_iterator_starts_where_the_trainer_is():
    sampler = ResumableSampler(list(range(10)), batch_size=3, seed=0)  # 9 samples per pass (one dropped)
    stream = sampler.order(0).tolist() + sampler.order(1).tolist()
    engine = SimpleNamespace(state=SimpleNamespace(iteration=0))
    sampler.attach(engine)
    assert list(sampler) == stream[:9]
    engine.state.iteration = 2  # two batches done: the rest of pass 0
    assert list(sampler) == stream[6:9]
    engine.state.iteration = 4  # pass 1, second batch
    assert list(sampler) == stream[12:18]


def test_ranks_share_a_pass_without_overlap():
    ranks = [ResumableSampler(list(range(16)), batch_size=2, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    first, second = (set(s.order(0).tolist()) for s in ranks)
    assert len(first) == len(second) == 8 and not first & second
    with pytest.raises(ValueError, match="smaller than one batch"):
        ResumableSampler(list(range(3)), batch_size=4)
    with pytest.raises(ValueError, match="rank"):
        ResumableSampler(list(range(8)), batch_size=2, num_replicas=2, rank=2)
    unshuffled = ResumableSampler(list(range(6)), batch_size=2, shuffle=False)
    assert unshuffled.order(3).tolist() == [0, 1, 2, 3, 4, 5] and torch.is_tensor(torch.as_tensor(unshuffled.order(0)))
