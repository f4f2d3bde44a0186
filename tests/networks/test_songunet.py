"""Tests for medgen.networks.songunet: parity with PaDIS/EDM, positional channels, full-size config, errors."""

from __future__ import annotations

import math

import pytest
import torch

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.songunet import (
    PatchEDMPrecond,
    SongUNet,
    canvas_position_channels,
    padis_from_official,
    patch_position_channels,
)
from tests.conftest import load_parity

# train.py --arch=ddpmpp --precond=pedm --pad_width=24 --dropout=0.13 (PaDIS README/defaults), 256 + 2*24 = 304.
PADIS_DDPMPP_304 = dict(
    img_resolution=304, img_channels=3, out_channels=1, label_dim=0, use_fp16=False, sigma_min=0,
    sigma_max=float("inf"), sigma_data=0.5, model_type="SongUNet", four_channels=1, hash_channels=1,
    embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1,
    resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2], dropout=0.13,
)  # fmt: skip
# Counted by building the official training.networks.Patch_EDMPrecond with the same config (jasonhu4/PaDIS 1970ef2).
PADIS_DDPMPP_304_PARAMS = 54_409_729
PADIS_DDPMPP_304_TENSORS = 394


def _tiny_config(**overrides):
    cfg = dict(load_parity("padis_songunet_tiny")["config"])
    cfg.update(overrides)
    return cfg


def test_parity_tiny_padis_songunet():
    d = load_parity("padis_songunet_tiny")
    net = from_official("padis_edm", d["state_dict"], d["config"])
    assert isinstance(net, PatchEDMPrecond) and not net.training
    with torch.no_grad():
        out = net(d["x"], d["sigma"], d["x_pos"])
    assert out.shape == d["out"].shape and out.dtype == torch.float32
    scale = d["out"].abs().max().item()
    assert (out - d["out"]).abs().max().item() <= 1e-5 * scale


def test_seeded_initialisation_matches_edm():
    # The parity weights are EDM's seeded init + 0.05*randn (one generator, named_parameters order): undo the
    # perturbation and compare with medgen's own seeded construction.
    d = load_parity("padis_songunet_tiny")
    torch.manual_seed(0)
    net = PatchEDMPrecond.from_config(d["config"])
    gen = torch.Generator().manual_seed(1)
    names = [name for name, _ in net.named_parameters()]
    assert names == [k for k in d["state_dict"] if not k.endswith("resample_filter")]
    for name, p in net.named_parameters():
        init = d["state_dict"][name] - 0.05 * torch.randn(p.shape, generator=gen)
        torch.testing.assert_close(p.detach(), init, atol=1e-6, rtol=0)
    for name, buf in net.named_buffers():
        assert torch.equal(buf, d["state_dict"][name])


def test_training_positions_match_pachify():
    d = load_parity("padis_patch_positions")["train_pachify"]
    i, j, size = d["i"], d["j"], d["patch_size"]
    pos = patch_position_channels(i, j, size, size, resolution=d["images"].shape[2])
    assert pos.shape == (2, 2, size, size) and pos.dtype == torch.float32
    assert torch.equal(pos, d["images_pos"])
    crops = torch.stack([d["images"][b, :, i[b] : i[b] + size, j[b] : j[b] + size] for b in range(2)])
    assert torch.equal(crops, d["patches"])  # the drawn (i, j) are (row, column) offsets


def test_canvas_positions_match_inference_grid_and_parity_inputs():
    d = load_parity("padis_patch_positions")
    canvas = canvas_position_channels(d["resolution"])
    assert torch.equal(canvas, d["latents_pos"])
    # a crop of the canvas equals the positions of that patch
    top, left, size = 5, 10, d["psize"]
    crop = canvas[:, :, top : top + size, left : left + size]
    assert torch.equal(patch_position_channels(top, left, size, size, d["resolution"]), crop)
    # the parity inputs of the tiny net: padded resolution 24, offsets (0, 0) and (3, 5)
    x_pos = load_parity("padis_songunet_tiny")["x_pos"]
    assert torch.equal(patch_position_channels(torch.tensor([0, 3]), torch.tensor([0, 5]), 16, 16, 24), x_pos)


