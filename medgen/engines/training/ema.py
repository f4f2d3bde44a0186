"""Exponential moving average (EMA) of a network's weights, as a module with a state dict and an ignite handler.

:class:`ExponentialMovingAverage` keeps a frozen copy of the network (``averaged``) and, after every optimiser step,
moves each floating-point parameter towards the live one::

    averaged <- decay * averaged + (1 - decay) * parameter

(buffers such as normalisation statistics are copied). Its ``state_dict`` holds the averaged weights and the number
of updates, so a MONAI :class:`~monai.handlers.CheckpointSaver` / :class:`~monai.handlers.CheckpointLoader` that
lists it beside the network, optimiser and trainer saves and restores the whole training state. ``attach(engine)``
makes it an ignite handler (update at ``ITERATION_COMPLETED``), so it can sit in a MONAI trainer's
``train_handlers``.

Example::

    ema = ExponentialMovingAverage(network, decay=0.999)
    trainer = SupervisedTrainer(..., network=network, train_handlers=[ema, ...])
    trainer.run()
    sampler_network = ema.averaged   # an ordinary nn.Module with the averaged weights
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medgen.networks.checkpoint import unwrap_network

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ExponentialMovingAverage", "unwrap_network"]


class ExponentialMovingAverage(nn.Module):
    """EMA of a network's weights (Polyak averaging), for sampling with the averaged model.

    Args:
        network: the trained network (a ``DataParallel``/``DistributedDataParallel`` wrapper is unwrapped, so the
            averaged copy has plain parameter names). The copy starts equal to the network's current weights.
        decay: the EMA decay in ``[0, 1)`` per update (guided-diffusion/SDM: 0.9999; short runs: 0.99-0.999).
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at the ``n``-th update (``n`` counted from 0), so early
            updates follow the network quickly (as TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and
            score_sde's EMA with ``num_updates``).
        update_every: with :meth:`attach`, update every this many trainer iterations.

    Raises:
        TypeError: ``network`` is not an ``nn.Module``.
        ValueError: ``decay`` outside ``[0, 1)`` or ``update_every < 1``.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, warmup: bool = False, update_every: int = 1) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}.")
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.update_every = update_every
        self.averaged = copy.deepcopy(unwrap_network(network)).eval()
        self.averaged.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if not self.warmup:
            return self.decay
        n = int(self.num_updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the averaged weights one step towards ``network``'s (same architecture; wrappers are unwrapped).

        Raises:
            ValueError: ``network``'s parameter or buffer names differ from the averaged copy's.
        """
        source = unwrap_network(network)
        decay = self.current_decay()
        live_parameters = dict(source.named_parameters())
        live_buffers = dict(source.named_buffers())
        averaged_parameters = dict(self.averaged.named_parameters())
        averaged_buffers = dict(self.averaged.named_buffers())
        if live_parameters.keys() != averaged_parameters.keys() or live_buffers.keys() != averaged_buffers.keys():
            missing = sorted(set(averaged_parameters) - set(live_parameters))
            unexpected = sorted(set(live_parameters) - set(averaged_parameters))
            raise ValueError(
                f"network does not match the averaged copy: missing parameters {missing[:10]}, unexpected "
                f"{unexpected[:10]} (buffers: {sorted(set(averaged_buffers) ^ set(live_buffers))[:10]})."
            )
        for name, averaged in averaged_parameters.items():
            live = live_parameters[name].detach().to(averaged.dtype)
            if averaged.is_floating_point() or averaged.is_complex():
                averaged.lerp_(live, 1.0 - decay)
            else:
                averaged.copy_(live)
        for name, averaged in averaged_buffers.items():
            averaged.copy_(live_buffers[name])
        self.num_updates += 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the averaged network."""
        return self.averaged(*args, **kwargs)

    def attach(self, engine: Engine) -> None:
        """Update from ``engine.network`` after every ``update_every``-th iteration (an ignite handler)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.update_every), self._on_iteration)

    def _on_iteration(self, engine: Engine) -> None:
        self.update(engine.network)  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}, update_every={self.update_every}"
