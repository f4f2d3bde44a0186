"""Training diffusion models with MONAI engines: the seeded, resumable iteration, per-method losses, EMA and weights.

- :mod:`~medgen.engines.training.step`: :class:`DiffusionTrainingStep` (a ``SupervisedTrainer``'s
  ``iteration_update``) and the per-iteration generators that make resumed runs draw what uninterrupted runs draw;
- losses in the form the step calls them, ``loss(network, images, generator)``: WDM
  (:mod:`~medgen.engines.training.wavelet`), score matching (:mod:`~medgen.engines.training.score_matching`), PaDIS'
  patch EDM (:mod:`~medgen.engines.training.patch_edm`), SDM with packed conditioning
  (:mod:`~medgen.engines.training.semantic`);
- :mod:`~medgen.engines.training.ema`: the EMA of the weights, as a module and an ignite handler;
- :mod:`~medgen.engines.training.checkpoints`: checkpoints written atomically, resumed exactly from any of them;
- :mod:`~medgen.engines.training.sampler`: data order as a function of the iteration (exact mid-epoch resume);
- :mod:`~medgen.engines.training.curves`: the loss curve PNG;
- :mod:`~medgen.engines.training.weights`: the final weights, written atomically.
"""

from __future__ import annotations

from medgen.engines.training.step import DiffusionLoss, DiffusionTrainingStep, distributed_rank, iteration_generator
from medgen.engines.training.ema import ExponentialMovingAverage, unwrap_network
from medgen.engines.training.wavelet import WaveletDiffusionTrainingLoss
from medgen.engines.training.score_matching import ScoreMatchingTrainingLoss
from medgen.engines.training.patch_edm import PATCH_EDM_REDUCTIONS, PatchEDMTrainingLoss, padis_patch_probabilities
from medgen.engines.training.semantic import (
    SemanticDiffusionTrainingLoss,
    downsample_image_and_labels,
    pack_semantic_input,
    semantic_slab_items,
)
from medgen.engines.training.weights import save_state_dict
from medgen.engines.training.checkpoints import (
    AtomicCheckpointSaver,
    RandomState,
    ResumeTraining,
    latest_checkpoint,
    load_checkpoint,
)
from medgen.engines.training.sampler import ResumableSampler
from medgen.engines.training.curves import LossCurve, tensorboard_available

__all__ = [
    "DiffusionLoss",
    "DiffusionTrainingStep",
    "distributed_rank",
    "iteration_generator",
    "ExponentialMovingAverage",
    "unwrap_network",
    "WaveletDiffusionTrainingLoss",
    "ScoreMatchingTrainingLoss",
    "PATCH_EDM_REDUCTIONS",
    "PatchEDMTrainingLoss",
    "padis_patch_probabilities",
    "SemanticDiffusionTrainingLoss",
    "downsample_image_and_labels",
    "pack_semantic_input",
    "semantic_slab_items",
    "save_state_dict",
    "AtomicCheckpointSaver",
    "RandomState",
    "ResumeTraining",
    "latest_checkpoint",
    "load_checkpoint",
    "ResumableSampler",
    "LossCurve",
    "tensorboard_available",
]
