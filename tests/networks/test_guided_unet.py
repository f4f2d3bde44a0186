"""GuidedUNet (WDM/cWDM guided-diffusion U-Net), its blocks and its official-checkpoint loader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.guided_layers import (
    AttentionBlock,
    Downsample,
    QKVAttention,
    ResBlock,
    Upsample,
    timestep_embedding,
)
from medgen.networks.guided_unet import GuidedUNet, guided_unet_from_official
from tests.conftest import load_parity

# WDM run.sh "ours_unet_128" as UNetModel keyword arguments (create_model with --num_channels 64 etc.)
WDM_UNET_128 = dict(
    image_size=128, in_channels=8, model_channels=64, out_channels=8, num_res_blocks=2, attention_resolutions=(),
    dropout=0.0, channel_mult=(1, 2, 2, 4, 4), conv_resample=True, dims=3, num_classes=None, use_checkpoint=False,
    use_fp16=False, num_heads=1, num_head_channels=-1, num_heads_upsample=-1, use_scale_shift_norm=False,
    resblock_updown=True, use_new_attention_order=False, num_groups=32, bottleneck_attention=False,
    resample_2d=False, additive_skips=True, decoder_device_thresh=0,
)


def _tiny_cwdm(**overrides) -> GuidedUNet:
    kwargs = dict(spatial_dims=3, in_channels=32, out_channels=8, model_channels=8, channel_mult=(1, 2),
                  num_res_blocks=1, additive_skips=False, bottleneck_attention=False, num_groups=4)
    kwargs.update(overrides)
    return GuidedUNet(**kwargs)


def _perturb_zero_parameters(net: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give the zero-initialised parameters (last convs, GroupNorm biases) small random values, like the parity
    files, so that outputs and gradients depend on every block."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
    return net


@pytest.mark.parametrize("x_key,out_key", [("x", "out"), ("x_8", "out_8")])
def test_wdm_unet_parity(x_key, out_key):
    d = load_parity("wdm_unet_tiny")
    net = from_official("guided_unet", d["state_dict"], d["config"])
    assert sum(p.numel() for p in net.parameters()) == d["num_params"]
    with torch.no_grad():
        out = net(d[x_key], d["t"])
    scale = d[out_key].abs().max()
    assert (out - d[out_key]).abs().max() <= 1e-5 * scale


def test_wdm_unet_128_size_and_roundtrip():
    with torch.device("meta"):
        skeleton = GuidedUNet.from_config(WDM_UNET_128)
    shapes = {k: v.shape for k, v in skeleton.state_dict().items()}
    assert sum(p.numel() for p in skeleton.parameters()) == 57_914_824
    assert len(shapes) == 368
    assert shapes["input_blocks.0.0.weight"] == (64, 8, 3, 3, 3)
    assert shapes["input_blocks.3.0.in_layers.2.weight"] == (64, 64, 3, 3, 3)  # the down ResBlock of level 0
    assert shapes["output_blocks.2.1.out_layers.3.weight"] == (256, 256, 3, 3, 3)  # the up ResBlock of the last level
    assert shapes["out.2.weight"] == (8, 64, 3, 3, 3)
    assert {"time_embed.0.weight", "time_embed.2.weight", "middle_block.1.emb_layers.1.weight"} <= set(shapes)

    # distinct values per key and position (cheaper than random numbers for 58M entries)
    state = {f"module.{k}": torch.arange(s.numel(), dtype=torch.float32).reshape(s) + i for i, (k, s) in
             enumerate(shapes.items())}
    net = guided_unet_from_official(state, WDM_UNET_128)
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in state.items())


def test_wdm_unet_256_size():
    with torch.device("meta"):
        net = GuidedUNet.from_config({**WDM_UNET_128, "image_size": 256, "channel_mult": "1,2,2,4,4,4"})
    assert sum(p.numel() for p in net.parameters()) == 83_158_728
    assert len(net.state_dict()) == 438


def test_cwdm_forward_backward():
    net = _perturb_zero_parameters(_tiny_cwdm())
    x = torch.randn(2, 32, 8, 8, 8, requires_grad=True)
    out = net(x, torch.tensor([3, 900]))
    assert out.shape == (2, 8, 8, 8, 8)
    # concatenated skips: the first decoder ResBlock of the last level sees 2 * 16 channels
    assert net.output_blocks[0][0].in_layers[2].in_channels == 32
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_2d_with_attention_classes_scale_shift_learned_sigma():
    net = GuidedUNet(spatial_dims=2, in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2, 2),
                     num_res_blocks=1, attention_resolutions=(2, 4), num_head_channels=8, num_classes=5,
                     use_scale_shift_norm=True, learn_sigma=True, num_groups=8, dropout=0.1,
                     use_new_attention_order=True)
    assert net.input_blocks[3][1].num_heads == 4  # 32 channels / 8 per head, at rate 2
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([1, 2]), y=torch.tensor([0, 4]))
    assert out.shape == (2, 6, 16, 16)
    out.sum().backward()
    with pytest.raises(ValueError, match="y must be"):
        net(x, torch.tensor([1, 2]))


def test_conv_resample_without_resblock_updown_and_anisotropic_factor():
    net = GuidedUNet(spatial_dims=3, in_channels=2, out_channels=2, model_channels=8, channel_mult=(1, 2, 2),
                     num_res_blocks=1, resblock_updown=False, resample_factor=(2, 2, 1), num_groups=4,
                     additive_skips=True)
    assert isinstance(net.input_blocks[2][0], Downsample) and net.input_blocks[2][0].op.stride == (2, 2, 1)
    out = net(torch.randn(1, 2, 8, 8, 3), 5)  # the last axis is never resampled, so 3 is fine
    assert out.shape == (1, 2, 8, 8, 3)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 2, 6, 8, 3), 5)


def test_from_config_resample_2d_maps_to_last_two_axes():
    d = load_parity("wdm_unet_tiny")
    net = GuidedUNet.from_config({**d["config"], "resample_2d": True})
    assert net.resample_factor == (1, 2, 2)
    assert net(torch.randn(1, 8, 3, 4, 4), torch.tensor([1])).shape == (1, 8, 3, 4, 4)


def test_float64_matches_float32():
    d = load_parity("wdm_unet_tiny")
    net = from_official("guided_unet", d["state_dict"], d["config"])
    with torch.no_grad():
        out32 = net(d["x_8"], d["t"])
        out64 = net.double()(d["x_8"].double(), d["t"])
    assert out64.dtype == torch.float64
    assert (out64 - out32).abs().max() < 1e-4


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    net = _perturb_zero_parameters(_tiny_cwdm(in_channels=4, out_channels=4, attention_resolutions=(2,)))
    x, t = torch.randn(1, 4, 4, 4, 4), torch.tensor([7])
    net(x, t).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    for m in net.modules():
        if hasattr(m, "use_checkpoint"):
            m.use_checkpoint = True
    net(x, t).square().sum().backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, net.parameters()))


def test_mismatched_checkpoints_raise():
    d = load_parity("wdm_unet_tiny")
    state = dict(d["state_dict"])
    with pytest.raises(CheckpointMismatchError, match="missing keys"):
        from_official("guided_unet", {k: v for k, v in state.items() if k != "out.2.weight"}, d["config"])
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        from_official("guided_unet", {**state, "label_emb.weight": torch.zeros(2, 64)}, d["config"])
    with pytest.raises(CheckpointMismatchError, match="mis-shaped"):
        from_official("guided_unet", state, {**d["config"], "out_channels": 16})
    with pytest.raises(TypeError, match="flat guided-diffusion state dict"):
        from_official("guided_unet", {"model": state}, d["config"])


def test_bad_arguments():
    d = load_parity("wdm_unet_tiny")
    with pytest.raises(ValueError, match="not official UNetModel arguments"):
        GuidedUNet.from_config({**d["config"], "num_channel": 16})
    with pytest.raises(ValueError, match="channel_mult"):
        GuidedUNet(channel_mult=(1, 0))
    net = GuidedUNet.from_config(d["config"])
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(1, 4, 8, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="timesteps"):
        net(torch.randn(2, 8, 8, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="not class-conditional"):
        net(torch.randn(1, 8, 8, 8, 8), torch.tensor([1]), y=torch.tensor([0]))


def test_timestep_embedding_cos_sin_order():
    t = torch.tensor([0, 3, 811])
    emb = timestep_embedding(t, 9)
    half = 4
    freqs = torch.tensor([10000 ** (-i / half) for i in range(half)], dtype=torch.float64)
    args = t[:, None].double() * freqs
    expected = torch.cat([torch.cos(args), torch.sin(args), torch.zeros(3, 1, dtype=torch.float64)], dim=1)
    assert emb.shape == (3, 9) and emb.dtype == torch.float32
    assert torch.allclose(emb.double(), expected, atol=1e-4)


@pytest.mark.parametrize("legacy_order", [True, False])
def test_qkv_attention_matches_scaled_dot_product(legacy_order):
    heads, ch, length = 2, 4, 10
    qkv = torch.randn(3, 3 * heads * ch, length)
    out = QKVAttention(heads, legacy_order=legacy_order)(qkv)
    if legacy_order:
        q, k, v = qkv.reshape(3, heads, 3, ch, length).unbind(2)
    else:
        q, k, v = qkv.reshape(3, 3, heads, ch, length).unbind(1)
    expected = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
    assert torch.allclose(out, expected.transpose(-1, -2).reshape(3, heads * ch, length), atol=1e-5)


def test_attention_block_is_identity_at_init_and_checks_heads():
    block = AttentionBlock(8, num_heads=2, num_groups=4)
    x = torch.randn(2, 8, 3, 4, 5)
    assert torch.equal(block(x), x)  # proj_out is zero-initialised
    with pytest.raises(ValueError, match="num_head_channels"):
        AttentionBlock(8, num_head_channels=3, num_groups=4)


def test_resampling_blocks_per_axis_factor():
    x = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(1, 2, 4, 4, 3)
    down = Downsample(2, spatial_dims=3, factor=(2, 2, 1))(x)
    assert down.shape == (1, 2, 2, 2, 3)
    assert torch.allclose(down[0, 0, 0, 0], x[0, 0, :2, :2].mean(dim=(0, 1)))
    up = Upsample(2, spatial_dims=3, factor=(2, 2, 1))(down)
    assert up.shape == (1, 2, 4, 4, 3) and torch.equal(up[:, :, 1, 1], down[:, :, 0, 0])
    with pytest.raises(ValueError, match="factor"):
        Upsample(2, spatial_dims=3, factor=(2, 2))
    block = ResBlock(4, 16, 8, spatial_dims=3, resample="down", resample_factor=(2, 2, 1), num_groups=2)
    assert block(torch.randn(1, 4, 4, 4, 2), torch.randn(1, 16)).shape == (1, 8, 2, 2, 2)


def test_resblock_is_identity_at_init():
    block = ResBlock(4, 6, spatial_dims=2, num_groups=2)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(block(x, torch.randn(1, 6)), x)  # the last conv of out_layers is zero-initialised
    torch.nn.init.normal_(block.out_layers[3].weight)
    assert not torch.allclose(block(x, torch.randn(1, 6)), x)


def test_integer_arguments_are_checked_by_name():
    with pytest.raises(ValueError, match=r"in_channels must be an integer >= 1, got True"):
        _tiny_cwdm(in_channels=True)
    with pytest.raises(ValueError, match=r"num_res_blocks must be an integer >= 0, got -1"):
        _tiny_cwdm(num_res_blocks=-1)
    with pytest.raises(ValueError, match=r"channel_mult must be a non-empty sequence of positive integers"):
        _tiny_cwdm(channel_mult=(1, 0.5))  # fractions only where the official code has them (SDM)
