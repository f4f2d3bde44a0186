"""NCSN++ (score_sde / TPDM): parity with the official network, official checkpoint layouts, the full TPDM key set."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.ncsnpp import NCSNpp, ncsnpp_from_official
from medgen.networks.score_sde_layers import (
    conv_downsample_2d,
    downsample_2d,
    flatten_config,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
)
from tests.conftest import PARITY_DIR, load_parity

TINY = load_parity("ncsnpp_tiny")
MANIFEST = json.loads((PARITY_DIR / "tpdm_ncsnpp_256_keys.json").read_text())


def tpdm_256_config() -> dict:
    """TPDM's BMR_ZSR_256 config: the tiny parity config with the full-size fields (tpdm.md section 5)."""
    config = dict(TINY["config"])
    config.update(
        {
            "data.image_size": 256,
            "model.nf": 128,
            "model.ch_mult": [1, 2, 2, 2],
            "model.num_res_blocks": 4,
            "model.attn_resolutions": [16],
        }
    )
    return config


def tiny_kwargs(**overrides) -> dict:
    kwargs = dict(in_channels=1, image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    kwargs.update(overrides)
    return kwargs




# ------------------------------------------------------------------------------------------------ parity


def test_parity_tiny_official_output():
    """Official score_sde NCSN++ output (nn.SiLU) reproduced; TPDM's vendored x*sigmoid(x) differs by ~2.5e-6."""
    net = from_official("score_sde_ncsnpp", TINY["state_dict"], TINY["config"])
    assert isinstance(net, NCSNpp) and not net.training
    with torch.no_grad():
        out = net(TINY["x"], TINY["sigma"])
    ref = TINY["out"]
    assert out.shape == ref.shape == (2, 1, 32, 32)
    scale = ref.abs().max().item()  # about 3.0
    assert (out - ref).abs().max().item() <= 1e-5 * scale
    # the sigma input matters at this tolerance (swapping the two noise levels is far off)
    with torch.no_grad():
        swapped = net(TINY["x"], TINY["sigma"].flip(0))
    assert (swapped - ref).abs().max().item() > 100 * 1e-5 * scale


def test_seeded_construction_matches_official_init():
    """torch.manual_seed(0) + construction gives the official initial weights (recipe in the parity notes)."""
    torch.manual_seed(0)
    net = NCSNpp.from_config(TINY["config"])
    torch.manual_seed(123)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p += 0.05 * torch.randn_like(p)
    state = net.state_dict()
    assert list(state) == list(TINY["state_dict"])
    for key, value in TINY["state_dict"].items():
        assert state[key].dtype == value.dtype, key
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_state_dict_naming_and_frozen_fourier_weight():
    net = NCSNpp.from_config(TINY["config"])
    assert sum(p.numel() for p in net.parameters()) == 322_961
    assert net.all_modules[0].W.requires_grad is False
    assert net.sigmas.dtype == torch.float64 and net.sigmas.shape == (2000,)
    assert net.sigmas[0].item() == pytest.approx(378.0) and net.sigmas[-1].item() == pytest.approx(0.01)
    torch.testing.assert_close(net.sigmas, TINY["state_dict"]["sigmas"], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ TPDM full size


def test_tpdm_256_keys_and_shapes_match_release():
    with torch.device("meta"):
        net = NCSNpp.from_config(tpdm_256_config())
    shapes = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert shapes == [(k, list(s)) for k, s in MANIFEST]
    assert sum(p.numel() for p in net.parameters()) == 61_433_601
    assert sum(math.prod(s) for k, s in MANIFEST if k != "sigmas") == 61_433_601


def _synthetic_release_checkpoint(net: NCSNpp) -> dict:
    """A checkpoint in score_sde's saved layout for the TPDM net, built from the manifest with cheap expanded tensors.

    'model' entry i holds the constant -(i + 1); EMA shadow j holds the constant j + 0.5 (distinct, order-revealing).
    """
    model = {
        f"module.{key}": torch.full((1,), -(i + 1.0), dtype=torch.float64 if key == "sigmas" else torch.float32).expand(
            *shape
        )
        for i, (key, shape) in enumerate(MANIFEST)
    }
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    shadow = [torch.full((1,), j + 0.5).expand(*net.get_parameter(name).shape) for j, name in enumerate(trainable)]
    optimizer = {"state": {}, "param_groups": [{"lr": 2e-4, "params": list(range(len(trainable)))}]}
    return {
        "model": model,
        "ema": {"decay": 0.999, "num_updates": 10, "shadow_params": shadow},
        "optimizer": optimizer,
        "step": 10,
    }


def test_tpdm_256_release_layout_loads_with_ema(tmp_path):
    config = tpdm_256_config()
    with torch.device("meta"):
        layout = NCSNpp.from_config(config)
    checkpoint = _synthetic_release_checkpoint(layout)
    keys = [k for k, _ in MANIFEST]
    trainable = [name for name, p in layout.named_parameters() if p.requires_grad]
    assert len(trainable) == len(keys) - 2  # everything but the Fourier W and the sigmas buffer
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    del checkpoint

    net = from_official("score_sde_ncsnpp", path, config)  # use_ema=True by default
    for name in (trainable[0], trainable[1], "all_modules.3.weight", trainable[len(trainable) // 2], trainable[-1]):
        j = trainable.index(name)
        value = net.get_parameter(name)
        assert torch.all(value == j + 0.5), name
    # frozen Fourier weights and the sigmas buffer come from 'model'
    assert torch.all(net.all_modules[0].W == -(keys.index("all_modules.0.W") + 1.0))
    assert torch.all(net.sigmas == -(keys.index("sigmas") + 1.0)) and net.sigmas.dtype == torch.float64

    raw = ncsnpp_from_official(path, config, use_ema=False)
    name = trainable[5]
    assert torch.all(raw.get_parameter(name) == -(keys.index(name) + 1.0))


# ------------------------------------------------------------------------------------------------ loader layouts


def _tiny_training_checkpoint(prefix: str = "module.") -> dict:
    net = NCSNpp.from_config(TINY["config"])
    ema = [torch.randn_like(p) for p in net.parameters() if p.requires_grad]
    return {
        "model": {prefix + k: v for k, v in TINY["state_dict"].items()},
        "ema": {"decay": 0.999, "num_updates": 3, "shadow_params": ema},
        "optimizer": {"state": {}, "param_groups": []},
        "step": 3,
    }


def test_loader_layouts_bare_prefixed_and_training():
    prefixed = {"module." + k: v for k, v in TINY["state_dict"].items()}
    net = ncsnpp_from_official(prefixed, TINY["config"])
    with torch.no_grad():
        torch.testing.assert_close(net(TINY["x"], TINY["sigma"]), TINY["out"], rtol=0, atol=3e-5)

    checkpoint = _tiny_training_checkpoint()
    raw = ncsnpp_from_official(checkpoint, TINY["config"], use_ema=False)
    with torch.no_grad():
        torch.testing.assert_close(raw(TINY["x"], TINY["sigma"]), TINY["out"], rtol=0, atol=3e-5)
    ema = ncsnpp_from_official(checkpoint, TINY["config"], use_ema=True)
    trainable = [p for p in ema.parameters() if p.requires_grad]
    for p, s in zip(trainable, checkpoint["ema"]["shadow_params"]):
        assert torch.equal(p.detach(), s)
    torch.testing.assert_close(ema.all_modules[0].W, TINY["state_dict"]["all_modules.0.W"], rtol=0, atol=0)


def test_use_ema_without_ema_entry_is_a_clear_error():
    checkpoint = _tiny_training_checkpoint()
    del checkpoint["ema"]
    with pytest.raises(ValueError, match="use_ema=False"):
        ncsnpp_from_official(checkpoint, TINY["config"], use_ema=True)


def test_mismatched_checkpoints_name_the_key():
    missing = dict(TINY["state_dict"])
    del missing["all_modules.5.Conv_0.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: all_modules\.5\.Conv_0\.weight"):
        from_official("score_sde_ncsnpp", missing, TINY["config"])
    misshaped = dict(TINY["state_dict"])
    misshaped["all_modules.3.weight"] = torch.zeros(16, 1, 5, 5)
    with pytest.raises(CheckpointMismatchError, match=r"all_modules\.3\.weight: checkpoint \(16, 1, 5, 5\)"):
        from_official("score_sde_ncsnpp", misshaped, TINY["config"])
    short_ema = _tiny_training_checkpoint()
    short_ema["ema"]["shadow_params"] = short_ema["ema"]["shadow_params"][:-1]
    with pytest.raises(CheckpointMismatchError, match="EMA holds"):
        ncsnpp_from_official(short_ema, TINY["config"])


def test_from_config_accepts_nested_and_reports_missing_field():
    nested: dict = {}
    for key, value in TINY["config"].items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    assert flatten_config(nested) == dict(TINY["config"])
    assert list(NCSNpp.from_config(nested).state_dict()) == list(TINY["state_dict"])
    broken = dict(TINY["config"])
    del broken["model.nf"]
    with pytest.raises(ValueError, match="model.nf"):
        NCSNpp.from_config(broken)


# ------------------------------------------------------------------------------------------------ options, I/O


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"progressive": "output_skip", "progressive_input": "input_skip", "progressive_combine": "cat"},
        {"progressive": "residual", "progressive_input": "input_skip", "progressive_combine": "sum"},
        {"resblock_type": "ddpm", "fir": False, "progressive_input": "none", "skip_rescale": False},
        {"resblock_type": "ddpm", "fir": True, "progressive": "residual", "progressive_input": "residual"},
        {"embedding_type": "positional", "conditional": False, "centered": True, "num_scales": 10},
    ],
)
def test_forward_backward_options(overrides):
    torch.manual_seed(0)
    net = NCSNpp(**tiny_kwargs(init_scale=1.0, dropout=0.1, **overrides))
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    if net.embedding_type == "positional":
        sigma = torch.tensor([0, 9])
    else:
        sigma = torch.tensor([0.5, 3.0])
    out = net(x, sigma)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # as in score_sde, an unconditional net keeps (unused) Dense_0 layers in its blocks
    unused = [] if net.conditional else [n for n, _ in net.named_parameters() if ".Dense_0." in n]
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad and n not in unused)


