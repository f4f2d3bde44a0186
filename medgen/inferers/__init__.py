"""MONAI inferers, one per method, each a composition of the parts in :mod:`medgen.diffusion` (priors, consistency
terms, views, step rules) plus I/O, sharing one sampling loop (progress, seeding, checkpoint/resume)."""

from __future__ import annotations

from medgen.inferers.base import (
    SamplingInferer,
    DiffusionSamplingInferer,
    DIFFUSION_SAMPLERS,
)
from medgen.inferers.perpendicular import (
    PerpendicularSliceInferer,
    TPDMSettings,
    TPDM_OFFICIAL,
    TPDM_ZSR_DPS_WEIGHTS,
    TASKS,
    CONSISTENCIES,
)
from medgen.inferers.wavelet import (
    WaveletDiffusionInferer,
    WDMSettings,
    WDM_OFFICIAL,
    CWDM_OFFICIAL,
)
from medgen.inferers.patch import (
    SOLVERS,
    INITS,
    RESIDUAL_NORMS,
    PaDISSettings,
    PatchDiffusionInferer,
)
from medgen.inferers.highfrequency import (
    HighFrequencySpaceInferer,
    HFSSettings,
    KSpaceMeasurement,
    SDE_PRESETS,
    ACCELERATED,
)
from medgen.inferers.posterior import PosteriorSampler, posterior_mean_std
from medgen.inferers.slab import (
    SemanticDiffusionInferer,
    SlabPatchInferer,
)

__all__ = [
    "SamplingInferer",
    "DiffusionSamplingInferer",
    "DIFFUSION_SAMPLERS",
    "PerpendicularSliceInferer",
    "TPDMSettings",
    "TPDM_OFFICIAL",
    "TPDM_ZSR_DPS_WEIGHTS",
    "TASKS",
    "CONSISTENCIES",
    "WaveletDiffusionInferer",
    "WDMSettings",
    "WDM_OFFICIAL",
    "CWDM_OFFICIAL",
    "SOLVERS",
    "INITS",
    "RESIDUAL_NORMS",
    "PaDISSettings",
    "PatchDiffusionInferer",
    "HighFrequencySpaceInferer",
    "HFSSettings",
    "KSpaceMeasurement",
    "SDE_PRESETS",
    "ACCELERATED",
    "SemanticDiffusionInferer",
    "SlabPatchInferer",
    "PosteriorSampler",
    "posterior_mean_std",
]
