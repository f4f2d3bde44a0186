"""Tests for medgen.diffusion.chunked: chunked vector-Jacobian products equal the full graph and bound its memory.

Memory is measured with :class:`SavedTensorMeter` (bytes autograd graphs hold, deterministic): PaDIS DPS through
the patch prior and TPDM DPS over a slice minibatch, at a small and a 2x (4x the items) size.
"""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.chunked import ChunkedNetwork, SavedTensorMeter, chunked_map, with_chunking
from medgen.diffusion.consistency import DPS
from medgen.diffusion.priors import PatchPrior, ScorePrior
from medgen.diffusion.samplers import PCSettings, langevin_step, pc_step
from medgen.diffusion.sde import VESDE
from medgen.diffusion.views import CanvasCrop, CanvasView
from medgen.networks.checkpoint import unwrap_network
from medgen.networks.convert import from_official
from medgen.physics.base import ComposedOperator
from medgen.physics.blur import Blur
from medgen.physics.mri import CartesianMRI
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example
import medgen.diffusion.chunked as chunked_module


@pytest.fixture(scope="module")
def padis_net():
    d = load_parity("padis_songunet_tiny")
    return from_official("padis_edm", d["state_dict"], d["config"])


@pytest.fixture(scope="module")
def ncsnpp_net():
    d = load_parity("ncsnpp_tiny")
    return from_official("score_sde_ncsnpp", d["state_dict"], d["config"])


class Affine(torch.nn.Module):
    """A non-linear item-wise network with a per-item input (a noise level) and a shared one (a scale)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.out = torch.nn.Conv2d(3, 1, 3, padding=1)
        self.calls: list[int] = []

    def forward(self, x, sigma, scale=1.0):
        self.calls.append(x.shape[0])
        return self.out(torch.tanh(self.conv(x) / sigma.view(-1, 1, 1, 1))) * scale


# ------------------------------------------------------------------------------------------------ chunked_map
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20])
def test_chunked_map_output_and_gradient_equal_the_full_graph(chunk_size):
    net = Affine()
    x = torch.randn(7, 1, 6, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    sigma = torch.linspace(0.5, 2.0, 7)
    weight = torch.randn(7, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    full = net(x, sigma)
    (full_grad,) = torch.autograd.grad((full * weight).sum(), x)
    net.calls.clear()
    out = chunked_map(net, x, sigma, chunk_size=chunk_size)
    expected_calls = [min(chunk_size, 7 - i) for i in range(0, 7, chunk_size)]
    assert net.calls == expected_calls  # forward: one call per chunk, no graph
    (grad,) = torch.autograd.grad((out * weight).sum(), x)
    assert net.calls == expected_calls * 2  # backward: each chunk recomputed once
    scale = full.abs().max().item()
    torch.testing.assert_close(out, full, rtol=0, atol=1e-6 * scale)
    torch.testing.assert_close(grad, full_grad, rtol=0, atol=1e-6 * full_grad.abs().max().item())


def test_chunked_map_without_graph_and_without_chunks():
    net = Affine()
    x, sigma = torch.randn(5, 1, 4, 4), torch.ones(5)
    with torch.no_grad():
        out = chunked_map(net, x, sigma, chunk_size=2)
    assert net.calls == [2, 2, 1] and not out.requires_grad
    torch.testing.assert_close(out, net(x, sigma).detach())
    net.calls.clear()
    x.requires_grad_(True)
    assert chunked_map(net, x, sigma).grad_fn is not None and net.calls == [5]  # no chunk size: the plain call


def test_chunked_map_checks_its_arguments():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        chunked_map(torch.tanh, [1.0])
    with pytest.raises(ValueError, match=r"items\[0\] must be a tensor of 4 items"):
        chunked_map(lambda x, s: x, torch.zeros(4, 2), torch.zeros(3), chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_map(torch.tanh, torch.zeros(4, 2), chunk_size=0)


def test_chunked_network_cuts_per_item_arguments_and_delegates_attributes():
    net = Affine()
    net.input_multiple = (4, 4)
    wrapped = ChunkedNetwork(net, chunk_size=2)
    x, sigma = torch.randn(5, 1, 4, 4), torch.linspace(1, 2, 5)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x, sigma, scale=2.0), net(x, sigma, scale=2.0))
    assert net.calls[:3] == [2, 2, 1]
    assert wrapped.input_multiple == (4, 4) and unwrap_network(wrapped) is net
    pair = with_chunking((net, net), 3, False)
    assert all(isinstance(p, ChunkedNetwork) and p.chunk_size == 3 for p in pair)
    assert with_chunking(net, None, False) is net
    modules = with_chunking(torch.nn.ModuleDict({"primary": net, "auxiliary": net}), 2, None)
    assert isinstance(modules["auxiliary"], ChunkedNetwork)
    with pytest.raises(TypeError, match="build the prior on"):
        with_chunking(ScorePrior(net), 2, False)
    with pytest.raises(TypeError, match="network must be callable"):
        ChunkedNetwork("net")


def test_saved_tensor_meter_counts_live_graphs():
    namespace = run_docstring_example(SavedTensorMeter.__doc__, "SavedTensorMeter")
    assert namespace["meter"].peak_bytes == 4000 and namespace["meter"].live_bytes == 0
    x = torch.randn(256, requires_grad=True)
    with SavedTensorMeter() as meter:
        kept = [(x * i).exp() for i in range(3)]  # three graphs alive at once, 1 KiB saved each
        assert meter.live_bytes == 3 * 1024
        del kept
    assert meter.peak_bytes == 3 * 1024 and meter.live_bytes == 0


def test_module_docstring_example_runs():
    run_docstring_example(chunked_module.__doc__, "medgen.diffusion.chunked")


# ------------------------------------------------------------------------------------------------ memory bounds
def _padis_dps_step(net, image_size: int, max_batch: int | None) -> tuple[torch.Tensor, int]:
    """One PaDIS DPS Langevin step on a multi-coil-free blur problem: (new canvas, peak graph bytes)."""
    prior = PatchPrior(net, patch_size=8, pad=8, max_batch=max_batch)
    canvas = prior.canvas_size(image_size)
    image = torch.rand(1, 1, image_size, image_size, generator=torch.Generator().manual_seed(0))
    blur = Blur.gaussian(3, 1.0)
    operator = ComposedOperator(blur, CanvasCrop(CanvasView(8), (1, 1, image_size, image_size)))
    term = DPS(operator, blur(image), weight=1.0, norm="item")
    x = torch.randn(1, 1, canvas, canvas, generator=torch.Generator().manual_seed(1))
    with SavedTensorMeter() as meter:
        new = langevin_step(prior, x, 0.5, 0.125, consistency=term, generator=torch.Generator().manual_seed(2))
    return new, meter.peak_bytes


def test_padis_dps_graph_memory_does_not_grow_with_the_canvas(padis_net):
    """32^2 -> 64^2 images: 25 -> 81 patches. Chunked (max_batch=4): the graph memory stays within 1.3x (measured
    1.02x); one graph (max_batch=None) grows with the patches (measured 3.0x). Outputs equal the one-graph step's."""
    small_chunked, small_peak = _padis_dps_step(padis_net, 32, 4)
    large_chunked, large_peak = _padis_dps_step(padis_net, 64, 4)
    small_full, small_full_peak = _padis_dps_step(padis_net, 32, None)
    large_full, large_full_peak = _padis_dps_step(padis_net, 64, None)
    assert large_peak <= 1.3 * small_peak, large_peak / small_peak
    assert large_full_peak >= 2.5 * small_full_peak, large_full_peak / small_full_peak
    assert large_peak <= 0.2 * large_full_peak
    for chunked, full in ((small_chunked, small_full), (large_chunked, large_full)):
        torch.testing.assert_close(chunked, full, rtol=0, atol=1e-5 * full.abs().max().item())


