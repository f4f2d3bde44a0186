"""medgen.networks.convert.from_official: dispatch, early config checks, config types; checkpoint.build_uninitialized."""

from __future__ import annotations

import importlib

import pytest
import torch

from medgen.networks.checkpoint import build_uninitialized
from medgen.networks.convert import OFFICIAL_KINDS, from_official
from medgen.networks.ncsnpp import NCSNpp
from tests.conftest import load_parity

# one config value per kind that the network cannot be built with, and the words the error must contain
BAD_CONFIGS = {
    "score_sde_ncsnpp": ({**load_parity("ncsnpp_tiny")["config"], "model.resblock_type": "unet"}, "resblock_type"),
    "score_sde_ddpm": ({"model": {"name": "ncsnpp"}}, "model.name"),
    "guided_unet": ({**load_parity("wdm_unet_tiny")["config"], "use_freq": True}, "not official UNetModel"),
    "wdm_wavunet": ({**load_parity("wdm_wnet_tiny")["config"], "additive_skips": True}, "WavUNet supports only"),
    "sdm_unet": ({"class_cond": False}, "class_cond"),
    "padis_edm": ({**load_parity("padis_songunet_tiny")["config"], "model_type": "DhariwalUNet"}, "model_type"),
}


def test_every_kind_resolves_to_a_loader():
    assert set(OFFICIAL_KINDS) == set(BAD_CONFIGS)
    for target in OFFICIAL_KINDS.values():
        module_name, function_name = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), function_name))
    with pytest.raises(ValueError, match="kind must be one of"):
        from_official("score_sde_ncsnpp_v2", {}, {})


@pytest.mark.parametrize("kind", sorted(OFFICIAL_KINDS))
def test_config_is_checked_before_the_checkpoint_is_read(kind, tmp_path):
    absent = tmp_path / "absent.pth"  # reading it would raise FileNotFoundError
    config, words = BAD_CONFIGS[kind]
    with pytest.raises(ValueError, match=words):
        from_official(kind, absent, config)
    with pytest.raises(TypeError, match="config must be a mapping"):
        from_official(kind, absent, ["not", "a", "mapping"])
    module_name, function_name = OFFICIAL_KINDS[kind].split(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    with pytest.raises(TypeError, match="config"):
        loader(absent, ["not", "a", "mapping"])


def test_configdict_like_configs_are_accepted():
    tiny = load_parity("ncsnpp_tiny")

    class ConfigDictLike:  # ml_collections.ConfigDict is not a Mapping but has to_dict()
        def to_dict(self):
            return dict(tiny["config"])

    net = from_official("score_sde_ncsnpp", tiny["state_dict"], ConfigDictLike())
    assert isinstance(net, NCSNpp) and not net.training
    assert torch.equal(net.all_modules[3].weight, tiny["state_dict"]["all_modules.3.weight"])


def test_options_a_loader_does_not_take_are_errors():
    d = load_parity("wdm_unet_tiny")
    with pytest.raises(TypeError, match="options"):
        from_official("guided_unet", d["state_dict"], d["config"], use_ema=True)
    d = load_parity("padis_songunet_tiny")
    with pytest.raises(TypeError, match="use_ema"):
        from_official("padis_edm", d["state_dict"], d["config"], use_ema=True)


def test_build_uninitialized_draws_nothing_and_allocates_on_the_device():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    net = build_uninitialized(lambda: torch.nn.Linear(4, 2))
    assert torch.equal(torch.rand(3), expected)  # the global RNG was not advanced
    assert net.weight.device.type == "cpu" and net.weight.shape == (2, 4)
