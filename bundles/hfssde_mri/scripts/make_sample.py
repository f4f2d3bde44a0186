"""Make the bundle's sample: multi-coil k-space of three slices of a brain phantom that is not in the training set.

Run from the repository root (``medgen`` installed)::

    python bundles/hfssde_mri/scripts/make_sample.py --output_dir bundles/hfssde_mri/sample

Writes ``phantom_seed7_kspace.npz`` (``kspace`` complex64 (3, 8, 64, 64), fully sampled, centred; ``sensitivity_maps``
complex64 (3, 8, 64, 64) estimated from the central 8 k-space columns; ``affine`` (4, 4)) and
``phantom_seed7_reference.npz`` (``image`` complex64 (3, 1, 64, 64) = ``sum_c conj(S_c) ifft2c(k_c)``, the fully
sampled coil-combined image HFS-SDE scores against; ``affine``). Training uses seeds 1000-1047, so seed 7 is unseen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from medgen.engines.samples import phantom_mri_slices, save_kspace_sample
from medgen.physics.mri import fft2c
from medgen.transforms.kspace import CoilCombine, EstimateCoilSensitivity, RandSimulateMultiCoil

SEED = 7
IMAGE_SIZE = 64
NUM_SLICES = 3
SLICE_RANGE = (0.45, 0.65)
NUM_COILS = 8
COIL_ROTATION = 0.3  # radians: a coil ring position no training slice is guaranteed to share
CALIBRATION_LINES = 8
SPACING_MM = 3.5  # a 224 mm field of view on 64 pixels


def make_sample(output_dir: str | Path, overwrite: bool = False, seed: int = SEED) -> tuple[Path, Path]:
    """Write the sample of phantom ``seed`` (the shipped one: 7; ``benchmarks/bench_quality.py`` makes validation
    samples of other seeds outside the training seeds 1000-1047)."""
    slices = phantom_mri_slices([seed], IMAGE_SIZE, NUM_SLICES, slice_range=SLICE_RANGE)
    simulate = RandSimulateMultiCoil(NUM_COILS, rotation=COIL_ROTATION, prob=0.0)  # a fixed coil ring
    kspace = torch.stack([fft2c(simulate(image)) for image in slices])  # (S, Nc, H, W)
    estimate = EstimateCoilSensitivity(acs_lines=CALIBRATION_LINES)
    maps = torch.stack([estimate(k) for k in kspace])
    combine = CoilCombine(input_type="kspace")
    reference = torch.stack([combine(k, s) for k, s in zip(kspace, maps)])  # (S, 1, H, W)
    affine = torch.diag(torch.tensor([SPACING_MM, SPACING_MM, SPACING_MM, 1.0], dtype=torch.float64))
    output_dir = Path(output_dir)
    stem = f"phantom_seed{seed}"
    inputs = save_kspace_sample(output_dir / f"{stem}_kspace.npz", overwrite, kspace=kspace, sensitivity_maps=maps,
                                affine=affine)
    target = save_kspace_sample(output_dir / f"{stem}_reference.npz", overwrite, image=reference, affine=affine)
    return inputs, target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=str(Path(__file__).resolve().parents[1] / "sample"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    for path in make_sample(args.output_dir, args.overwrite):
        print("wrote", path)
