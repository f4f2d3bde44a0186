"""Training for bundles with MONAI engines: a seeded, resumable diffusion training step, method losses, EMA, writers."""

from __future__ import annotations

from medgen.engines.trainer import (
    DiffusionLoss,
    DiffusionTrainingStep,
    distributed_rank,
    iteration_generator,
)
from medgen.engines.losses import (
    WaveletDiffusionTrainingLoss,
)
from medgen.engines.ema import (
    ExponentialMovingAverage,
    unwrap_network,
)
from medgen.engines.writers import (
    GeneratedVolumeWriter,
    save_state_dict,
    volume_statistics,
)

__all__ = [
    "DiffusionLoss",
    "DiffusionTrainingStep",
    "distributed_rank",
    "iteration_generator",
    "WaveletDiffusionTrainingLoss",
    "ExponentialMovingAverage",
    "unwrap_network",
    "GeneratedVolumeWriter",
    "save_state_dict",
    "volume_statistics",
]