def test_inference_mode_then_gradients():
    """The cached FIR kernels made under inference_mode still serve a later forward that builds a graph (DPS)."""
    net = NCSNpp(**tiny_kwargs(init_scale=1.0))
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        reference = net(x, 1.5)
    x.requires_grad_(True)
    out = net(x, 1.5)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), reference)
    assert x.grad.abs().sum() > 0


def test_scale_by_sigma_and_scalar_sigma():
    torch.manual_seed(0)
    scaled = NCSNpp(**tiny_kwargs(init_scale=1.0)).eval()
    plain = NCSNpp(**tiny_kwargs(init_scale=1.0, scale_by_sigma=False)).eval()
    plain.load_state_dict(scaled.state_dict())
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(scaled(x, 2.0), plain(x, torch.tensor([2.0, 2.0])) / 2.0)


def test_bad_inputs():
    net = NCSNpp(**tiny_kwargs())
    with pytest.raises(ValueError, match="channels"):
        net(torch.zeros(1, 3, 16, 16), torch.ones(1))
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.zeros(1, 1, 15, 16), torch.ones(1))
    with pytest.raises(ValueError, match=r"sigma must be a scalar or have shape \(2,\)"):
        net(torch.zeros(2, 1, 16, 16), torch.ones(3))
    with pytest.raises(ValueError, match="progressive_input"):
        NCSNpp(**tiny_kwargs(progressive_input="skip"))


