"""monai.inferers.Inferer subclasses, one per method, sharing one sampling loop (progress, seeding, checkpoint/resume)."""

from __future__ import annotations

from medgen.inferers.loop import (
    SamplingLoop,
    make_generator,
    CHECKPOINT_NAME,
)
from medgen.inferers.base import (
    SamplingInferer,
    DiffusionSamplingInferer,
    DIFFUSION_SAMPLERS,
    tensor_digest,
    unwrap_network,
    network_parameter,
    respace_diffusion,
    diffusion_fingerprint,
)
from medgen.inferers.perpendicular import (
    PerpendicularSliceInferer,
    tpdm_pc_step,
    Residual,
    PLANE_PRESETS,
    TPDM_ZSR_DPS_WEIGHTS,
    TASKS,
)
from medgen.inferers.wavelet import (
    WaveletDiffusionInferer,
    repaint_schedule,
    wdm_diffusion,
)
from medgen.inferers.patch import (
    PATCH_MODES,
    SOLVERS,
    INITS,
    RESIDUAL_NORMS,
    PatchNetwork,
    PatchDenoiser,
    PatchDiffusionInferer,
)
from medgen.inferers.highfrequency import (
    HighFrequencySpaceInferer,
    KSpaceMeasurement,
    SDE_PRESETS,
)
from medgen.inferers.slab import (
    sdm_diffusion,
    slab_layout,
    slab_blend_weights,
    SemanticDiffusionInferer,
    SlabPatchInferer,
)

__all__ = [
    "SamplingLoop",
    "make_generator",
    "CHECKPOINT_NAME",
    "SamplingInferer",
    "DiffusionSamplingInferer",
    "DIFFUSION_SAMPLERS",
    "tensor_digest",
    "unwrap_network",
    "network_parameter",
    "respace_diffusion",
    "diffusion_fingerprint",
    "PerpendicularSliceInferer",
    "tpdm_pc_step",
    "Residual",
    "PLANE_PRESETS",
    "TPDM_ZSR_DPS_WEIGHTS",
    "TASKS",
    "WaveletDiffusionInferer",
    "repaint_schedule",
    "wdm_diffusion",
    "PATCH_MODES",
    "SOLVERS",
    "INITS",
    "RESIDUAL_NORMS",
    "PatchNetwork",
    "PatchDenoiser",
    "PatchDiffusionInferer",
    "HighFrequencySpaceInferer",
    "KSpaceMeasurement",
    "SDE_PRESETS",
    "sdm_diffusion",
    "slab_layout",
    "slab_blend_weights",
    "SemanticDiffusionInferer",
    "SlabPatchInferer",
]
