"""PaDIS sparse-view CT in a plain MONAI pipeline: LoadImaged -> transforms -> SupervisedEvaluator with
``PatchDiffusionInferer`` -> SaveImaged.

Reconstructs the ``padis_ct`` bundle's 8-view sinogram of a 64^2 body-CT slice with the bundle's demo patch
network. The sinogram volume ``(detectors, views, slices)`` becomes a batch of slice sinograms for the inferer,
and the reconstructed slices become a volume again before SaveImaged writes
``<output_dir>/body_ct_seed7_z11_sino8_padis.nii.gz``::

    python examples/padis_sparse_view_ct.py --steps 40 --output_dir outputs/examples
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, Lambdad, LoadImaged, SaveImaged

from _common import arguments, evaluate, weights
from medgen.inferers import PatchDiffusionInferer
from medgen.networks import PatchEDMPrecond
from medgen.physics.ct import ParallelBeamCT


def main(argv: Sequence[str] | None = None, inner_iterations: int = 5, sigma_max: float = 2.0) -> Path:
    args = arguments(__doc__.splitlines()[0], "padis_ct", 40, argv)
    network = weights(
        PatchEDMPrecond(img_resolution=96, img_channels=1, pos_channels=2, model_channels=16, channel_mult=(1, 2, 2),
                        num_blocks=1, attn_resolutions=(), resample_filter=(1, 1)),
        args.bundle_root / "models" / "model.pt", args.device,
    )
    operator = ParallelBeamCT.padis(64, views=8, field_of_view=40.0, num_detectors=128, detector_width=80.0)
    preprocessing = Compose([
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        EnsureTyped("image", dtype=torch.float32),
    ])

    def to_slices(batch: dict) -> tuple:  # (1, 1, detectors, views, S) -> (S, 1, detectors, views)
        sinogram = batch["image"]
        return sinogram[0].permute(3, 0, 1, 2).to(args.device), None

    def to_volume(slices: MetaTensor) -> MetaTensor:  # (S, 1, H, W) -> (1, H, W, S) with the sinogram's meta
        return MetaTensor(slices.as_tensor().permute(1, 2, 3, 0), meta=slices.meta)

    inferer = PatchDiffusionInferer(operator, patch_size=16, pad=16, num_steps=args.steps, sigma_max=sigma_max,
                                    zeta=0.1, inner_iterations=inner_iterations, solver="dps", clamp=(0.0, 1.0),
                                    residual_norm="per_image", seed=args.seed, progress=False)
    postprocessing = Compose([
        Lambdad("pred", to_volume),
        SaveImaged("pred", output_dir=str(args.output_dir), output_postfix="padis", separate_folder=False,
                   resample=False, output_dtype=torch.float32, print_log=False),
    ])
    sinogram = args.bundle_root / "sample" / "body_ct_seed7_z11_sino8.nii.gz"
    evaluate([{"image": str(sinogram)}], preprocessing, network, inferer, postprocessing, args.device,
             prepare_batch=lambda batch, device=None, non_blocking=False, **kwargs: to_slices(batch), decollate=False)
    return args.output_dir / "body_ct_seed7_z11_sino8_padis.nii.gz"


if __name__ == "__main__":
    print(main())
