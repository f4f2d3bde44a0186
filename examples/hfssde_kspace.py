"""HFS-SDE multi-coil MRI in a plain MONAI pipeline: LoadImaged -> transforms -> SupervisedEvaluator with
``HighFrequencySpaceInferer`` -> SaveImaged.

Reconstructs the ``hfssde_mri`` bundle's sample (3 slices of 8-coil k-space, 64^2) undersampled by an equispaced
mask (stride 4 and 8 central columns) with the bundle's demo weights. MONAI's ``NumpyReader`` loads the k-space and
the coil maps from the ``.npz`` file, the k-space is normalised per slice as the bundle does, the mask and maps
reach the inferer through ``prepare_batch``, and the magnitude images are written as
``<output_dir>/phantom_seed7_kspace_hfssde.nii.gz`` (slices along the last axis)::

    python examples/hfssde_kspace.py --steps 100 --output_dir outputs/examples
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor, NumpyReader
from monai.transforms import Compose, Lambdad, LoadImaged, SaveImaged

from _common import arguments, evaluate, weights
from medgen.inferers import HighFrequencySpaceInferer
from medgen.networks import DDPMUNet
from medgen.transforms.intensity import KspaceStdNormalize
from medgen.transforms.kspace import low_frequency_mask, make_mask


def main(argv: Sequence[str] | None = None) -> Path:
    args = arguments(__doc__.splitlines()[0], "hfssde_mri", 100, argv)
    network = weights(
        DDPMUNet(in_channels=2, image_size=64, nf=32, ch_mult=(1, 1, 1, 1), num_res_blocks=0, attn_resolutions=(),
                 dropout=0.0, centered=False, scale_by_sigma=False),
        args.bundle_root / "models" / "model.pt", args.device,
    )
    normalize = KspaceStdNormalize(1.5)
    mask = make_mask("equispaced", (64, 64), rng=args.seed, acc=4, acs_lines=8, mode="stride")
    preprocessing = Compose([
        LoadImaged("kspace", reader=NumpyReader(npz_keys=["kspace"]), image_only=True, dtype=None),
        LoadImaged("maps", reader=NumpyReader(npz_keys=["sensitivity_maps"]), image_only=True, dtype=None),
        Lambdad("kspace", lambda k: k / torch.stack([normalize.scale_of(s) for s in k]).reshape(-1, 1, 1, 1),
                overwrite="image"),
        Lambdad("kspace", lambda k: torch.stack([normalize.scale_of(s) for s in k]).reshape(-1, 1, 1, 1),
                overwrite="scale"),
    ])

    def prepare_batch(batch: dict, device=None, non_blocking=False, **kwargs) -> tuple:
        # one item = the slices of one study: the slices are the inferer's batch
        extra = {"mask": mask.to(args.device), "sensitivity_maps": batch["maps"][0].to(args.device)}
        return batch["image"][0].to(args.device), None, (), extra

    def magnitudes(pred: MetaTensor, scale: torch.Tensor) -> MetaTensor:  # (S, 1, H, W) -> (1, H, W, S)
        # the k-space file's name and affine; its other meta describe the (S, coils, H, W) array, not this image
        meta = {"filename_or_obj": pred.meta["filename_or_obj"], "affine": pred.affine}
        return MetaTensor((pred.as_tensor().cpu() * scale[0]).abs()[:, 0].permute(1, 2, 0)[None], meta=meta)

    # snr 0.16: the bundle's default, chosen on validation phantoms (the official accelerated value is 0.32)
    inferer = HighFrequencySpaceInferer(low_frequency_mask((64, 64), 4), sde="hfs", accelerated=True, snr=0.16,
                                        num_steps=args.steps, batch_size=1, output="complex", seed=args.seed,
                                        progress=False)
    postprocessing = Compose([
        lambda data: {**data, "pred": magnitudes(data["pred"], data["scale"])},
        SaveImaged("pred", output_dir=str(args.output_dir), output_postfix="hfssde", separate_folder=False,
                   resample=False, output_dtype=torch.float32, print_log=False),
    ])
    sample = args.bundle_root / "sample" / "phantom_seed7_kspace.npz"
    evaluate([{"kspace": str(sample), "maps": str(sample)}], preprocessing, network, inferer, postprocessing,
             args.device, prepare_batch=prepare_batch, decollate=False)
    return args.output_dir / "phantom_seed7_kspace_hfssde.nii.gz"


if __name__ == "__main__":
    print(main())
