"""Training and output writers for bundles with MONAI engines: a seeded, resumable diffusion training step, method losses, EMA, writers and metrics."""

from __future__ import annotations

from medgen.engines.ema import (
    ExponentialMovingAverage,
    unwrap_network,
)
from medgen.engines.kspace import (
    phantom_mri_slices,
    hfs_metrics,
    load_kspace_sample,
    save_kspace_sample,
    KspaceReconstructionWriter,
)
from medgen.engines.losses import (
    WaveletDiffusionTrainingLoss,
)
from medgen.engines.patch_edm import (
    PATCH_EDM_REDUCTIONS,
    PatchEDMTrainingLoss,
    padis_patch_probabilities,
)
from medgen.engines.reconstruction import (
    PLANE_NAMES,
    ReconstructionWriter,
    reconstruction_metrics,
)
from medgen.engines.score_matching import (
    ScoreMatchingTrainingLoss,
)
from medgen.engines.semantic import (
    SemanticDiffusionTrainingLoss,
    downsample_image_and_labels,
    pack_semantic_input,
    semantic_slab_items,
)
from medgen.engines.semantic_writer import (
    SemanticSynthesisWriter,
    class_intensity_statistics,
)
from medgen.engines.slice_reconstruction import (
    SliceReconstructionWriter,
    save_slice_comparison_png,
    slice_metrics,
)
from medgen.engines.trainer import (
    DiffusionLoss,
    DiffusionTrainingStep,
    distributed_rank,
    iteration_generator,
)
from medgen.engines.writers import (
    GeneratedVolumeWriter,
    save_state_dict,
    volume_statistics,
)

__all__ = [
    "ExponentialMovingAverage",
    "unwrap_network",
    "phantom_mri_slices",
    "hfs_metrics",
    "load_kspace_sample",
    "save_kspace_sample",
    "KspaceReconstructionWriter",
    "WaveletDiffusionTrainingLoss",
    "PATCH_EDM_REDUCTIONS",
    "PatchEDMTrainingLoss",
    "padis_patch_probabilities",
    "PLANE_NAMES",
    "ReconstructionWriter",
    "reconstruction_metrics",
    "ScoreMatchingTrainingLoss",
    "SemanticDiffusionTrainingLoss",
    "downsample_image_and_labels",
    "pack_semantic_input",
    "semantic_slab_items",
    "SemanticSynthesisWriter",
    "class_intensity_statistics",
    "SliceReconstructionWriter",
    "save_slice_comparison_png",
    "slice_metrics",
    "DiffusionLoss",
    "DiffusionTrainingStep",
    "distributed_rank",
    "iteration_generator",
    "GeneratedVolumeWriter",
    "save_state_dict",
    "volume_statistics",
]
