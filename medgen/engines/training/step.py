"""One training iteration of a diffusion model inside MONAI's :class:`~monai.engines.SupervisedTrainer` (ignite).

A diffusion loss is not ``loss(prediction, label)``: it draws timesteps and noise and calls the network itself.
:class:`DiffusionTrainingStep` is the trainer's ``iteration_update``: it takes the images from the batch (through the
trainer's ``prepare_batch``), calls the trainer's ``loss_function`` as ``loss_function(network, images, generator)``
(see :mod:`medgen.engines.training`), and does the backward pass and optimiser step (with the trainer's AMP scaler
when ``amp=True``). Everything MONAI provides stays in use: ``StatsHandler`` for progress, ``CheckpointSaver`` /
``CheckpointLoader`` for saving and resuming, ``DistributedDataParallel`` networks, ``DistributedSampler``.

**Seeding and resuming.** The random draws of iteration ``i`` come from a fresh generator seeded with
``(seed, rank, i)`` (:func:`iteration_generator`), not from a stream that runs through the whole training. A run
resumed from a checkpoint (network, optimiser, EMA and trainer state, i.e. the iteration counter) therefore draws
exactly what the uninterrupted run draws; each DDP rank draws different noise. Data order is seeded by the sampler
(e.g. ``DistributedSampler(shuffle=True, seed=...)``, whose epoch MONAI sets at every epoch start).

Example (see ``bundles/wdm_brain_mri/configs/train.json`` for the bundle version)::

    trainer = SupervisedTrainer(
        device=device, max_epochs=100, train_data_loader=loader, network=network, optimizer=optimizer,
        loss_function=WaveletDiffusionTrainingLoss(), iteration_update=DiffusionTrainingStep(seed=0),
        train_handlers=[ExponentialMovingAverage(network, 0.999), StatsHandler(name="train")], decollate=False)
    trainer.run()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys
from torch import nn

__all__ = ["DiffusionLoss", "DiffusionTrainingStep", "distributed_rank", "iteration_generator"]

DiffusionLoss = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]
"""``loss(network, images, generator) -> scalar``: draws its timesteps/noise from ``generator``."""


def distributed_rank() -> int:
    """This process's rank in the default process group (0 without ``torch.distributed``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def iteration_generator(
    seed: int, iteration: int, device: torch.device | str = "cpu", rank: int = 0
) -> torch.Generator:
    """A generator on ``device`` seeded from ``(seed, rank, iteration)`` (numpy ``SeedSequence`` mixing).

    Args:
        seed: the run's seed.
        iteration: the trainer iteration (1-based in ignite).
        device: where the generator draws.
        rank: the distributed rank (different ranks draw different noise).

    Raises:
        ValueError: a negative or non-integer argument.
    """
    for name, value in (("seed", seed), ("iteration", iteration), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    state = np.random.SeedSequence([int(seed), int(rank), int(iteration)]).generate_state(2, np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed((int(state[0]) << 31) ^ int(state[1]))
    return generator


class DiffusionTrainingStep:
    """``iteration_update`` of a MONAI :class:`~monai.engines.SupervisedTrainer` for diffusion models.

    Per iteration: ``images = engine.prepare_batch(batch)[0]`` (a dict batch gives its ``"image"`` entry),
    ``loss = engine.loss_function(engine.network, images, generator)`` with the generator of
    :func:`iteration_generator`, ``backward``, optional gradient-norm clipping, ``optimizer.step()``. The trainer's
    ``amp`` flag runs the loss under ``torch.autocast`` with the trainer's ``GradScaler``; ``IterationEvents``
    (``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``) fire as in MONAI's own iteration.

    Args:
        seed: seed of the per-iteration generators.
        max_grad_norm: clip the gradients' global L2 norm to this value (``None``: no clipping, as WDM).

    Returns (of ``__call__``):
        ``{"loss": detached scalar}``, stored by ignite in ``engine.state.output`` (a ``StatsHandler`` with its
        default ``output_transform`` prints it; use the trainer's ``decollate=False``).
    """

    def __init__(self, seed: int = 0, max_grad_norm: float | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        if max_grad_norm is not None and (
            isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float)) or not max_grad_norm > 0
        ):
            raise ValueError(f"max_grad_norm must be None or a number > 0, got {max_grad_norm!r}.")
        self.seed = seed
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, torch.Tensor]:
        """Run one iteration on ``engine`` (a SupervisedTrainer) with ``batchdata`` from its data loader.

        Raises:
            ValueError: ``batchdata`` is None or the loss is not a finite scalar.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for the current iteration, got None.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"the batch must hold an image tensor, got {type(images).__name__}.")
        if isinstance(images, MetaTensor):
            images = images.as_tensor()
        generator = iteration_generator(self.seed, engine.state.iteration, images.device, distributed_rank())

        network, optimizer = engine.network, engine.optimizer
        network.train()
        optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        use_scaler = bool(engine.amp) and getattr(engine, "scaler", None) is not None
        if use_scaler:
            with torch.autocast(images.device.type, **engine.amp_kwargs):
                loss = engine.loss_function(network, images, generator)
        else:
            loss = engine.loss_function(network, images, generator)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_function must return a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}.")
        loss = loss.reshape(())
        if not bool(torch.isfinite(loss)):
            raise ValueError(f"the loss is not finite ({float(loss)}) at iteration {engine.state.iteration}.")
        engine.state.output = {CommonKeys.LOSS: loss.detach()}
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        if use_scaler:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if self.max_grad_norm is not None:
                engine.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(network.parameters(), self.max_grad_norm)
            engine.scaler.step(optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(network.parameters(), self.max_grad_norm)
            optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
