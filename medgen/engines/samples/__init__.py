"""Sample I/O of the bundles: procedural sample makers and the file formats of the shipped samples."""

from __future__ import annotations

from medgen.engines.samples.kspace import load_kspace_sample, phantom_mri_slices, save_kspace_sample

__all__ = ["load_kspace_sample", "phantom_mri_slices", "save_kspace_sample"]
