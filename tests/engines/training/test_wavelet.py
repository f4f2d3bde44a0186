"""Tests for medgen.engines.training.wavelet: cWDM's conditional wavelet diffusion loss (packed target and conditions)."""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.gaussian import wdm_diffusion
from medgen.diffusion.losses import wavelet_diffusion_loss
from medgen.engines.training.wavelet import WaveletDiffusionTrainingLoss
from medgen.inferers.wavelet import WaveletDiffusionInferer
from medgen.networks.guided_unet import GuidedUNet
from medgen.transforms.wavelet import haar_dwt3d


def conditional_unet(conditions: int = 3) -> GuidedUNet:
    torch.manual_seed(0)
    network = GuidedUNet(spatial_dims=3, in_channels=8 * (1 + conditions), out_channels=8, model_channels=8,
                         channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(), num_groups=4,
                         resblock_updown=True, additive_skips=True, bottleneck_attention=False)
    with torch.no_grad():  # the zero-initialised output convolutions would hide the inputs' influence
        for parameter in network.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    return network


def test_conditional_loss_concatenates_the_clean_condition_coefficients():
    network = conditional_unet()
    packed = torch.rand(2, 4, 8, 8, 8, generator=torch.Generator().manual_seed(1))  # [target | 3 conditions]
    loss = WaveletDiffusionTrainingLoss(image_channels=1)(network, packed, torch.Generator().manual_seed(5))

    generator = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (2,), generator=generator)
    condition = haar_dwt3d(packed[:, 1:], lll_scale=3.0)  # cWDM: [cond1 8ch, cond2 8ch, cond3 8ch]
    calls = []

    def model(x_t, timesteps):
        calls.append(x_t.shape)
        return network(torch.cat([x_t, condition], dim=1), timesteps)

    expected = wavelet_diffusion_loss(wdm_diffusion(), model, packed[:, :1], t, generator=generator)["loss"]
    assert torch.equal(loss, expected) and calls == [(2, 8, 4, 4, 4)]
    loss.backward()
    assert network.input_blocks[0][0].weight.grad[:, 8:].abs().sum() > 0  # the conditions reach the network


def test_conditional_loss_matches_the_conditional_inferer_layout():
    """Training and sampling give the network the same input channels: the inferer's conditioned model."""
    network = conditional_unet(2)
    packed = torch.rand(1, 3, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    inferer = WaveletDiffusionInferer(conditional=True, clip_range=(0.0, 1.0), timestep_respacing=2, seed=0,
                                      progress=False)
    seen = []
    network.register_forward_pre_hook(lambda module, args: seen.append(args[0][:, 8:].clone()))
    inferer(packed[:, 1:], network)
    WaveletDiffusionTrainingLoss(image_channels=1)(network, packed, torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0], seen[-1])


def test_conditional_loss_errors():
    with pytest.raises(ValueError, match="image_channels"):
        WaveletDiffusionTrainingLoss(image_channels=0)
    with pytest.raises(ValueError, match="condition"):
        WaveletDiffusionTrainingLoss(image_channels=1)(conditional_unet(), torch.zeros(1, 1, 8, 8, 8), None)
