"""WavUNet (WDM wavelet U-Net), its wavelet blocks and its official-checkpoint loader."""

from __future__ import annotations

import pytest
import torch

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.wavunet import (
    WaveletDownResBlock,
    WaveletPyramidDownsample,
    WaveletUpResBlock,
    WavUNet,
    wavunet_from_official,
)
from medgen.transforms.wavelet import haar_dwt3d


def _parity():
    from tests.conftest import load_parity

    return load_parity("wdm_wnet_tiny")


def test_wdm_wavunet_parity():
    d = _parity()
    net = from_official("wdm_wavunet", d["state_dict"], d["config"])
    assert sum(p.numel() for p in net.parameters()) == d["num_params"]
    assert set(net.state_dict()) == set(d["state_dict"])
    with torch.no_grad():
        out = net(d["x"], d["t"])
    assert (out - d["out"]).abs().max() <= 1e-5 * d["out"].abs().max()


def test_module_prefix_is_removed():
    d = _parity()
    net = wavunet_from_official({f"module.{k}": v for k, v in d["state_dict"].items()}, d["config"])
    assert torch.equal(net.out[2].weight, d["state_dict"]["out.2.weight"])


@pytest.mark.parametrize("channel_mult,params,keys", [((1, 2, 2, 4, 4), 89_706_056, 418),
                                                       ((1, 2, 2, 4, 4, 4), 125_499_720, 490)])
def test_wdm_wnet_full_sizes(channel_mult, params, keys):
    config = {**_parity()["config"], "model_channels": 64, "channel_mult": channel_mult, "num_groups": 32}
    with torch.device("meta"):
        net = WavUNet.from_config(config)
    assert sum(p.numel() for p in net.parameters()) == params
    assert len(net.state_dict()) == keys


def test_tied_decoder_blocks():
    net = WavUNet.from_config(_parity()["config"])
    # num_res_blocks=2: per level output_blocks k, k+1 = [R0], [R1]; k+2 = [R1 (the same object), Up]
    for k in (1, 4):
        assert net.output_blocks[k][0] is net.output_blocks[k + 1][0]
        assert isinstance(net.output_blocks[k + 1][1], WaveletUpResBlock)
    state = net.state_dict()
    tied_key, alias_key = "output_blocks.1.0.in_layers.2.weight", "output_blocks.2.0.in_layers.2.weight"
    assert state[tied_key].data_ptr() == state[alias_key].data_ptr()

    untied = WavUNet(in_channels=8, out_channels=8, model_channels=8, channel_mult=(1, 2), num_res_blocks=2,
                     num_groups=4, official_tied_decoder=False)
    assert len(untied.output_blocks[2]) == 1 and isinstance(untied.output_blocks[2][0], WaveletUpResBlock)
    assert sum(p.numel() for p in untied.parameters()) == sum(p.numel() for p in net.parameters())
    assert len(untied.state_dict()) < len(state)


def test_num_res_blocks_one():
    with pytest.raises(ValueError, match="num_res_blocks=1"):
        WavUNet(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4)
    # equal widths work in both modes (the repeated ResBlock keeps its channel count)
    tied = WavUNet(model_channels=8, channel_mult=(1, 1), num_res_blocks=1, num_groups=4)
    assert tied(torch.randn(1, 8, 4, 4, 4), 3).shape == (1, 8, 4, 4, 4)
    untied = WavUNet(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4, official_tied_decoder=False)
    assert untied(torch.randn(1, 8, 4, 4, 4), 3).shape == (1, 8, 4, 4, 4)


def test_forward_backward_learn_sigma():
    torch.manual_seed(0)
    net = WavUNet(in_channels=8, out_channels=8, model_channels=8, channel_mult=(1, 2), num_res_blocks=2,
                  num_groups=4, learn_sigma=True, use_scale_shift_norm=True)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    x = torch.randn(2, 8, 8, 8, 8, requires_grad=True)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == (2, 16, 8, 8, 8)
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_wavelet_blocks_reconstruct_at_init():
    torch.manual_seed(0)
    x, emb = torch.randn(2, 4, 6, 4, 8), torch.randn(2, 16)
    down = WaveletDownResBlock(4, 16, num_groups=2)
    low, highs = down(x, emb)
    coeffs_h = haar_dwt3d(down.in_layers(x), layout="subband")
    assert highs.shape == (2, 28, 3, 2, 4)
    assert torch.allclose(highs, coeffs_h[:, 4:], atol=1e-6)
    # the last conv is zero-initialised, so the block returns the residual branch LLL(x) / 3
    coeffs_x = haar_dwt3d(x, layout="subband")
    assert torch.allclose(low, coeffs_x[:, :4] / 3, atol=1e-6)
    # IDWT(3 * LLL/3, highs of x) is x again
    up = WaveletUpResBlock(4, 16, num_groups=2)
    assert torch.allclose(up(low, emb, coeffs_x[:, 4:]), x, atol=1e-5)


def test_pyramid_downsample_uses_all_bands_over_three():
    block = WaveletPyramidDownsample(1, 8)
    x = torch.randn(1, 1, 4, 4, 4)
    expected = torch.nn.functional.conv3d(haar_dwt3d(x) / 3, block.conv.weight, block.conv.bias, padding=1)
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_mismatched_or_inconsistent_checkpoints_raise():
    d = _parity()
    state = dict(d["state_dict"])
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        from_official("wdm_wavunet", {k: v for k, v in state.items() if not k.startswith("out_res.1")}, d["config"])
    with pytest.raises(CheckpointMismatchError, match="mis-shaped"):
        from_official("wdm_wavunet", state, {**d["config"], "in_channels": 4})
    bad = {**state, "output_blocks.2.0.in_layers.2.bias": state["output_blocks.2.0.in_layers.2.bias"] + 1}
    with pytest.raises(ValueError, match="tied decoder block"):
        from_official("wdm_wavunet", bad, d["config"])


def test_bad_configs_and_inputs():
    config = _parity()["config"]
    for change in ({"use_freq": False}, {"attention_resolutions": (2,)}, {"bottleneck_attention": True},
                   {"resblock_updown": False}, {"additive_skips": True}):
        with pytest.raises(ValueError, match="WavUNet supports only"):
            WavUNet.from_config({**config, **change})
    net = WavUNet.from_config(config)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 8, 8, 8, 6), torch.tensor([1]))
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(1, 8, 8, 8), torch.tensor([1]))
