"""Procedural sample data (deterministic, seeded, any size) and atomic writers for volumes and previews."""

from __future__ import annotations

from medgen.data.coronary import CTA_CLASSES, CTA_HU, coronary_cta_phantom
from medgen.data.io import save_nifti, save_orthogonal_slices_png
from medgen.data.phantoms import BODY_CT_LABELS, BRAIN_LABELS, body_ct_phantom, brain_mri_phantom, normalize_hu

__all__ = [
    "BODY_CT_LABELS",
    "BRAIN_LABELS",
    "CTA_CLASSES",
    "CTA_HU",
    "body_ct_phantom",
    "brain_mri_phantom",
    "coronary_cta_phantom",
    "normalize_hu",
    "save_nifti",
    "save_orthogonal_slices_png",
]
