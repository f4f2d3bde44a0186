"""medgen.networks.checkpoint helpers: the parameter that gives a (wrapped) network's device and dtype."""

from __future__ import annotations

import torch
from torch import nn

from medgen.networks.checkpoint import network_parameter, unwrap_network


def test_network_parameter_and_unwrap():
    counter = nn.Module()
    counter.register_parameter("count", nn.Parameter(torch.zeros(1, dtype=torch.long), requires_grad=False))
    net = nn.Sequential(counter, nn.Linear(2, 2).double())
    wrapped = nn.DataParallel(net)
    assert unwrap_network(wrapped) is net and unwrap_network(net) is net
    assert network_parameter(net).dtype == torch.float64  # the first FLOATING parameter
    assert network_parameter(counter) is None
    assert network_parameter(lambda x: x) is None
    pair = nn.ModuleDict({"primary": nn.Linear(1, 1).double(), "auxiliary": nn.Linear(1, 1)})
    assert network_parameter(pair).dtype == torch.float64
    assert network_parameter((lambda x: x, nn.Linear(1, 1))) is not None
