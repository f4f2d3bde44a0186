"""Training and output writers for bundles with MONAI engines: a seeded, resumable diffusion training step, method losses, EMA, writers and metrics."""

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
from medgen.engines.score_matching import (
    ScoreMatchingTrainingLoss,
)
from medgen.engines.patch_edm import (
    PATCH_EDM_REDUCTIONS,
    PatchEDMTrainingLoss,
    padis_patch_probabilities,
)
from medgen.engines.semantic import (
    SemanticDiffusionTrainingLoss,
    downsample_image_and_labels,
    pack_semantic_input,
    semantic_slab_items,
)
from medgen.engines.ema import (
    ExponentialMovingAverage,
    unwrap_network,
)
from medgen.engines.metrics import (
    as_volume,
    as_magnitude_slices,
    check_same_shape,
    check_ssim_window,
    clip_pair,
    error_statistics,
    psnr,
    slices_along,
    ssim_2d,
)
from medgen.engines.writers import (
    GeneratedVolumeWriter,
    OutputWriter,
    as_affine,
    save_panel_grid_png,
    save_state_dict,
    volume_statistics,
    write_atomically,
)
from medgen.engines.reconstruction import (
    PLANE_NAMES,
    ReconstructionWriter,
    reconstruction_metrics,
)
from medgen.engines.slice_reconstruction import (
    SliceReconstructionWriter,
    save_slice_comparison_png,
    slice_metrics,
)
from medgen.engines.kspace import (
    phantom_mri_slices,
    hfs_metrics,
    load_kspace_sample,
    save_kspace_sample,
    KspaceReconstructionWriter,
)
from medgen.engines.semantic_writer import (
    SemanticSynthesisWriter,
    class_intensity_statistics,
)

__all__ = [
    "DiffusionLoss",
    "DiffusionTrainingStep",
    "distributed_rank",
    "iteration_generator",
    "WaveletDiffusionTrainingLoss",
    "ScoreMatchingTrainingLoss",
    "PATCH_EDM_REDUCTIONS",
    "PatchEDMTrainingLoss",
    "padis_patch_probabilities",
    "SemanticDiffusionTrainingLoss",
    "downsample_image_and_labels",
    "pack_semantic_input",
    "semantic_slab_items",
    "ExponentialMovingAverage",
    "unwrap_network",
    "as_volume",
    "as_magnitude_slices",
    "check_same_shape",
    "check_ssim_window",
    "clip_pair",
    "error_statistics",
    "psnr",
    "slices_along",
    "ssim_2d",
    "GeneratedVolumeWriter",
    "OutputWriter",
    "as_affine",
    "save_panel_grid_png",
    "save_state_dict",
    "volume_statistics",
    "write_atomically",
    "PLANE_NAMES",
    "ReconstructionWriter",
    "reconstruction_metrics",
    "SliceReconstructionWriter",
    "save_slice_comparison_png",
    "slice_metrics",
    "phantom_mri_slices",
    "hfs_metrics",
    "load_kspace_sample",
    "save_kspace_sample",
    "KspaceReconstructionWriter",
    "SemanticSynthesisWriter",
    "class_intensity_statistics",
]
