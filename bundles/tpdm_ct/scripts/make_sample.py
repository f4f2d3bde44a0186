"""Make the bundle's sample: a body-CT phantom in HU that is not in the training set, and its sparse-view sinograms.

Run from the repository root (``medgen`` installed)::

    python bundles/tpdm_ct/scripts/make_sample.py --output_dir bundles/tpdm_ct/sample

Writes ``body_ct_seed7.nii.gz`` (48^3, int16 Hounsfield units as a scanner stores CT; 0.8 x 0.8 x 1.5 mm voxels, the
origin at the volume centre: a non-identity affine) and ``body_ct_seed7_sino{8,4,2}.nii.gz``: the parallel-beam
sinograms of every axial slice with 8, 4 and 2 views (TPDM's geometry, :meth:`ParallelBeamCT.tpdm` with sparsity
``180 // views``: views at ``k * 180 / views`` degrees), shape ``(68 detectors, views, 48 slices)``, float32, with
the volume's affine (its z axis is the slice axis). The sinograms are line integrals, in pixel units, of the
volume in TPDM-CT's network scale: HU mapped by the window ``[-1000, 1000] -> [0, 1]``, i.e. ``mu / (2 mu_water)``
(no clipping). Training uses seeds 1000-1063, so seed 7 is unseen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from medgen.data import body_ct_phantom, save_nifti
from medgen.physics.ct import ParallelBeamCT
from medgen.transforms.normalize import HUWindowNormalize

SEED = 7
SIZE = 48
SPACING_MM = (0.8, 0.8, 1.5)
VIEWS = (8, 4, 2)
HU_WINDOW = (-1000.0, 1000.0)


def sample_affine() -> np.ndarray:
    """Voxel-to-world (RAS, mm): anisotropic voxels, the volume centred on the origin."""
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = [-(SIZE - 1) / 2 * s for s in SPACING_MM]
    return affine


def operator(views: int) -> ParallelBeamCT:
    """TPDM's parallel-beam geometry with ``views`` views for the bundle's axial slices."""
    return ParallelBeamCT.tpdm(image_size=SIZE, sparsity=180 // views)


def make_sample(output_dir: str | Path, overwrite: bool = False) -> list[Path]:
    hu = np.round(body_ct_phantom((SIZE,) * 3, seed=SEED)).astype(np.int16)
    affine = sample_affine()
    output_dir = Path(output_dir)
    written = [save_nifti(hu, output_dir / f"body_ct_seed{SEED}.nii.gz", affine=affine, overwrite=overwrite)]
    scaled = torch.as_tensor(HUWindowNormalize(*HU_WINDOW)(torch.from_numpy(hu)[None]))[None]  # (1, 1, X, Y, Z)
    for views in VIEWS:
        assert operator(views).num_angles == views
        sinogram = operator(views)(scaled)[0]  # (1, detectors, views, Z)
        written.append(
            save_nifti(sinogram, output_dir / f"body_ct_seed{SEED}_sino{views}.nii.gz", affine=affine,
                       overwrite=overwrite)
        )
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(Path(__file__).resolve().parents[1] / "sample"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    for path in make_sample(args.output_dir, args.overwrite):
        print("wrote", path)
