"""Make the inpainting sample of the bundle: a brain phantom in scanner-like units and the mask of a region to fill.

Run from the repository root (``medgen`` installed)::

    python bundles/wdm_brain_mri/scripts/make_sample.py --output_dir bundles/wdm_brain_mri/sample

Writes

- ``brain_phantom_seed7.nii.gz``: :func:`medgen.data.brain_mri_phantom` of seed 7 at 32^3 (training uses seeds
  1000-1063, so seed 7 is unseen), stored as int16 on a scanner-like scale (x 1800: a raw volume the percentile
  normalisation has to handle), 6 mm voxels with an oblique affine (10 degrees about z) centred on the origin;
- ``brain_phantom_seed7_mask.nii.gz``: uint8, 1 = a voxel to generate: an ellipsoid of semi-axes 6, 5 and 4 voxels in
  the right hemisphere (the region RePaint fills; every other voxel is kept).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medgen.data import brain_mri_phantom
from medgen.data.io import save_nifti

SEED = 7
SIZE = 32
VOXEL_MM = 6.0
SCANNER_SCALE = 1800.0
TILT_DEGREES = 10.0
MASK_CENTRE = (11, 17, 17)
MASK_SEMI_AXES = (6, 5, 4)


def sample_affine() -> np.ndarray:
    """Voxel-to-world matrix: ``VOXEL_MM`` isotropic voxels rotated by ``TILT_DEGREES`` about z, centred on 0."""
    angle = np.deg2rad(TILT_DEGREES)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * VOXEL_MM
    affine[:3, 3] = -affine[:3, :3] @ np.full(3, (SIZE - 1) / 2)
    return affine


def inpainting_mask() -> np.ndarray:
    """``(SIZE,) * 3`` uint8: 1 inside the ellipsoid to generate."""
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"))
    centre = np.array(MASK_CENTRE, dtype=float).reshape(3, 1, 1, 1)
    axes = np.array(MASK_SEMI_AXES, dtype=float).reshape(3, 1, 1, 1)
    return (np.sum(((grid - centre) / axes) ** 2, axis=0) <= 1.0).astype(np.uint8)


def make_sample(output_dir: str | Path, overwrite: bool = False) -> list[Path]:
    folder = Path(output_dir)
    volume = np.round(brain_mri_phantom((SIZE,) * 3, SEED) * SCANNER_SCALE).astype(np.int16)
    return [
        save_nifti(volume, folder / f"brain_phantom_seed{SEED}.nii.gz", sample_affine(), overwrite=overwrite),
        save_nifti(inpainting_mask(), folder / f"brain_phantom_seed{SEED}_mask.nii.gz", sample_affine(),
                   overwrite=overwrite),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(Path(__file__).resolve().parents[1] / "sample"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    for path in make_sample(args.output_dir, args.overwrite):
        print("wrote", path)
