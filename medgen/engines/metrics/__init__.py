"""Image-quality metrics of the bundles' results, each method's as its official evaluation defines it.

- :mod:`~medgen.engines.metrics.base`: what they share (input conversion, argument checks, clipping, MONAI's
  PSNR/SSIM) and how the definitions differ;
- :func:`reconstruction_metrics` (TPDM, volumes), :func:`slice_metrics` (PaDIS, slice stacks), :func:`hfs_metrics`
  (HFS-SDE, complex MR slices), :func:`class_intensity_statistics` (SDM, label-conditioned synthesis),
  :func:`masked_synthesis_metrics` with :class:`LinearSynthesisBaseline` (cWDM, contrast synthesis in a brain mask);
- :func:`uncertainty_metrics`: coverage of the error by a posterior std.
"""

from __future__ import annotations

from medgen.engines.metrics.base import (
    as_magnitude_slices,
    as_volume,
    check_same_shape,
    check_ssim_window,
    clip_pair,
    error_statistics,
    psnr,
    slices_along,
    ssim_2d,
)
from medgen.engines.metrics.reconstruction import PLANE_NAMES, reconstruction_metrics
from medgen.engines.metrics.slices import check_slice_axis, slice_metrics
from medgen.engines.metrics.kspace import hfs_metrics
from medgen.engines.metrics.semantic import class_intensity_statistics
from medgen.engines.metrics.synthesis import LinearSynthesisBaseline, masked_synthesis_metrics
from medgen.engines.metrics.uncertainty import uncertainty_metrics

__all__ = [
    "as_magnitude_slices",
    "as_volume",
    "check_same_shape",
    "check_ssim_window",
    "clip_pair",
    "error_statistics",
    "psnr",
    "slices_along",
    "ssim_2d",
    "PLANE_NAMES",
    "reconstruction_metrics",
    "check_slice_axis",
    "slice_metrics",
    "hfs_metrics",
    "class_intensity_statistics",
    "LinearSynthesisBaseline",
    "masked_synthesis_metrics",
    "uncertainty_metrics",
]
