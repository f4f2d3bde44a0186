"""medgen.engines.training.checkpoints: complete-or-absent checkpoint files, resume from any of them equal to the
uninterrupted run (mid-epoch included), readable errors for broken files, random states in a checkpoint."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer
from torch.utils.data import DataLoader

from medgen.engines.training.checkpoints import (
    AtomicCheckpointSaver,
    RandomState,
    ResumeTraining,
    latest_checkpoint,
    load_checkpoint,
    saved_checkpoints,
)
from medgen.engines.training.sampler import ResumableSampler
from medgen.engines.training.step import DiffusionTrainingStep


class NoisyRegression:
    """A loss that draws from the step's generator AND from the global RNG (as dropout would)."""

    def __call__(self, network, images, generator):
        noise = torch.randn(images.shape, generator=generator)
        dropout = torch.nn.functional.dropout(network(images + noise), p=0.2, training=True)
        return ((dropout - images) ** 2).mean()


def trainer(folder, max_epochs=2, resume_from=None, every=1):
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    data = [{"image": torch.full((1, 6, 6), float(i))} for i in range(10)]
    sampler = ResumableSampler(data, batch_size=3, seed=4)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    engine = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=max_epochs, epoch_length=2,
        train_data_loader=DataLoader(data, batch_size=3, sampler=sampler, drop_last=True,
                                     generator=torch.Generator()), network=network,
        optimizer=optimizer, loss_function=NoisyRegression(), iteration_update=DiffusionTrainingStep(seed=1),
        train_handlers=[sampler], decollate=False,
    )
    objects = {"network": network, "optimizer": optimizer, "trainer": engine, "random_state": RandomState()}
    ResumeTraining(objects, resume_from, folder).attach(engine)
    AtomicCheckpointSaver(folder, objects, every=every).attach(engine)
    return engine, network


def test_resume_from_every_checkpoint_equals_the_uninterrupted_run(tmp_path):
    engine, network = trainer(tmp_path / "straight", max_epochs=3)
    engine.run()
    final = {k: v.clone() for k, v in network.state_dict().items()}
    found = saved_checkpoints(tmp_path / "straight")
    assert [i for i, _ in found] == [1, 2, 3, 4, 5, 6] and latest_checkpoint(tmp_path / "straight") == found[-1][1]
    # epoch_length 2 < 3 batches per pass: epochs end inside passes; checkpoint 1, 3 and 5 are mid-epoch
    for iteration, path in found[:-1]:
        resumed, network = trainer(tmp_path / f"resumed{iteration}", max_epochs=3, resume_from=path)
        resumed.run()
        assert resumed.state.iteration == 6
        assert all(torch.equal(network.state_dict()[k], final[k]) for k in final), iteration
    # without its own generator a DataLoader draws a seed from the global RNG whenever it makes an iterator, and a
    # resumed run makes one where the uninterrupted run did not: the loss above draws dropout from that RNG


def test_same_command_continues_from_the_latest_checkpoint(tmp_path):
    engine, _ = trainer(tmp_path / "run", max_epochs=1)
    engine.run()
    again, _ = trainer(tmp_path / "run", max_epochs=2)  # no resume_from: the latest in the folder
    again.run()
    assert again.state.iteration == 4 and again.state.epoch == 2


def test_a_kill_during_a_write_leaves_no_checkpoint_file(tmp_path, monkeypatch):
    engine, _ = trainer(tmp_path / "run", max_epochs=1)
    saver = AtomicCheckpointSaver(tmp_path / "run", {"network": torch.nn.Linear(2, 2)})
    original = torch.save

    def interrupted(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like from inside

    monkeypatch.setattr(torch, "save", interrupted)
    engine.state.iteration = 7
    with pytest.raises(KeyboardInterrupt):
        saver.save(engine)
    monkeypatch.setattr(torch, "save", original)
    assert saved_checkpoints(tmp_path / "run") == []
    partial = tmp_path / "run" / ".checkpoint_iteration=8.pt.partial"
    partial.write_bytes(b"left by a SIGKILL")
    saver.attach(engine)  # the next run removes it
    assert not partial.exists()


def test_broken_checkpoints_are_named(tmp_path):
    empty = tmp_path / "checkpoint_iteration=1.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"resume_from '.*checkpoint_iteration=1.pt' is empty \(0 bytes\)"):
        load_checkpoint(empty)
    torch.save({"network": {}}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:40])
    with pytest.raises(ValueError, match=r"resume_from '.*cut.pt' is not a complete torch.save file \(40 bytes"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"lacks \['optimizer'\]; it holds \['network'\]"):
        load_checkpoint(tmp_path / "whole.pt", ("network", "optimizer"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_random_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    state = RandomState()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    torch.save(state.state_dict(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    state.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_bad_saver_arguments():
    with pytest.raises(ValueError, match="every"):
        AtomicCheckpointSaver("x", {"a": torch.nn.Linear(1, 1)}, every=0)
    with pytest.raises(ValueError, match="n_saved"):
        AtomicCheckpointSaver("x", {"a": torch.nn.Linear(1, 1)}, n_saved=0)
    with pytest.raises(ValueError, match="save_dict"):
        AtomicCheckpointSaver("x", {})
