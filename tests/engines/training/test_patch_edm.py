"""medgen.engines.patch_edm: PaDIS's patch-size schedule around patch_edm_loss (draw order, multipliers, reduction)."""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.losses import patch_edm_loss
from medgen.engines.training.patch_edm import PatchEDMTrainingLoss, padis_patch_probabilities
from medgen.networks.songunet import PatchEDMPrecond


def tiny_network() -> PatchEDMPrecond:
    torch.manual_seed(0)
    return PatchEDMPrecond(img_resolution=24, model_channels=8, channel_mult=[1, 2], num_blocks=1,
                           attn_resolutions=[], dropout=0.0).eval()


def test_padis_probabilities():
    assert padis_patch_probabilities() == pytest.approx((0.2, 0.3, 0.5))
    assert padis_patch_probabilities(0.2) == pytest.approx((0.32, 0.48, 0.2))
    assert PatchEDMTrainingLoss((4, 8, 16)).probabilities == pytest.approx((0.2, 0.3, 0.5))
    assert PatchEDMTrainingLoss((4, 8)).probabilities == pytest.approx((0.5, 0.5))


def test_draws_size_then_patches_in_order_and_repeats_items():
    network = tiny_network()
    images = torch.rand(2, 1, 24, 24)
    loss_fn = PatchEDMTrainingLoss((4, 8, 16), batch_multipliers=(4, 2, 1), reduction="sum")
    for seed in range(6):
        got = loss_fn(network, images, torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed)
        u = float(torch.rand((), generator=generator))
        index = 0 if u < 0.2 else 1 if u < 0.5 else 2
        size, multiplier = (4, 8, 16)[index], (4, 2, 1)[index]
        batch = images.repeat_interleave(multiplier, dim=0)
        expected = patch_edm_loss(network, batch, size, generator=generator)
        assert expected.shape == (2 * multiplier, 1, size, size)
        torch.testing.assert_close(got, expected.sum() / (2 * multiplier), rtol=0, atol=0)


def test_mean_reduction_and_patch_frequencies():
    network = tiny_network()
    images = torch.rand(3, 1, 24, 24)
    summed = PatchEDMTrainingLoss((8,), reduction="sum")(network, images, torch.Generator().manual_seed(1))
    mean = PatchEDMTrainingLoss((8,), reduction="mean")(network, images, torch.Generator().manual_seed(1))
    torch.testing.assert_close(summed, mean * 64)
    loss_fn = PatchEDMTrainingLoss((4, 8, 16))
    generator = torch.Generator().manual_seed(3)
    counts = torch.bincount(torch.tensor([loss_fn.draw_patch_index(generator) for _ in range(4000)]), minlength=3)
    torch.testing.assert_close(counts / 4000.0, torch.tensor([0.2, 0.3, 0.5]), atol=0.03, rtol=0)


def test_gradients_reach_the_network():
    network = tiny_network().train()
    loss = PatchEDMTrainingLoss((8, 16))(network, torch.rand(2, 1, 24, 24), torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert network.model.enc["24x24_conv"].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patch_sizes": []}, "patch_sizes"),
        ({"patch_sizes": [8, 0]}, "patch_sizes"),
        ({"patch_sizes": [8, 16], "probabilities": [0.5, 0.6]}, "probabilities"),
        ({"patch_sizes": [8, 16], "probabilities": [1.0]}, "probabilities"),
        ({"patch_sizes": [8, 16], "batch_multipliers": [1]}, "batch_multipliers"),
        ({"p_std": 0.0}, "p_std"),
        ({"reduction": "none"}, "reduction"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchEDMTrainingLoss(**kwargs)


def test_bad_images():
    loss_fn = PatchEDMTrainingLoss((8, 32))
    with pytest.raises(ValueError, match="largest patch"):
        loss_fn(tiny_network(), torch.rand(1, 1, 24, 24), None)
    with pytest.raises(ValueError, match="images"):
        loss_fn(tiny_network(), torch.rand(1, 24, 24), None)
    with pytest.raises(ValueError, match="real_p"):
        padis_patch_probabilities(1.5)
