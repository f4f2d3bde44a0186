"""Every bundle in MONAI's standard inference form: ``monai.bundle.load`` returns its network with the demo weights,
and the config holds the standard items (network_def, network, preprocessing, inferer, postprocessing, evaluator,
run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import load

from medgen.networks.checkpoint import read_checkpoint

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
WEIGHTS = {"tpdm_brain_mri": "primary.pt", "hfssde_mri": "model.pt", "padis_ct": "model.pt",
           "wdm_brain_mri": "model.pt", "sdm_ctca": "lowres.pt", "tpdm_ct": "primary.pt",
           "cwdm_brain_mri": "model_t2.pt"}


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_monai_bundle_load_returns_the_network_with_its_weights(name, monkeypatch):
    config = json.loads((BUNDLES / name / "configs" / "inference.json").read_text())
    for key in ("network_def", "network", "preprocessing", "dataset", "dataloader", "inferer", "postprocessing",
                "evaluator", "handlers", "run", "edge", "checkpoint_dir", "checkpoint_every"):
        assert key in config, (name, key)
    assert config["run"][0] == "$@edge.check()" and config["run"][-1] == "$@edge.finish()"
    monkeypatch.chdir(BUNDLES / name)  # bundle_root "." as a zoo bundle has it
    model_file = f"models/{WEIGHTS[name]}"
    network = load(name, bundle_dir=str(BUNDLES), workflow_type="inference", model_file=model_file,
                   device="cpu", source="github")
    assert isinstance(network, torch.nn.Module)
    expected = read_checkpoint(BUNDLES / name / model_file)
    state = network.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