def _tpdm_dps_step(net, slices: int, chunk_size: int | None) -> tuple[torch.Tensor, int]:
    """One TPDM predictor-corrector step with DPS (k-space, ``"batch"`` norm) on a minibatch of ``slices``."""
    network = net if chunk_size is None else ChunkedNetwork(net, chunk_size)
    prior = ScorePrior(network)
    mask = (torch.rand(16, 16, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    operator = CartesianMRI(mask)
    truth = torch.rand(slices, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    term = DPS(operator, operator(truth), weight=1.0)
    sde = VESDE(0.01, 50.0, 10)
    x = torch.randn(slices, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 5
    with SavedTensorMeter() as meter:
        new, _ = pc_step(prior, x, torch.tensor(0.5), sde, PCSettings(), corrector_consistency=term,
                         predictor_consistency=term, generator=torch.Generator().manual_seed(3))
    return new, meter.peak_bytes


def test_tpdm_dps_graph_memory_does_not_grow_with_the_minibatch(ncsnpp_net):
    """8 -> 32 slices per minibatch (the Langevin step size and DPS norm are the minibatch's, so the minibatch size is
    part of the result): chunks of 4 slices keep the graph memory within 1.3x (measured 1.01x); one graph grows
    (measured 3.6x). The outputs equal the one-graph step's."""
    small, small_peak = _tpdm_dps_step(ncsnpp_net, 8, 4)
    large, large_peak = _tpdm_dps_step(ncsnpp_net, 32, 4)
    _, small_full_peak = _tpdm_dps_step(ncsnpp_net, 8, None)
    large_full, large_full_peak = _tpdm_dps_step(ncsnpp_net, 32, None)
    assert large_peak <= 1.3 * small_peak, large_peak / small_peak
    assert large_full_peak >= 3.0 * small_full_peak, large_full_peak / small_full_peak
    torch.testing.assert_close(large, large_full, rtol=0, atol=1e-5 * large_full.abs().max().item())
