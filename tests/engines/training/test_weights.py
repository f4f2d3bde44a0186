"""medgen.engines.training.weights: save_state_dict."""

from __future__ import annotations


import pytest
import torch

from medgen.engines.training.weights import save_state_dict


def test_save_state_dict_unwraps_and_replaces_atomically(tmp_path):
    network = torch.nn.Linear(3, 2)
    path = save_state_dict(torch.nn.DataParallel(network), tmp_path / "models" / "model.pt")
    state = torch.load(path, weights_only=True)
    assert state.keys() == network.state_dict().keys()  # no "module." prefix
    with torch.no_grad():
        network.weight.add_(1.0)
    save_state_dict(network, path)  # the weights of a finished run replace the previous ones
    assert torch.equal(torch.load(path, weights_only=True)["weight"], network.weight)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
    with pytest.raises(TypeError, match="network"):
        save_state_dict({"weight": network.weight}, path)

