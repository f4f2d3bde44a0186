"""medgen.engines.semantic: packed SDM inputs give the official network output, slab items are the official slab
conditioning, and the training loss is the hybrid loss with the official draws and label dropout."""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.losses import hybrid_loss
from medgen.engines.training.semantic import (
    SemanticDiffusionTrainingLoss,
    downsample_image_and_labels,
    pack_semantic_input,
    semantic_slab_items,
)
from medgen.diffusion.gaussian import sdm_diffusion
from medgen.networks.sdm_unet import SDMUNet, one_hot_labels, reference_for_slab, slab_z_position_channel


def tiny_sdm(**extra) -> SDMUNet:
    torch.manual_seed(0)
    net = SDMUNet(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=4, learn_sigma=True,
                  use_scale_shift_norm=True, resblock_updown=True, num_groups=4, spade_hidden_channels=4, **extra)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised output convs would hide the conditioning
            p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def test_packed_reference_gives_the_network_output_of_the_official_reference():
    net = tiny_sdm(position_channel=True, reference_channels=2)
    g = torch.Generator().manual_seed(0)
    low_res = torch.rand(1, 8, 8, 8, generator=g) * 2 - 1
    label = torch.randint(0, 4, (1, 16, 16, 4), generator=g)
    image = torch.rand(1, 16, 16, 4, generator=g)
    reference = reference_for_slab(low_res, 1, 4, 16, margin=1, pad_value=-1.0)  # (2, 8, 8, 4)
    position = slab_z_position_channel(1, 4, 16, (16, 16))
    packed = pack_semantic_input(image, label, position, reference)
    assert packed.shape == (5, 16, 16, 4)
    assert torch.equal(packed[1:2], label.float()) and torch.equal(packed[2:3], position)
    x, t = torch.randn(1, 1, 16, 16, 4, generator=g), torch.tensor([7])
    y = torch.cat([one_hot_labels(label[None], 4), position[None]], 1)
    with torch.no_grad():
        official = net(x, t, y, reference[None])
        from_pack = net(x, t, y, packed[None, 3:])
    assert torch.equal(official, from_pack)


def test_slab_items_are_the_official_slab_conditioning():
    image = torch.linspace(-1, 1, 16 * 16 * 16).reshape(1, 16, 16, 16)
    label = (torch.arange(16 * 16 * 16) % 5).reshape(1, 16, 16, 16).to(torch.uint8)
    low_image, low_label = downsample_image_and_labels(image, label, (8, 8, 8))
    assert low_image.shape == (1, 8, 8, 8) and float(low_image.min()) == -1.0 and float(low_image.max()) == 1.0
    assert low_label.dtype == torch.uint8 and torch.equal(low_label, label[:, ::2, ::2, ::2])
    items = semantic_slab_items(image, label, low_image, slab_depth=4, reference_margin=1, reference_pad_value=-1.0)
    assert len(items) == 4
    for k, item in enumerate(items):
        packed = item["image"]
        assert packed.shape == (5, 16, 16, 4)
        assert torch.equal(packed[0], image[0, ..., 4 * k : 4 * k + 4])
        assert torch.equal(packed[1], label[0, ..., 4 * k : 4 * k + 4].float())
        assert torch.equal(packed[2:3], slab_z_position_channel(k, 4, 16, (16, 16)))
        reference = reference_for_slab(low_image, k, 4, 16, 1, -1.0)
        assert torch.equal(packed[3:, ::2, ::2], reference)  # nearest x2 in-plane, same depth
    with pytest.raises(ValueError, match="multiple of slab_depth"):
        semantic_slab_items(image, label, low_image, slab_depth=5)


def test_training_loss_is_the_hybrid_loss_with_official_draws_and_label_dropout():
    net = tiny_sdm(position_channel=True, reference_channels=2)
    g = torch.Generator().manual_seed(1)
    images = torch.cat([torch.rand(3, 1, 8, 8, 4, generator=g) * 2 - 1, torch.randint(0, 4, (3, 1, 8, 8, 4),
                        generator=g).float(), torch.rand(3, 3, 8, 8, 4, generator=g)], 1)
    diffusion = sdm_diffusion()
    y = torch.cat([one_hot_labels(images[:, 1:2], 4), images[:, 2:3]], 1)
    r = images[:, 3:]
    for drop_rate in (0.0, 0.5):
        loss = SemanticDiffusionTrainingLoss(drop_rate=drop_rate)(net, images, torch.Generator().manual_seed(5))
        draws = torch.Generator().manual_seed(5)
        mask = torch.ones(3, 1, 1, 1, 1)
        if drop_rate:
            mask = (torch.rand(3, generator=draws) > drop_rate).float().reshape(3, 1, 1, 1, 1)
            assert 0 < mask.sum() < 3  # this seed drops some items and keeps others
        t = torch.randint(0, 1000, (3,), generator=draws)
        expected = hybrid_loss(diffusion, net, images[:, :1], t, generator=draws,
                               model_kwargs={"y": y * mask, "r": r * mask})["loss"].mean()
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="packed as"):
        SemanticDiffusionTrainingLoss()(net, images[:, :3], None)
    with pytest.raises(ValueError, match="drop_rate"):
        SemanticDiffusionTrainingLoss(drop_rate=1.0)
