"""What every medgen sampling inferer shares: seeding, the sampling loop, and MetaTensor output."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from medgen.inferers.loop import SamplingLoop, make_generator

__all__ = ["SamplingInferer"]


class SamplingInferer(Inferer):
    """Base of medgen's diffusion inferers: a :class:`monai.inferers.Inferer` whose ``__call__`` runs a sampler.

    Subclasses implement ``__call__(inputs, network, *args, **kwargs)`` and use:

    - :meth:`generator` for all their random draws (seeded, on the inputs' device),
    - :meth:`sampling_loop` to run their steps with progress and checkpoint/resume (the fingerprint records the
      subclass name, :meth:`config`, the input shape and the seed, so a resumed run is the same run),
    - :meth:`wrap_output` to return a :class:`monai.data.MetaTensor` carrying the input's affine and meta.

    Args:
        seed: seed of the sampler's generator; ``None`` draws from the global RNG (not resumable bit-exactly on
            CUDA).
        progress: show a progress bar.
        checkpoint_dir: folder for the sampling state; with it, an interrupted run resumes where it stopped.
        checkpoint_every: save every this many steps (``0``: only at the end).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        super().__init__()
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
        if checkpoint_every and checkpoint_dir is None:
            raise ValueError(f"checkpoint_every={checkpoint_every} requires checkpoint_dir, got None.")
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that change the result (subclasses extend it); part of the run fingerprint."""
        return {"seed": self.seed}

    def generator(self, device: torch.device | str) -> torch.Generator | None:
        """A fresh generator seeded with ``seed`` on ``device`` (``None`` when ``seed`` is ``None``)."""
        return make_generator(self.seed, device)

    def sampling_loop(
        self, num_steps: int, input_shape: tuple[int, ...] | torch.Size, extra: Mapping[str, Any] | None = None
    ) -> SamplingLoop:
        """The :class:`SamplingLoop` for one call, fingerprinted by class, config, input shape and ``extra``."""
        fingerprint = {
            "inferer": type(self).__name__,
            "config": self.config(),
            "input_shape": [int(s) for s in input_shape],
            **(dict(extra) if extra else {}),
        }
        return SamplingLoop(
            num_steps,
            progress=self.progress,
            description=type(self).__name__,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
            fingerprint=fingerprint,
        )

    @staticmethod
    def wrap_output(result: torch.Tensor, like: torch.Tensor | None) -> MetaTensor:
        """``result`` as a :class:`MetaTensor` with the affine and meta of ``like`` (when ``like`` is one)."""
        result = result.detach()
        if isinstance(like, MetaTensor):
            output = MetaTensor(result.as_tensor() if isinstance(result, MetaTensor) else result, meta=dict(like.meta))
            output.is_batch = like.is_batch
            return output
        if isinstance(result, MetaTensor):
            return result
        return MetaTensor(result)
