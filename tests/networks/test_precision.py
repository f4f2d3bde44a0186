from __future__ import annotations

import pytest
import torch

from medgen.networks.checkpoint import network_parameter, unwrap_network
from medgen.networks.ncsnpp import NCSNpp
from medgen.networks.precision import PrecisionNetwork, PrecisionSettings, with_precision

# Max |difference| to float32 over the output (and the input gradient), relative to its largest value. bfloat16 keeps 8
# significant bits (unit roundoff 2^-9 = 2e-3): through the tiny NCSN++'s ~20 layers the output is measured 2.1e-2
# off, its input gradient 3.1e-2; float16 keeps 11 bits (2^-12 = 2.4e-4), 8 times less.
TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


def tiny_ncsnpp() -> NCSNpp:
    torch.manual_seed(0)
    return NCSNpp(image_size=16, nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), init_scale=1.0).eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max()) if not a.requires_grad else relative_error(a.detach(), b.detach())


def test_settings_normalise_and_validate():
    assert PrecisionSettings("bfloat16").autocast_dtype is torch.bfloat16
    assert not PrecisionSettings().active and PrecisionSettings(compile_network="reduce-overhead").active
    assert PrecisionSettings(torch.float16).to_json() == {"autocast_dtype": "float16", "compile_network": False}
    with pytest.raises(ValueError, match="autocast_dtype must be None"):
        PrecisionSettings(torch.float32)
    with pytest.raises(ValueError, match="autocast_dtype must be None"):
        PrecisionSettings("half")
    with pytest.raises(ValueError, match="compile_network must be"):
        PrecisionSettings(compile_network="fast")


def test_unsupported_device_is_refused_by_name():
    with pytest.raises(ValueError, match="autocast_dtype=torch.bfloat16 is not supported on meta"):
        PrecisionSettings(torch.bfloat16).check_device("meta")
    PrecisionSettings().check_device("meta")  # nothing to check without autocast


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_output_and_input_gradient_stay_close_to_float32(dtype, device):
    network = tiny_ncsnpp().to(device)
    wrapped = PrecisionNetwork(network, PrecisionSettings(dtype))
    generator = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 1, 16, 16, generator=generator) + 0.5 * torch.randn(3, 1, 16, 16, generator=generator)).to(device)
    sigma = torch.tensor([0.1, 1.0, 10.0], device=device)
    x.requires_grad_(True)
    reference = network(x, sigma)
    (reference_grad,) = torch.autograd.grad(reference.square().sum(), x)
    out = wrapped(x, sigma)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert out.dtype == grad.dtype == torch.float32
    error, grad_error = relative_error(out, reference), relative_error(grad, reference_grad)
    assert 0 < error <= TOLERANCE[dtype] and grad_error <= TOLERANCE[dtype]


def test_wrapper_is_transparent_to_what_inferers_read():
    network = tiny_ncsnpp()
    wrapped = PrecisionNetwork(network, PrecisionSettings("bfloat16"))
    assert unwrap_network(wrapped) is network
    assert torch.equal(wrapped.sigmas, network.sigmas)  # attributes of the wrapped network
    assert network_parameter(wrapped) is network_parameter(network)
    pair = with_precision((network, network), PrecisionSettings("bfloat16"))
    assert isinstance(pair, tuple) and all(isinstance(p, PrecisionNetwork) for p in pair)
    modules = with_precision(torch.nn.ModuleDict({"primary": network}), PrecisionSettings("bfloat16"))
    assert isinstance(modules["primary"], PrecisionNetwork)
    assert with_precision(network, PrecisionSettings()) is network


def test_plain_callable_and_prior_inputs():
    from medgen.diffusion.priors import ScorePrior

    wrapped = PrecisionNetwork(lambda x, w: x @ w, PrecisionSettings("bfloat16"))
    out = wrapped(torch.ones(2, 3), torch.ones(3, 1))
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((2, 1), 3.0))
    with pytest.raises(TypeError, match="build the prior on"):
        with_precision(ScorePrior(tiny_ncsnpp()), PrecisionSettings("bfloat16"))


def test_compile_runs_torch_compile_once_per_network(monkeypatch):
    compiled_calls = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):  # the eager backend traces with dynamo but skips code generation (fast)
        compiled_calls.append(kwargs)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    network = tiny_ncsnpp()
    x, sigma = torch.randn(2, 1, 16, 16), torch.tensor([0.5, 2.0])
    with torch.no_grad():
        expected = network(x, sigma)
        for _ in range(2):  # a second wrapper (e.g. the next inferer call) reuses the compiled network
            out = PrecisionNetwork(network, PrecisionSettings(compile_network=True))(x, sigma)
    assert compiled_calls == [{}]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
