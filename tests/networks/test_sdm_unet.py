"""SDMUNet (CTCA semantic diffusion 3D U-Net) and its conditioning helpers against the official code's outputs.

Reference files: tests/data/sdm/ (see its README.md for how they were made).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.sdm_unet import (
    SDMUNet,
    one_hot_labels,
    reference_for_slab,
    slab_z_position_channel,
)

SDM_DIR = Path(__file__).parents[1] / "data" / "sdm"


def load_sdm(name: str) -> dict:
    return torch.load(SDM_DIR / f"{name}.pt", map_location="cpu", weights_only=True)


def recipe_state_dict(names_shapes: list, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights of the parity models (README "Weights"): one generator, official parameter order."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in names_shapes:
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if len(shape) >= 2:
            state[name] = z / math.sqrt(math.prod(shape[1:]))
        elif name.endswith(".weight"):
            state[name] = 1.0 + 0.1 * z
        else:
            state[name] = 0.1 * z
    return state


def int_volume(n: int) -> np.ndarray:
    """The integer-valued low-res test volume the official reference builder was run on."""
    i, j, k = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    return (((i * 7 + j * 13 + k * 5) % 97) * 10 - 400).astype(np.float32)


@pytest.fixture(scope="module", params=["hr", "lr"])
def parity_case(request):
    data = load_sdm(f"sdm_unet_{request.param}_tiny")
    state = recipe_state_dict(data["names_shapes"], data["weight_seed"])
    for name, (total, squares) in data["state_dict_fingerprint"].items():
        v = state[name].double()
        assert torch.allclose(torch.stack([v.sum(), v.square().sum()]), torch.stack([total, squares]),
                              rtol=1e-9, atol=1e-9), f"weight regeneration differs for {name}"
    net = from_official("sdm_unet", state, data["config"])
    with torch.no_grad():
        out = net(data["x"], data["t"], data["y"], data.get("r"))
    return request.param, data, net, out


def test_parity_with_official(parity_case):
    branch, data, net, out = parity_case
    print(data["call"], data["notes"], data["config"], sep="\n")
    ref = data["out"]
    assert out.shape == ref.shape == (2, 2 if branch == "hr" else 1, *data["x"].shape[2:])
    scale = ref.abs().max().item()
    err = (out - ref).abs().max().item()
    # guided_layers uses the fused nn.SiLU where the official code computes x * sigmoid(x): ~1e-7 per activation
    assert err <= 1e-5 * scale, f"{branch}: max abs error {err} (output scale {scale})"


@pytest.mark.parametrize("branch, blocks", [("hr", 4), ("lr", 4)])
def test_full_config_matches_official_keys_and_count(branch, blocks):
    spec = json.loads((SDM_DIR / f"sdm_unet_{branch}_full_keys.json").read_text())
    with torch.device("meta"):
        net = SDMUNet.from_config(spec["config"])
    assert len(net.channel_mult) == blocks
    assert sum(p.numel() for p in net.parameters()) == spec["param_count"]
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == {k: s for k, s in spec["state_dict"]}


def test_full_hr_parameter_count():
    config = dict(image_size=128, num_classes=9, no_instance=True, num_channels=128, num_res_blocks=2, channel_mult="",
                  attention_resolutions="16,8", num_head_channels=64, resblock_updown=True, use_scale_shift_norm=True,
                  learn_sigma=True, class_cond=True, reference=True, pos_emb=True, use_fp16=True)
    with torch.device("meta"):
        net = SDMUNet.from_config(config)
    assert sum(p.numel() for p in net.parameters()) == 473_967_234
    assert net.channel_mult == (1, 2, 3, 4) and net.attention_resolutions == (8, 16) and net.out_channels == 2
    assert net.label_channels == 10 and net.reference_channels == 2


def test_forward_backward_small():
    net = SDMUNet(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), num_classes=3,
                  position_channel=True, reference_channels=2, num_head_channels=8, use_scale_shift_norm=True,
                  resblock_updown=True, learn_sigma=True, num_groups=8, spade_hidden_channels=8)
    names_shapes = [(k, list(p.shape)) for k, p in net.named_parameters()]
    net.load_state_dict(recipe_state_dict(names_shapes, seed=3))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, 4, generator=g)
    y = torch.cat([one_hot_labels(torch.randint(0, 3, (2, 1, 8, 8, 4), generator=g), 3),
                   slab_z_position_channel(1, 4, 16, (8, 8)).expand(2, -1, -1, -1, -1)], dim=1)
    r = torch.randn(2, 2, 4, 4, 6, generator=g)
    out = net(x, torch.tensor([5, 900]), y, r)
    assert out.shape == (2, 2, 8, 8, 4)
    with torch.no_grad():  # the label map and the reference both reach the output
        assert (net(x, torch.tensor([5, 900]), torch.zeros_like(y), r) - out).abs().max() > 1e-2
        assert (net(x, torch.tensor([5, 900]), y, torch.zeros_like(r)) - out).abs().max() > 1e-2
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_use_checkpoint_same_gradients():
    kwargs = dict(model_channels=8, channel_mult=(1, 1), num_res_blocks=1, attention_resolutions=(2,), num_classes=2,
                  reference_channels=2, num_groups=4, spade_hidden_channels=4, use_scale_shift_norm=False)
    plain, ckpt = SDMUNet(**kwargs), SDMUNet(**kwargs, use_checkpoint=True)
    state = recipe_state_dict([(k, list(p.shape)) for k, p in plain.named_parameters()], seed=4)
    plain.load_state_dict(state)
    ckpt.load_state_dict(state)
    x = torch.randn(1, 1, 4, 4, 2)
    y = one_hot_labels(torch.randint(0, 2, (1, 1, 4, 4, 2)), 2)
    r = torch.randn(1, 2, 2, 2, 3)
    for net in (plain, ckpt):
        net(x, 3, y, r).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_one_hot_and_position_match_official():
    data = load_sdm("sdm_unet_hr_tiny")
    y = data["y"]
    label = data["label"]
    torch.testing.assert_close(one_hot_labels(label, 9), y[:, :9], rtol=0, atol=0)
    torch.testing.assert_close(one_hot_labels(label.double(), 9), y[:, :9], rtol=0, atol=0)
    for b, k in enumerate(data["slab_index"].tolist()):
        torch.testing.assert_close(slab_z_position_channel(k, 16, 8), y[b, 9:], rtol=0, atol=0)
    cond = data["conditioning"]
    torch.testing.assert_close(slab_z_position_channel(5, 16, 8, dtype=torch.float64), cond["pos_res8_slab5"],
                               rtol=0, atol=0)
    pos128 = slab_z_position_channel(3, dtype=torch.float64)
    assert pos128.shape == (1, 128, 128, 16)
    torch.testing.assert_close(pos128[0, 5, 77], cond["pos_res128_slab3_zrow"], rtol=0, atol=0)


def test_reference_matches_official():
    data = load_sdm("sdm_unet_hr_tiny")
    cond = data["conditioning"]
    for k in (0, 3, 7):
        ref = reference_for_slab(torch.from_numpy(int_volume(32)), k)
        assert ref.shape == (2, 32, 32, 12)
        torch.testing.assert_close(ref, cond[f"ref_lr32_slab{k}"], rtol=0, atol=0)
    for k in (0, 4, 7):
        ref = reference_for_slab(int_volume(64)[None], k)
        assert ref.shape == (2, 64, 64, 24)
        torch.testing.assert_close(ref[:, ::4, ::4, :], cond[f"ref_lr64_slab{k}_stride4"], rtol=0, atol=0)
    for b, k in enumerate(data["slab_index"].tolist()):
        torch.testing.assert_close(reference_for_slab(int_volume(32), k), data["r"][b], rtol=0, atol=0)


def test_reference_edge_cases():
    constant = torch.full((8, 8, 8), 5.0)
    ref = reference_for_slab(constant, 3, margin=1)  # interior: no padding, constant -> all -1
    assert ref.shape == (2, 8, 8, 3) and torch.all(ref[0] == -1)
    torch.testing.assert_close(ref[1, 0, 0], 2 * (torch.tensor([2.0, 3.0, 4.0]) / 8 - 0.5))
    assert type(reference_for_slab(MetaTensor(constant), 3, margin=1)) is torch.Tensor
    first = reference_for_slab(constant, 0, margin=1)  # the -1024 pad enters the min-max: pad -> -1, volume -> +1
    assert torch.all(first[0, :, :, 0] == -1) and torch.all(first[0, :, :, 1:] == 1)


def test_bad_inputs():
    net = SDMUNet(model_channels=8, channel_mult=(1, 2), num_res_blocks=0, num_classes=2, position_channel=True,
                  reference_channels=2, num_groups=4, spade_hidden_channels=4)
    x = torch.zeros(1, 1, 4, 4, 2)
    y = torch.zeros(1, 3, 4, 4, 2)
    r = torch.zeros(1, 2, 2, 2, 2)
    assert net(x, 1, y, r).shape == (1, 1, 4, 4, 2)
    with pytest.raises(ValueError, match="y must be"):
        net(x, 1, y[:, :2], r)
    with pytest.raises(ValueError, match="r must be"):
        net(x, 1, y, None)
    with pytest.raises(ValueError, match="x spatial shape"):
        net(torch.zeros(1, 1, 3, 4, 2), 1, y, r)
    lr = SDMUNet(model_channels=8, channel_mult=(1,), num_res_blocks=0, num_classes=2, num_groups=4,
                 spade_hidden_channels=4)
    with pytest.raises(ValueError, match="no reference"):
        lr(x, 1, y[:, :2], r)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        one_hot_labels(torch.tensor([[[0, 2]]]), 2)
    with pytest.raises(ValueError, match="integer class"):
        one_hot_labels(torch.tensor([[[0.5]]]), 2)
    with pytest.raises(ValueError, match="slab_index"):
        reference_for_slab(torch.zeros(8, 8, 8), 8)
    with pytest.raises(ValueError, match="slab_index"):
        slab_z_position_channel(-1)
    with pytest.raises(ValueError, match="class_cond"):
        SDMUNet.from_config({"class_cond": False})


def test_checkpoint_mismatch_is_reported():
    data = load_sdm("sdm_unet_lr_tiny")
    state = recipe_state_dict(data["names_shapes"])
    hr_config = {**data["config"], "reference": True, "pos_emb": True}
    with pytest.raises(CheckpointMismatchError, match="in_norm_ref"):
        from_official("sdm_unet", state, hr_config)
    with pytest.raises(TypeError, match="options"):
        from_official("sdm_unet", state, data["config"], use_ema=True)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert isinstance(from_official("sdm_unet", prefixed, data["config"]), SDMUNet)


def test_reference_for_shifted_slabs_matches_official_formula():
    """``first_slice``: the official create_reference arithmetic at any slab start (numpy oracle); aligned starts equal
    the official slab-index form."""
    g = torch.Generator().manual_seed(3)
    vol = torch.randint(-1000, 1500, (6, 5, 16), generator=g).float()

    def oracle(z_start, slab_depth, volume_depth, margin):
        arr = vol.numpy().astype(np.float32)
        lr = arr.shape[2]
        start = int(z_start * lr / volume_depth) - margin
        end = int(int(z_start * lr / volume_depth) + slab_depth * lr / volume_depth) + margin
        padded = np.pad(arr, ((0, 0), (0, 0), (max(0, -start), max(0, end - lr))), constant_values=-1024)
        padded = (padded - padded.min()) / (padded.max() - padded.min())
        window = (2 * padded - 1)[:, :, start + max(0, -start) : end + max(0, -start)]
        pos = np.tile((2 * (np.arange(start, end) / lr - 0.5)).reshape(1, 1, -1), (6, 5, 1))
        return np.stack([window, pos]).astype(np.float32)

    for z_start in (0, 4, 12, 20, 26, 30):
        got = reference_for_slab(vol, z_start // 8, 8, 34, 2, -1024.0, torch.float32, first_slice=z_start)
        np.testing.assert_allclose(got.numpy(), oracle(z_start, 8, 34, 2), rtol=0, atol=1e-6)
    for k in range(4):
        assert torch.equal(reference_for_slab(vol, 0, 8, 32, first_slice=8 * k),
                           reference_for_slab(vol, k, 8, 32))
