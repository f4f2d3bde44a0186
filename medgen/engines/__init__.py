"""What bundles run on top of MONAI's engines, split by role.

- :mod:`medgen.engines.training`: the seeded, resumable training iteration, per-method losses, EMA, weights;
- :mod:`medgen.engines.writers`: the output writers (NIfTI, previews, JSON summary; atomic, never over a file);
- :mod:`medgen.engines.metrics`: each method's image-quality metrics;
- :mod:`medgen.engines.samples`: sample makers and the file formats of the bundles' shipped samples.

Every public name of the subpackages is exported here too, so a bundle config can say ``medgen.engines.<Name>``.
Nothing here imports :mod:`medgen.inferers`: bundles hand the inferers' results to these parts.
"""

from __future__ import annotations

from medgen.engines.training import (
    PATCH_EDM_REDUCTIONS,
    DiffusionLoss,
    DiffusionTrainingStep,
    ExponentialMovingAverage,
    PatchEDMTrainingLoss,
    ScoreMatchingTrainingLoss,
    SemanticDiffusionTrainingLoss,
    WaveletDiffusionTrainingLoss,
    distributed_rank,
    downsample_image_and_labels,
    iteration_generator,
    pack_semantic_input,
    padis_patch_probabilities,
    save_state_dict,
    semantic_slab_items,
    unwrap_network,
)
from medgen.engines.metrics import (
    PLANE_NAMES,
    as_magnitude_slices,
    as_volume,
    check_same_shape,
    check_slice_axis,
    check_ssim_window,
    class_intensity_statistics,
    clip_pair,
    error_statistics,
    hfs_metrics,
    psnr,
    reconstruction_metrics,
    slice_metrics,
    slices_along,
    ssim_2d,
)
from medgen.engines.writers import (
    GeneratedVolumeWriter,
    KspaceReconstructionWriter,
    OutputWriter,
    ReconstructionWriter,
    SemanticSynthesisWriter,
    SliceReconstructionWriter,
    as_affine,
    save_panel_grid_png,
    save_slice_comparison_png,
    volume_statistics,
    write_atomically,
)
from medgen.engines.samples import load_kspace_sample, phantom_mri_slices, save_kspace_sample

__all__ = [
    # training
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
    "save_state_dict",
    # metrics
    "as_volume",
    "as_magnitude_slices",
    "check_same_shape",
    "check_slice_axis",
    "check_ssim_window",
    "clip_pair",
    "error_statistics",
    "psnr",
    "slices_along",
    "ssim_2d",
    "PLANE_NAMES",
    "reconstruction_metrics",
    "slice_metrics",
    "hfs_metrics",
    "class_intensity_statistics",
    # writers
    "write_atomically",
    "OutputWriter",
    "as_affine",
    "save_panel_grid_png",
    "volume_statistics",
    "GeneratedVolumeWriter",
    "ReconstructionWriter",
    "SliceReconstructionWriter",
    "save_slice_comparison_png",
    "KspaceReconstructionWriter",
    "SemanticSynthesisWriter",
    # sample I/O
    "phantom_mri_slices",
    "load_kspace_sample",
    "save_kspace_sample",
]
