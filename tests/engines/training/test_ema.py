"""ExponentialMovingAverage: the update formula, warmup, buffers, DDP-style wrappers, state dict, handler."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medgen.engines.training.ema import ExponentialMovingAverage, unwrap_network


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_is_the_exponential_average():
    net = small_net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = ExponentialMovingAverage(net, decay=0.9)
    history = []
    for step in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.5 * (step + 1))
        history.append({k: v.clone() for k, v in net.named_parameters()})
        ema.update(net)
    for name, _ in net.named_parameters():
        expected = start[name]
        for params in history:
            expected = 0.9 * expected + 0.1 * params[name]
        torch.testing.assert_close(ema.averaged.get_parameter(name), expected, rtol=0, atol=1e-6)
    assert int(ema.num_updates) == 3
    assert not ema.averaged[0].weight.requires_grad


def test_warmup_decay_and_buffers_are_copied():
    net = small_net()
    ema = ExponentialMovingAverage(net, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)   # (1 + 0) / (10 + 0)
    net.train()
    net(torch.randn(8, 3))  # changes the BatchNorm running statistics
    ema.update(net)
    assert ema.current_decay() == pytest.approx(2 / 11)
    torch.testing.assert_close(ema.averaged[1].running_mean, net[1].running_mean, rtol=0, atol=0)
    ema.num_updates.fill_(100)
    assert ema.current_decay() == pytest.approx(101 / 110)
    ema.num_updates.fill_(10_000)
    assert ema.current_decay() == 0.999


def test_wrapped_network_and_state_dict_round_trip():
    net = small_net()
    wrapped = nn.DataParallel(net)
    ema = ExponentialMovingAverage(wrapped, decay=0.5)
    assert unwrap_network(wrapped) is net
    assert all(not k.startswith("averaged.module.") for k in ema.state_dict())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    ema.update(wrapped)
    other = ExponentialMovingAverage(small_net(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert int(other.num_updates) == 1
    torch.testing.assert_close(other.averaged[0].weight, 0.5 * small_net()[0].weight + 0.5, rtol=0, atol=1e-7)
    x = torch.randn(2, 3)
    other.eval()
    torch.testing.assert_close(other(x), other.averaged(x))


def test_mismatched_network_and_bad_arguments():
    ema = ExponentialMovingAverage(small_net())
    with pytest.raises(ValueError, match="does not match"):
        ema.update(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(small_net(), decay=1.0)
    with pytest.raises(ValueError, match="update_every"):
        ExponentialMovingAverage(small_net(), update_every=0)
    with pytest.raises(TypeError, match="network"):
        ExponentialMovingAverage("net")  # type: ignore[arg-type]
