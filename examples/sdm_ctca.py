"""CTCA semantic diffusion in plain MONAI pipelines: LoadImaged -> transforms -> SupervisedEvaluator with
``SemanticDiffusionInferer`` (low resolution), then a second SupervisedEvaluator with ``SlabPatchInferer`` (the
full-resolution volume slab by slab, the low-resolution volume as its reference) -> SaveImaged.

Synthesises a coronary CT angiography from the ``sdm_ctca`` bundle's label map with its demo weights and writes
``<output_dir>/cta_labels_seed7_lowres.nii.gz`` and ``<output_dir>/cta_labels_seed7_sdm.nii.gz``::

    python examples/sdm_ctca.py --steps 50 --output_dir outputs/examples
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.transforms import Compose, CopyItemsd, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, SaveImaged

from _common import arguments, evaluate, weights
from medgen.inferers import SemanticDiffusionInferer, SlabPatchInferer
from medgen.networks.sdm_unet import SDMUNet


def sdm_network(**options) -> SDMUNet:
    return SDMUNet(spatial_dims=3, in_channels=1, out_channels=1, model_channels=8, channel_mult=(1, 2, 2),
                   num_res_blocks=1, attention_resolutions=(), num_classes=9, learn_sigma=True,
                   use_scale_shift_norm=True, resblock_updown=True, num_groups=4, spade_hidden_channels=8, **options)


def main(argv: Sequence[str] | None = None) -> tuple[Path, Path]:
    args = arguments(__doc__.splitlines()[0], "sdm_ctca", 50, argv)
    models = args.bundle_root / "models"
    lowres_network = weights(sdm_network(), models / "lowres.pt", args.device)
    highres_network = weights(sdm_network(position_channel=True, reference_channels=2), models / "highres.pt",
                              args.device)
    labels = args.bundle_root / "sample" / "cta_labels_seed7.nii.gz"
    save = dict(output_dir=str(args.output_dir), separate_folder=False, resample=False,
                output_dtype=torch.float32, print_log=False)

    # stage 1: the label map resized to 16^3 (nearest), sampled whole
    lowres = evaluate(
        [{"image": str(labels)}],
        Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                 EnsureTyped("image", dtype=torch.float32), Resized("image", (16, 16, 16), mode="nearest")]),
        lowres_network,
        SemanticDiffusionInferer(timestep_respacing=args.steps, guidance_scale=2.0, seed=args.seed, progress=False),
        Compose([SaveImaged("pred", output_postfix="lowres", **save)]),
        args.device,
    )
    reference = lowres[0]["pred"][None]  # (1, 1, 16, 16, 16)

    # stage 2: the full label map in slabs of 8 slices, conditioned on the low-resolution volume
    def with_reference(batch: dict, device=None, non_blocking=False, **kwargs) -> tuple:
        return batch["image"].to(args.device), None, (), {"reference": reference.to(args.device)}

    evaluate(
        [{"image": str(labels)}],
        Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"),
                 EnsureTyped("image", dtype=torch.float32), CopyItemsd("image", names="labels")]),
        highres_network,
        SlabPatchInferer(slab_depth=8, overlap=0, reference_pad_value=-1.0, timestep_respacing=args.steps,
                         guidance_scale=2.0, seed=args.seed + 1, progress=False),
        Compose([SaveImaged("pred", output_postfix="sdm", **save)]),
        args.device,
        prepare_batch=with_reference,
    )
    return args.output_dir / "cta_labels_seed7_lowres.nii.gz", args.output_dir / "cta_labels_seed7_sdm.nii.gz"


if __name__ == "__main__":
    print(*main(), sep="\n")