# ------------------------------------------------------------------------------------------------ FIR resampling


def test_fir_resampling_identities():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    # constant images keep their value away from the zero-padded border
    ones = torch.ones(1, 1, 8, 8)
    assert torch.allclose(upsample_2d(ones, (1, 3, 3, 1))[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    assert torch.allclose(downsample_2d(ones, (1, 3, 3, 1))[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))
    # the [1, 1] kernel is nearest upsampling and 2x2 average pooling
    torch.testing.assert_close(upsample_2d(x, None), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    torch.testing.assert_close(downsample_2d(x, None), torch.nn.functional.avg_pool2d(x, 2))
    # upfirdn2d is a true convolution: an impulse returns the (flipped-back) kernel
    kernel = torch.arange(9.0).reshape(3, 3)
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[..., 2, 2] = 1
    torch.testing.assert_close(upfirdn2d(impulse, kernel, pad=(1, 1))[0, 0, 1:4, 1:4], kernel)
    # fused conv + resampling == the separate ops (StyleGAN2's definition) away from the zero-padded border
    w = torch.randn(4, 3, 3, 3)
    k = (1, 3, 3, 1)
    fused_down = conv_downsample_2d(x, w, k)
    separate_down = downsample_2d(torch.nn.functional.conv2d(x, w, padding=1), k)
    assert fused_down.shape == separate_down.shape == (2, 4, 4, 4)
    torch.testing.assert_close(fused_down[..., 1:-1, 1:-1], separate_down[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    fused_up = upsample_conv_2d(x, w, k)
    separate_up = torch.nn.functional.conv2d(upsample_2d(x, k), w, padding=1)
    assert fused_up.shape == separate_up.shape == (2, 4, 16, 16)
    torch.testing.assert_close(fused_up[..., 1:-1, 1:-1], separate_up[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
