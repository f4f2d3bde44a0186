"""WDM 3D generation in a plain MONAI pipeline: LoadImaged -> transforms -> SupervisedEvaluator with
``WaveletDiffusionInferer`` -> SaveImaged.

The inferer generates unconditionally; the image it is given is a template whose shape, device and affine the
sample takes. Here the template is the ``tpdm_brain_mri`` bundle's 32^3 brain phantom, so the generated volume
(``wdm_brain_mri`` demo weights, DDIM) lies on that scan's grid::

    python examples/wdm_generate.py --steps 50 --output_dir outputs/examples
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, SaveImaged

from _common import BUNDLES, arguments, evaluate, weights
from medgen.inferers import WaveletDiffusionInferer
from medgen.networks import GuidedUNet


def main(argv: Sequence[str] | None = None) -> Path:
    args = arguments(__doc__.splitlines()[0], "wdm_brain_mri", 50, argv)
    network = weights(
        GuidedUNet(spatial_dims=3, in_channels=8, out_channels=8, model_channels=16, channel_mult=(1, 2, 2),
                   num_res_blocks=1, attention_resolutions=(), num_groups=8, resblock_updown=True,
                   additive_skips=True, bottleneck_attention=False, resample_factor=2),
        args.bundle_root / "models" / "model.pt", args.device,
    )
    preprocessing = Compose([
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        EnsureTyped("image", dtype=torch.float32),
    ])
    inferer = WaveletDiffusionInferer(timestep_respacing=args.steps, sampler="ddim", clip_denoised=True,
                                      rescale_output=True, seed=args.seed, progress=False)
    postprocessing = Compose([
        SaveImaged("pred", output_dir=str(args.output_dir), output_postfix="wdm", separate_folder=False,
                   resample=False, output_dtype=torch.float32, print_log=False),
    ])
    template = BUNDLES / "tpdm_brain_mri" / "sample" / "brain_phantom_seed7.nii.gz"
    evaluate([{"image": str(template)}], preprocessing, network, inferer, postprocessing, args.device)
    return args.output_dir / "brain_phantom_seed7_wdm.nii.gz"


if __name__ == "__main__":
    print(main())