def test_position_channels_layout_and_errors():
    pos = patch_position_channels(2, 7, 3, 4, resolution=11, batch=3, dtype=torch.float64)
    assert pos.shape == (3, 2, 3, 4) and pos.dtype == torch.float64
    torch.testing.assert_close(pos[0, 0, 0], (torch.arange(7, 11, dtype=torch.float64) / 10) * 2 - 1)  # columns
    torch.testing.assert_close(pos[0, 1, :, 0], (torch.arange(2, 5, dtype=torch.float64) / 10) * 2 - 1)  # rows
    assert canvas_position_channels(9)[0, :, 0, 0].tolist() == [-1.0, -1.0]
    assert canvas_position_channels(9)[0, :, -1, -1].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="batch size"):
        patch_position_channels(torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 2, 2, 8)
    with pytest.raises(ValueError, match="resolution"):
        patch_position_channels(0, 0, 2, 2, 1)
    with pytest.raises(TypeError, match="row_offset"):
        patch_position_channels(0.5, 0, 2, 2, 8)


def test_full_padis_config_builds_and_state_dict_round_trips():
    with torch.device("meta"):  # shapes and names only, no memory or init cost
        own = PatchEDMPrecond.from_config(PADIS_DDPMPP_304).state_dict()
    params = sum(v.numel() for k, v in own.items() if not k.endswith("resample_filter"))
    assert params == PADIS_DDPMPP_304_PARAMS
    assert len(own) == PADIS_DDPMPP_304_TENSORS
    # attention quirk: levels are 304, 152, 76 -> attn_resolutions=[16] never matches; only the bottleneck attends
    assert [k for k in own if k.endswith("qkv.weight")] == ["model.dec.76x76_in0.qkv.weight"]
    expected_shapes = {
        "model.map_layer0.weight": (512, 128),
        "model.enc.304x304_conv.weight": (128, 3, 3, 3),
        "model.enc.304x304_block3.conv1.weight": (256, 256, 3, 3),
        "model.enc.152x152_down.skip.resample_filter": (1, 1, 2, 2),
        "model.dec.76x76_in0.qkv.weight": (768, 256, 1, 1),
        "model.dec.304x304_block4.skip.weight": (256, 384, 1, 1),
        "model.dec.304x304_aux_conv.weight": (1, 256, 3, 3),
    }
    for key, shape in expected_shapes.items():
        assert tuple(own[key].shape) == shape, key
    gen = torch.Generator().manual_seed(3)
    synthetic = {k: 0.02 * torch.randn(v.shape, generator=gen) for k, v in own.items()}
    loaded = from_official("padis_edm", {"net": synthetic, "optimizer_state": {}}, PADIS_DDPMPP_304)
    assert sum(p.numel() for p in loaded.parameters()) == PADIS_DDPMPP_304_PARAMS
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, synthetic[k]), k
    with torch.no_grad():  # a 16x16 patch through the 304-resolution network (fully convolutional)
        out = loaded(torch.randn(1, 1, 16, 16), 0.7, patch_position_channels(100, 40, 16, 16, 304))
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


def test_forward_backward_tiny_cpu():
    torch.manual_seed(0)
    net = PatchEDMPrecond.from_config(_tiny_config()).train()
    x = torch.randn(3, 1, 8, 8)  # patches smaller than img_resolution
    pos = patch_position_channels(torch.tensor([0, 4, 8]), torch.tensor([1, 2, 3]), 8, 8, 16)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    loss = (net(x, sigma, pos) - x).square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["model.map_layer0.weight"].abs().sum() > 0
    assert grads["model.dec.16x16_aux_conv.weight"].abs().sum() > 0


