"""medgen.engines: split by role (training, writers, metrics, samples), every public name still exported at the top,
and nothing imported from medgen.inferers."""

from __future__ import annotations

import subprocess
import sys

import medgen.engines as engines

# what medgen.engines exported before the split by role: bundle configs name them as medgen.engines.<Name>
EXPORTED_BEFORE_THE_SPLIT = (
    "DiffusionLoss", "DiffusionTrainingStep", "distributed_rank", "iteration_generator", "WaveletDiffusionTrainingLoss",
    "ScoreMatchingTrainingLoss", "PATCH_EDM_REDUCTIONS", "PatchEDMTrainingLoss", "padis_patch_probabilities",
    "SemanticDiffusionTrainingLoss", "downsample_image_and_labels", "pack_semantic_input", "semantic_slab_items",
    "ExponentialMovingAverage", "unwrap_network", "as_volume", "as_magnitude_slices", "check_same_shape",
    "check_ssim_window", "clip_pair", "error_statistics", "psnr", "slices_along", "ssim_2d", "GeneratedVolumeWriter",
    "OutputWriter", "as_affine", "save_panel_grid_png", "save_state_dict", "volume_statistics", "write_atomically",
    "PLANE_NAMES", "ReconstructionWriter", "reconstruction_metrics", "SliceReconstructionWriter",
    "save_slice_comparison_png", "slice_metrics", "phantom_mri_slices", "hfs_metrics", "load_kspace_sample",
    "save_kspace_sample", "KspaceReconstructionWriter", "SemanticSynthesisWriter", "class_intensity_statistics",
)  # fmt: skip


def test_every_name_exported_before_the_split_is_still_exported():
    missing = [name for name in EXPORTED_BEFORE_THE_SPLIT if name not in engines.__all__ or not hasattr(engines, name)]
    assert not missing
    assert all(hasattr(engines, name) for name in engines.__all__)


def test_each_public_name_lives_in_its_role():
    roles = {"training": engines.training, "writers": engines.writers, "metrics": engines.metrics,
             "samples": engines.samples}
    for name in engines.__all__:
        homes = [role for role, package in roles.items() if name in package.__all__]
        assert len(homes) == 1, (name, homes)
        assert getattr(roles[homes[0]], name) is getattr(engines, name)


def test_engines_import_nothing_from_inferers():
    code = "import sys, medgen.engines; print(sorted(m for m in sys.modules if m.startswith('medgen.inferers')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
