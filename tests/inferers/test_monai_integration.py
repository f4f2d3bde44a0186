"""Every medgen inferer runs as the ``inferer`` of a plain MONAI ``SupervisedEvaluator`` (no bundle)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from torch import nn

from medgen.inferers.highfrequency import HighFrequencySpaceInferer
from medgen.inferers.patch import PatchDiffusionInferer
from medgen.inferers.perpendicular import PerpendicularSliceInferer
from medgen.inferers.slab import SemanticDiffusionInferer, SlabPatchInferer
from medgen.inferers.wavelet import WaveletDiffusionInferer
from medgen.networks import GuidedUNet, NCSNpp, PatchEDMPrecond
from medgen.networks.sdm_unet import SDMUNet
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import fft2c
from medgen.physics.zaxis import ZAxisAverage


def _evaluate(network: nn.Module, inferer, items: list[dict], prepare_batch=None) -> list[torch.Tensor]:
    """Run ``inferer`` through a SupervisedEvaluator over ``items``; return the predictions of each iteration."""
    predictions = []
    kwargs = {} if prepare_batch is None else {"prepare_batch": prepare_batch}
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(items), batch_size=1),
        network=network,
        inferer=inferer,
        **kwargs,
    )
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: predictions.append(e.state.output[0]["pred"]))
    evaluator.run()
    return predictions


def _affine(spacing: float) -> torch.Tensor:
    return torch.diag(torch.tensor([spacing, spacing, spacing, 1.0], dtype=torch.float64))


def test_perpendicular_slice_inferer_zsr_in_evaluator():
    torch.manual_seed(0)
    pair = nn.ModuleDict(
        {
            "primary": NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()),
            "auxiliary": NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()),
        }
    )
    lowres = MetaTensor(torch.rand(1, 8, 8, 2), affine=_affine(2.0))
    inferer = PerpendicularSliceInferer(
        task="zsr", factor=4, steps=2, batch_size=8, seed=0, progress=False, sigma_max=5.0, dps_weight=1.0
    )
    (pred,) = _evaluate(pair, inferer, [{"image": lowres, "label": lowres}])
    assert pred.shape == (1, 8, 8, 8)  # decollated: one item, channel first
    assert isinstance(pred, MetaTensor) and pred.affine[2, 2] == pytest.approx(0.5)
    # DPS ran under the evaluator's no_grad: the result is consistent with the measurement's scale
    assert torch.isfinite(pred).all()
    op = ZAxisAverage(4, axis=-1)
    assert op(pred.as_tensor()[None]).shape == (1, 1, 8, 8, 2)


def test_wavelet_inferer_in_evaluator():
    torch.manual_seed(0)
    net = GuidedUNet(
        spatial_dims=3, in_channels=8, out_channels=8, model_channels=8, channel_mult=(1,), num_res_blocks=1,
        num_groups=4, additive_skips=True, bottleneck_attention=False,
    )
    template = MetaTensor(torch.zeros(1, 8, 8, 8), affine=_affine(1.5))
    inferer = WaveletDiffusionInferer(timestep_respacing="ddim3", sampler="ddim", seed=0, progress=False)
    (pred,) = _evaluate(net, inferer, [{"image": template, "label": template}])
    assert pred.shape == (1, 8, 8, 8)
    assert pred.affine[0, 0] == pytest.approx(1.5)
    assert pred.abs().max() <= 1.0 + 1e-6


def test_patch_inferer_ct_in_evaluator():
    torch.manual_seed(0)
    net = PatchEDMPrecond(
        img_resolution=24, img_channels=1, model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=()
    )
    ct = ParallelBeamCT(16, 6)
    image = torch.rand(1, 1, 16, 16)
    sinogram = MetaTensor(ct(image)[0], affine=_affine(0.8))
    inferer = PatchDiffusionInferer(
        ct, patch_size=8, pad=8, num_steps=2, inner_iterations=1, seed=0, progress=False
    )
    (pred,) = _evaluate(net, inferer, [{"image": sinogram, "label": image[0]}])
    assert pred.shape == (1, 16, 16)
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0


def test_high_frequency_inferer_in_evaluator_with_prepare_batch():
    """k-space inferers take their mask and coil maps through ``prepare_batch``'s keyword arguments."""

    class ScoreOfGaussian(nn.Module):
        def forward(self, x, label):
            return -x

    h = w = 16
    low = torch.zeros(h, w)
    low[:, w // 2 - 2 : w // 2 + 2] = 1
    mask = torch.zeros(h, w)
    mask[:, ::2] = 1
    mask[:, w // 2 - 2 : w // 2 + 2] = 1
    image = torch.randn(1, h, w, dtype=torch.complex64)
    kspace = fft2c(image) * mask

    def prepare_batch(batch, device=None, non_blocking=False, **_):
        return batch["kspace"], None, (), {"mask": batch["mask"][0]}

    inferer = HighFrequencySpaceInferer(low, num_steps=3, seed=0, progress=False)
    (pred,) = _evaluate(
        ScoreOfGaussian(), inferer, [{"kspace": kspace, "mask": mask}], prepare_batch=prepare_batch
    )
    assert pred.shape == (1, h, w) and pred.is_complex()
    assert torch.isfinite(torch.view_as_real(pred.as_tensor())).all()


def _tiny_sdm(**options) -> SDMUNet:
    return SDMUNet(
        model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=3, learn_sigma=True, num_groups=4,
        spade_hidden_channels=4, **options,
    )


def test_semantic_diffusion_inferer_in_evaluator():
    """The CTCA low-res stage: the label map is the evaluator's image, the output keeps its affine."""
    torch.manual_seed(0)
    labels = MetaTensor(torch.randint(0, 3, (1, 8, 8, 8)).float(), affine=_affine(2.0))
    inferer = SemanticDiffusionInferer(timestep_respacing=2, seed=0, progress=False)
    (pred,) = _evaluate(_tiny_sdm(), inferer, [{"image": labels, "label": labels}])
    assert isinstance(pred, MetaTensor) and pred.shape == (1, 8, 8, 8)
    assert pred.affine[0, 0] == pytest.approx(2.0)
    assert float(pred.abs().max()) <= 1.0 + 1e-6  # clip_denoised keeps x0 in [-1, 1]; the last step adds no noise


def test_slab_patch_inferer_in_evaluator_with_reference():
    """The CTCA high-res stage: slabs of the label map, the low-res reference handed over by ``prepare_batch``."""
    torch.manual_seed(0)
    labels = MetaTensor(torch.randint(0, 3, (1, 8, 8, 12)).float(), affine=_affine(0.5))
    low_res = torch.rand(1, 4, 4, 6)

    def prepare_batch(batch, device=None, non_blocking=False, **_):
        return batch["image"], None, (), {"reference": batch["reference"]}

    network = _tiny_sdm(position_channel=True, reference_channels=2)
    inferer = SlabPatchInferer(slab_depth=8, overlap=4, timestep_respacing=2, seed=0, progress=False)
    (pred,) = _evaluate(
        network, inferer, [{"image": labels, "reference": low_res}], prepare_batch=prepare_batch
    )
    assert isinstance(pred, MetaTensor) and pred.shape == (1, 8, 8, 12)
    assert pred.affine[2, 2] == pytest.approx(0.5)
    assert torch.isfinite(pred).all()
