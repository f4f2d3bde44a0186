"""Make the bundle's sample: a BraTS-style case folder of a multi-contrast brain phantom not in the training set.

Run from the repository root (``medgen`` installed)::

    python bundles/cwdm_brain_mri/scripts/make_sample.py --output_dir bundles/cwdm_brain_mri/sample

Writes ``BraTS-GLI-00007-000/`` with ``BraTS-GLI-00007-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (BraTS 2023 names, as the
cWDM repository reads them): :func:`medgen.data.brain_mri_contrasts` of seed 7 at 32^3 with its lesion, skull-stripped
(0 outside the brain, as BraTS), each contrast stored as int16 on its own scanner-like scale (T1 x 900, T1ce x 1400,
T2 x 2600, FLAIR x 700: a raw volume the normalisation has to handle), 4.5 mm isotropic voxels centred on the origin;
``-seg`` holds the lesion labels (1 necrosis, 2 oedema, 3 enhancing). Training uses seeds 1000-1095, so seed 7 is
unseen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medgen.data import brain_mri_contrasts, save_brats_case

SEED = 7
SIZE = 32
CASE = "BraTS-GLI-00007-000"
VOXEL_MM = 4.5
SCANNER_SCALE = {"t1": 900.0, "t1ce": 1400.0, "t2": 2600.0, "flair": 700.0}


def sample_affine() -> np.ndarray:
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = -(SIZE - 1) / 2 * VOXEL_MM
    return affine


def make_sample(output_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    images, _, lesion = brain_mri_contrasts((SIZE,) * 3, seed=SEED, skull_strip=True, return_labels=True)
    volumes = {name: np.round(image * SCANNER_SCALE[name]).astype(np.int16) for name, image in images.items()}
    return save_brats_case(
        Path(output_dir) / CASE, CASE, {**volumes, "seg": lesion}, sample_affine(), convention="2023",
        overwrite=overwrite,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(Path(__file__).resolve().parents[1] / "sample"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    for path in make_sample(args.output_dir, args.overwrite).values():
        print("wrote", path)
