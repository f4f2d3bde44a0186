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


def test_convert_refuses_to_overwrite(tmp_path, official_ncsnpp, capsys):
    checkpoint, config, _ = official_ncsnpp
    output = tmp_path / "out.pt"
    output.write_bytes(b"user data")
    with pytest.raises(SystemExit, match="1"):
        convert("score_sde_ncsnpp", str(checkpoint), str(config), str(output))
    assert "medgen convert: FileExistsError: output" in capsys.readouterr().err
    assert output.read_bytes() == b"user data"
    with pytest.raises(SystemExit, match="1"):
        convert("score_sde_ncsnpp", str(checkpoint), str(config), str(checkpoint), overwrite=True)
    assert "would overwrite an input file" in capsys.readouterr().err


def test_convert_unknown_kind(tmp_path, official_ncsnpp, capsys):
    checkpoint, config, _ = official_ncsnpp
    with pytest.raises(SystemExit, match="1"):
        convert("ncsn", str(checkpoint), str(config), str(tmp_path / "x.pt"))
    assert "medgen convert: ValueError: kind must be one of" in capsys.readouterr().err


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


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medgen.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**__import__("os").environ, "PAGER": "cat"})


def test_top_level_help_says_what_medgen_is_and_lists_the_bundles():
    result = run_cli("--help")
    assert result.returncode == 0
    text = result.stdout
    assert "diffusion methods" in text and "MONAI" in text
    for name in ("tpdm_brain_mri", "wdm_brain_mri", "padis_ct", "hfssde_mri", "sdm_ctca"):
        assert f"--config_file bundles/{name}/configs/inference.json --bundle_root bundles/{name}" in text
    for command in ("convert", "demo", "zoo pack", "zoo verify", "zoo index", "zoo download", "zoo list"):
        assert f"  {command} " in text
    assert "run only bundles you trust" in text
    assert "``" not in text and ":data:" not in text and ":py:" not in text  # plain text, not reST
    assert run_cli().stdout == text


def test_convert_help_lists_its_kinds():
    from medgen.networks.convert import OFFICIAL_KINDS

    result = run_cli("convert", "--help")  # fire prints help to stdout or stderr depending on the command
    shown = result.stdout + result.stderr
    assert "KIND is one of " + ", ".join(OFFICIAL_KINDS) + "." in shown
    assert "``" not in shown and ":data:" not in shown


def test_zoo_help_and_errors(tmp_path, capsys):
    from medgen.cli import zoo_download

    result = run_cli("zoo", "download", "--help")
    shown = result.stdout + result.stderr
    assert "never runs anything from the bundle" in shown and "``" not in shown
    (tmp_path / "index.json").write_text(json.dumps({"format": "medgen-zoo-index/1", "bundles": []}))
    with pytest.raises(SystemExit) as error:  # a refused operation: one line on stderr, exit status 1
        zoo_download("tpdm_brain_mri", str(tmp_path), bundle_dir=str(tmp_path / "b"))
    assert error.value.code == 1
    assert "medgen zoo: LookupError: bundle 'tpdm_brain_mri' is not in the zoo" in capsys.readouterr().err


def test_zoo_pack_index_list_download_commands(tmp_path, capsys):
    from medgen.cli import zoo_download, zoo_index, zoo_list, zoo_pack
    from tests.zoo.conftest import BUNDLES_DIR

    zoo_pack(str(BUNDLES_DIR / "wdm_brain_mri"), output_dir=str(tmp_path / "zoo"))
    assert "wdm_brain_mri_v0.1.1.zip" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:
        zoo_pack(str(BUNDLES_DIR / "wdm_brain_mri"), output_dir=str(tmp_path / "zoo"))
    assert error.value.code == 1 and "FileExistsError" in capsys.readouterr().err
    zoo_index(str(tmp_path / "zoo"))
    zoo_list(str(tmp_path / "zoo"))
    listed = capsys.readouterr().out
    assert "1 bundle(s)" in listed and "wdm_brain_mri" in listed and "0.1.1" in listed
    zoo_download("wdm_brain_mri", str(tmp_path / "zoo" / "index.json"), bundle_dir=str(tmp_path / "bundles"))
    out = capsys.readouterr().out
    assert "installed wdm_brain_mri 0.1.1" in out and "only if you trust it" in out
    assert (tmp_path / "bundles" / "wdm_brain_mri" / "models" / "model.pt").is_file()


def test_missing_official_checkpoint_points_to_convert(tmp_path):
    from medgen.networks.checkpoint import read_checkpoint

    with pytest.raises(FileNotFoundError, match="medgen convert KIND OFFICIAL_CHECKPOINT"):
        read_checkpoint(tmp_path / "models" / "bmr_zsr_256_yz.pt")