@pytest.mark.parametrize(
    "variant, expected_keys",
    [
        (
            dict(embedding_type="fourier", encoder_type="residual", channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
            [
                "model.map_noise.freqs",
                "model.enc.8x8_aux_residual.weight",
                "model.enc.8x8_aux_residual.resample_filter",
            ],
        ),
        (
            dict(encoder_type="skip", decoder_type="skip", label_dim=3, augment_dim=9, implicit_mlp=True),
            [
                "model.map_label.weight", "model.map_augment.weight", "model.enc.8x8_aux_skip.weight",
                "model.enc.8x8_aux_down.resample_filter", "model.dec.16x16_aux_up.resample_filter",
                "model.dec.8x8_aux_conv.weight", "model.enc.16x16_conv.6.weight",
            ],
        ),
    ],
)
def test_songunet_variants_forward_backward(variant, expected_keys):
    torch.manual_seed(0)
    net = PatchEDMPrecond.from_config(_tiny_config(**variant))
    keys = set(net.state_dict())
    assert set(expected_keys) <= keys
    assert "model.map_augment.bias" not in keys
    labels = torch.eye(3)[[0, 2]] if variant.get("label_dim") else None
    augment = torch.randn(2, 9) if variant.get("augment_dim") else None
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    out = net(x, torch.tensor([0.2, 5.0]), canvas_position_channels(16).expand(2, -1, -1, -1), labels, augment)
    out.sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all()


def test_edm_preconditioning_formula():
    torch.manual_seed(0)
    net = PatchEDMPrecond.from_config(_tiny_config()).eval()
    captured = {}
    net.model.register_forward_hook(lambda m, args, out: captured.update(x_in=args[0], c_noise=args[1], f=out))
    x, sigma, sd = torch.randn(2, 1, 16, 16), torch.tensor([0.3, 4.0]), 0.5
    pos = patch_position_channels(torch.tensor([1, 2]), torch.tensor([3, 4]), 16, 16, 24)
    with torch.no_grad():
        out = net(x, sigma, pos)
    s = sigma.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(captured["x_in"][:, :1], x / (s**2 + sd**2).sqrt())
    assert torch.equal(captured["x_in"][:, 1:], pos)  # positions are not scaled by c_in
    torch.testing.assert_close(captured["c_noise"], sigma.log() / 4)
    expected = sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * captured["f"]
    torch.testing.assert_close(out, expected)
    with torch.no_grad():  # a scalar sigma is shared by every patch (the PaDIS inference call)
        torch.testing.assert_close(net(x, 0.3, pos), net(x, torch.tensor([0.3, 0.3]), pos))


def test_songunet_direct_use_and_size_check():
    net = SongUNet(img_resolution=8, in_channels=2, out_channels=2, model_channels=8, channel_mult=[1, 1],
                   num_blocks=1, attn_resolutions=[4])  # fmt: skip
    assert "enc.4x4_block0.qkv.weight" in net.state_dict()
    out = net(torch.randn(2, 2, 8, 8), torch.zeros(2))
    assert out.shape == (2, 2, 8, 8)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 2, 7, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="noise_labels"):
        net(torch.randn(2, 2, 8, 8), torch.zeros(3))


def test_bad_inputs_raise_clear_errors():
    net = PatchEDMPrecond.from_config(_tiny_config())
    x, pos = torch.randn(2, 1, 16, 16), torch.zeros(2, 2, 16, 16)
    with pytest.raises(ValueError, match="x_pos is required"):
        net(x, 1.0)
    with pytest.raises(ValueError, match="x_pos must be"):
        net(x, 1.0, pos[:, :, :8])
    with pytest.raises(ValueError, match="sigma"):
        net(x, torch.ones(3), pos)
    with pytest.raises(ValueError, match="x must be"):
        net(torch.randn(2, 3, 16, 16), 1.0, pos)
    with pytest.raises(ValueError, match="model_type"):
        PatchEDMPrecond.from_config(_tiny_config(model_type="DhariwalUNet"))
    with pytest.raises(ValueError, match="hash_channels"):
        PatchEDMPrecond.from_config(_tiny_config(hash_channels=4))
    with pytest.raises(ValueError, match="bogus"):
        PatchEDMPrecond.from_config(_tiny_config(bogus=1))
    with pytest.raises(ValueError, match="encoder_type"):
        PatchEDMPrecond.from_config(_tiny_config(encoder_type="progressive"))
    d = load_parity("padis_songunet_tiny")
    broken = {k: v for k, v in d["state_dict"].items() if k != "model.map_layer1.bias"}
    broken["model.map_layer0.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: model\.map_layer1\.bias") as err:
        padis_from_official(broken, d["config"])
    assert "model.map_layer0.weight" in str(err.value)
    bare = {k[len("model.") :]: v for k, v in d["state_dict"].items()}
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        padis_from_official(bare, d["config"])


def test_device_and_dtype_follow_the_module():
    d = load_parity("padis_songunet_tiny")
    net = padis_from_official(d["state_dict"], d["config"]).double()
    with torch.no_grad():
        out = net(d["x"], d["sigma"].double(), d["x_pos"])
    assert out.dtype == torch.float64
    assert (out.float() - d["out"]).abs().max().item() <= 1e-5 * d["out"].abs().max().item()
    assert math.isclose(float(net.round_sigma(0.25)), 0.25)
