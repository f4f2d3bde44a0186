from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from medgen.cli import convert
from medgen.networks import NCSNpp
from tests.conftest import load_parity


@pytest.fixture
def official_ncsnpp(tmp_path):
    """The tiny NCSN++ parity checkpoint in score_sde's released layout (``module.`` prefix, EMA list)."""
    data = load_parity("ncsnpp_tiny")
    model = {f"module.{k}": v for k, v in data["state_dict"].items()}
    net = NCSNpp.from_config(data["config"])
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    shadow = [data["state_dict"][name] + 1.0 for name in trainable]
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": model, "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": shadow},
                "optimizer": {}, "step": 3}, checkpoint)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in data["config"].items()}))
    return checkpoint, config, data


def test_convert_writes_state_dict_and_sidecar(tmp_path, official_ncsnpp):
    checkpoint, config, data = official_ncsnpp
    output = tmp_path / "models" / "primary.pt"
    convert("score_sde_ncsnpp", str(checkpoint), str(config), str(output))
    state = torch.load(output, weights_only=True)
    # EMA weights (official + 1) land on the trainable parameters; the frozen Fourier weights come from 'model'
    key = "all_modules.3.weight"
    assert torch.equal(state[key], data["state_dict"][key] + 1.0)
    assert torch.equal(state["all_modules.0.W"], data["state_dict"]["all_modules.0.W"])
    sidecar = json.loads((tmp_path / "models" / "primary.pt.json").read_text())
    assert sidecar["kind"] == "score_sde_ncsnpp"
    assert sidecar["num_parameters"] == 322_961
    assert len(sidecar["source_sha256"]) == 64


def test_convert_raw_weights_option(tmp_path, official_ncsnpp):
    checkpoint, config, data = official_ncsnpp
    output = tmp_path / "raw.pt"
    convert("score_sde_ncsnpp", str(checkpoint), str(config), str(output), use_ema=False)
    state = torch.load(output, weights_only=True)
    assert torch.equal(state["all_modules.3.weight"], data["state_dict"]["all_modules.3.weight"])


def test_convert_refuses_to_overwrite(tmp_path, official_ncsnpp):
    checkpoint, config, _ = official_ncsnpp
    output = tmp_path / "out.pt"
    output.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert("score_sde_ncsnpp", str(checkpoint), str(config), str(output))
    assert output.read_bytes() == b"user data"
    with pytest.raises(ValueError, match="input"):
        convert("score_sde_ncsnpp", str(checkpoint), str(config), str(checkpoint), overwrite=True)


def test_convert_unknown_kind(tmp_path, official_ncsnpp):
    checkpoint, config, _ = official_ncsnpp
    with pytest.raises(ValueError, match="kind must be one of"):
        convert("ncsn", str(checkpoint), str(config), str(tmp_path / "x.pt"))


def test_console_entry_point(tmp_path, official_ncsnpp):
    checkpoint, config, _ = official_ncsnpp
    output = tmp_path / "cli.pt"
    result = subprocess.run(
        [sys.executable, "-m", "medgen.cli", "convert", "score_sde_ncsnpp", str(checkpoint),
         "--config", str(config), "--output", str(output)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert output.is_file() and "322,961 parameters" in result.stdout
