"""TPDM z-axis super-resolution in a plain MONAI pipeline: LoadImaged -> transforms -> SupervisedEvaluator with
``PerpendicularSliceInferer`` -> SaveImaged.

Reconstructs the ``tpdm_brain_mri`` bundle's 4x z-downsampled brain phantom with the bundle's demo weights (two
perpendicular 2D score models) and writes ``<output_dir>/brain_phantom_seed7_z4_tpdm.nii.gz`` on the full-resolution
grid (the inferer refines the affine along z)::

    python examples/tpdm_zsr.py --steps 200 --output_dir outputs/examples
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, SaveImaged

from _common import arguments, evaluate, weights
from medgen.inferers import PerpendicularSliceInferer
from medgen.networks import NCSNpp


def main(argv: Sequence[str] | None = None) -> Path:
    args = arguments(__doc__.splitlines()[0], "tpdm_brain_mri", 200, argv)
    models = args.bundle_root / "models"

    def score_network(name: str) -> torch.nn.Module:
        net = NCSNpp(in_channels=1, image_size=32, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(),
                     sigma_min=0.01, sigma_max=15.0, num_scales=2000)
        return weights(net, models / f"{name}.pt", args.device)

    network = torch.nn.ModuleDict({"primary": score_network("primary"), "auxiliary": score_network("auxiliary")})
    preprocessing = Compose([
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        EnsureTyped("image", dtype=torch.float32),
    ])
    inferer = PerpendicularSliceInferer(
        task="zsr", factor=4, steps=args.steps, K=2, batch_size=32, dps_weight=3.0, primary_plane=(1, 0, 2),
        auxiliary_plane=(2, 1, 0), sigma_min=0.01, sigma_max=15.0, seed=args.seed, progress=False,
    )
    postprocessing = Compose([
        SaveImaged("pred", output_dir=str(args.output_dir), output_postfix="tpdm", separate_folder=False,
                   resample=False, output_dtype=torch.float32, print_log=False),
    ])
    image = args.bundle_root / "sample" / "brain_phantom_seed7_z4.nii.gz"
    evaluate([{"image": str(image)}], preprocessing, network, inferer, postprocessing, args.device)
    return args.output_dir / "brain_phantom_seed7_z4_tpdm.nii.gz"


if __name__ == "__main__":
    print(main())
