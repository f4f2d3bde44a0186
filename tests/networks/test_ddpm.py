"""DDPM U-Net (score_sde, as HFS-SDE uses it): parity with the official network, quirks, checkpoint layouts."""

from __future__ import annotations

import pytest
import torch

from medgen.networks.checkpoint import CheckpointMismatchError
from medgen.networks.convert import from_official
from medgen.networks.ddpm import DDPMUNet, ddpm_from_official
from medgen.networks.score_sde_layers import flatten_config
from tests.conftest import load_parity

HFS = load_parity("hfs_sde")


def tiny_kwargs(**overrides) -> dict:
    kwargs = dict(in_channels=2, image_size=16, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    kwargs.update(overrides)
    return kwargs


def test_parity_hfs_scores_at_four_noise_levels():
    """score_on_perturbed[t] = official DDPM(perturbed, labels = HFS marginal std at t) (no division: HFS score_fn)."""
    net = from_official("score_sde_ddpm", HFS["model_state_dict"], HFS["config"])
    assert isinstance(net, DDPMUNet) and not net.training
    x = HFS["perturbed"]["value"]
    outputs = {}
    for t, ref in HFS["score_on_perturbed"].items():
        std = HFS["marginal"][t]["std"]
        with torch.no_grad():
            out = net(x, std)
        assert out.shape == ref.shape == (1, 2, 32, 32)
        scale = ref.abs().max().item()  # about 3.25
        assert (out - ref).abs().max().item() <= 1e-5 * scale, t
        outputs[t] = out
    # the levels differ by 0.2-5 % of the scale: far above the tolerance, so the time input is really checked
    levels = list(outputs)
    for a, b in zip(levels[:-1], levels[1:]):
        assert (outputs[a] - outputs[b]).abs().max().item() > 50 * 1e-5 * 3.25


def test_seeded_construction_matches_official_init():
    """official init (torch.manual_seed(0)) + 0.05*randn from one Generator(1), as recorded in the parity notes."""
    torch.manual_seed(0)
    net = DDPMUNet.from_config(HFS["config"])
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p += 0.05 * torch.randn(p.shape, generator=generator)
    state = net.state_dict()
    assert list(state) == list(HFS["model_state_dict"])
    assert sum(p.numel() for p in net.parameters()) == HFS["n_params"] == 628_290
    for key, value in HFS["model_state_dict"].items():
        assert state[key].dtype == value.dtype, key
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_flat_and_nested_configs_agree():
    flat = flatten_config(HFS["config"])
    assert flat["model.nf"] == 64 and flat["data.num_channels"] == 2
    a = DDPMUNet.from_config(flat)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [
        (k, v.shape) for k, v in HFS["model_state_dict"].items()
    ]
    broken = dict(flat)
    del broken["model.ch_mult"]
    with pytest.raises(ValueError, match="model.ch_mult"):
        DDPMUNet.from_config(broken)


def test_scale_by_sigma_index_quirk_and_label_mode():
    torch.manual_seed(0)
    plain = DDPMUNet(**tiny_kwargs(scale_by_sigma=False, num_scales=10)).eval()
    official = DDPMUNet(**tiny_kwargs(scale_by_sigma=True, num_scales=10)).eval()
    by_label = DDPMUNet(**tiny_kwargs(scale_by_sigma=True, num_scales=10, sigma_lookup="label")).eval()
    for net in (official, by_label):
        net.load_state_dict(plain.state_dict())
    x = torch.randn(2, 2, 16, 16)
    labels = torch.tensor([2.7, 0.4])
    with torch.no_grad():
        raw = plain(x, labels)
        # official: sigmas[labels.long()] -> sigmas[2] and sigmas[0] (truncation of the float label)
        expected = raw / official.sigmas[torch.tensor([2, 0])].float().reshape(2, 1, 1, 1)
        torch.testing.assert_close(official(x, labels), expected)
        torch.testing.assert_close(by_label(x, labels), raw / labels.reshape(2, 1, 1, 1))


def test_uncentered_input_map():
    """centered=False applies 2x - 1 inside the network (kept: the HFS weights were trained with it)."""
    torch.manual_seed(0)
    uncentered = DDPMUNet(**tiny_kwargs()).eval()
    centered = DDPMUNet(**tiny_kwargs(centered=True)).eval()
    centered.load_state_dict(uncentered.state_dict())
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(uncentered(x, 0.3), centered(2 * x - 1, 0.3))


def _training_checkpoint() -> dict:
    ema = [p + 1.0 for p in HFS["model_state_dict"].values() if p.dtype == torch.float32]
    return {
        "model": {"module." + k: v for k, v in HFS["model_state_dict"].items()},
        "ema": {"decay": 0.9999, "num_updates": 7, "shadow_params": ema},
        "optimizer": {"state": {}, "param_groups": []},
        "step": 7,
    }


def test_training_checkpoint_raw_by_default_and_ema_on_request(tmp_path):
    checkpoint = _training_checkpoint()
    path = tmp_path / "checkpoint_190.pth"
    torch.save(checkpoint, path)
    raw = from_official("score_sde_ddpm", path, HFS["config"])  # HFS-SDE samples with the raw weights
    for key, value in HFS["model_state_dict"].items():
        assert torch.equal(raw.state_dict()[key], value), key
    ema = ddpm_from_official(path, HFS["config"], use_ema=True)
    for p, s in zip(ema.parameters(), checkpoint["ema"]["shadow_params"]):
        assert torch.equal(p.detach(), s)
    assert torch.equal(ema.sigmas, HFS["model_state_dict"]["sigmas"])

    del checkpoint["ema"]
    with pytest.raises(ValueError, match="no 'ema' entry"):
        ddpm_from_official(checkpoint, HFS["config"], use_ema=True)


def test_mismatched_checkpoints_name_the_key():
    missing = {k: v for k, v in HFS["model_state_dict"].items() if k != "all_modules.5.NIN_3.W"}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: all_modules\.5\.NIN_3\.W"):
        ddpm_from_official(missing, HFS["config"])
    misshaped = dict(HFS["model_state_dict"])
    misshaped["all_modules.11.weight"] = torch.zeros(1, 64, 3, 3)
    with pytest.raises(CheckpointMismatchError, match=r"all_modules\.11\.weight: checkpoint \(1, 64, 3, 3\)"):
        ddpm_from_official(misshaped, HFS["config"])
    extra = dict(HFS["model_state_dict"])
    extra["all_modules.99.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: all_modules\.99\.weight"):
        ddpm_from_official(extra, HFS["config"])


@pytest.mark.parametrize("overrides", [{}, {"conditional": False, "resamp_with_conv": False, "dropout": 0.1}])
def test_forward_backward(overrides):
    torch.manual_seed(0)
    net = DDPMUNet(**tiny_kwargs(**overrides))
    with torch.no_grad():  # open the zero-initialised output layer so gradients reach everything
        net.all_modules[-1].weight.normal_(0, 0.1)
    x = torch.randn(2, 2, 16, 16, requires_grad=True)
    out = net(x, torch.tensor([0.1, 0.9]))
    assert out.shape == (2, 2, 16, 16) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # as in score_sde, an unconditional net keeps (unused) Dense_0 layers in its blocks
    unused = [] if net.conditional else [n for n, _ in net.named_parameters() if ".Dense_0." in n]
    assert all(p.grad is not None for n, p in net.named_parameters() if n not in unused)


def test_bad_inputs():
    net = DDPMUNet(**tiny_kwargs())
    with pytest.raises(ValueError, match="channels"):
        net(torch.zeros(1, 1, 16, 16), 0.5)
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.zeros(1, 2, 16, 17), 0.5)
    with pytest.raises(ValueError, match=r"time_label must be a scalar or have shape \(1,\)"):
        net(torch.zeros(1, 2, 16, 16), torch.ones(2))
    with pytest.raises(ValueError, match="multiple of 32"):
        DDPMUNet(**tiny_kwargs(nf=48))
    with pytest.raises(ValueError, match="sigma_lookup"):
        DDPMUNet(**tiny_kwargs(sigma_lookup="nearest"))
