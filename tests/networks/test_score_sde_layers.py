"""score_sde layers: the grouped-convolution FIR resampling, the fused upsample + convolution and the in-place
activation/residual helpers equal their literal definitions (float64, so the comparisons hold to 1e-12)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medgen.networks.score_sde_layers import (
    ResnetBlockBigGAN,
    norm_act,
    rescaled_sum,
    transposed_conv_2d,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
    upsample_conv_2d_same,
)


def literal_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    """StyleGAN2's definition step by step: zero insertion, pad (negative crops), true convolution, decimation."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1)).reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, [0, 1])[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)[:, :, ::down, ::down]


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_upfirdn2d_equals_its_definition(size):
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=generator)
    kernel = torch.randn(size, size, dtype=torch.float64, generator=generator)
    cases = 0
    for up, down, before, after in itertools.product((1, 2, 3), (1, 2), range(-2, 5), range(-2, 5)):
        if 9 * up + before + after < size:
            continue
        expected = literal_upfirdn2d(x, kernel, up, down, (before, after))
        out = upfirdn2d(x, kernel, up, down, (before, after))
        assert out.shape == expected.shape, (up, down, before, after)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
        cases += 1
    assert cases > 150


@pytest.mark.parametrize("factor, size", [(2, 1), (2, 3), (2, 5), (3, 3), (3, 4)])
def test_transposed_conv_2d_is_conv_transpose2d(factor, size):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, generator=generator)
    weight = torch.randn(4, 3, size, size, dtype=torch.float64, generator=generator)
    expected = F.conv_transpose2d(x, torch.flip(weight, [2, 3]).transpose(0, 1), stride=factor)
    out = transposed_conv_2d(x, weight, factor)
    rows, cols = expected.shape[-2:]
    assert out.shape[-2] % factor == 0 and 0 <= out.shape[-2] - rows < factor and 0 <= out.shape[-1] - cols < factor
    torch.testing.assert_close(out[..., :rows, :cols], expected, rtol=0, atol=1e-12)
    assert not out[..., rows:, :].any() and not out[..., cols:].any()


@pytest.mark.parametrize(
    "kernel, factor, conv_size, size",
    [
        ((1, 3, 3, 1), 2, 3, 8),  # NCSN++'s up blocks
        ((1, 3, 3, 1), 2, 3, 13),
        ((1, 3, 3, 1), 2, 5, 9),
        ((1, 3, 3, 1), 3, 3, 7),
        ((1, 2, 1), 2, 3, 6),
        ((1, 4, 6, 4, 1), 2, 3, 8),
        (None, 2, 3, 6),
        (None, 3, 5, 7),
        ((1, 3, 3, 1), 2, 3, 2),  # too small for the fused path: the separate operations
        ((1, 3, 3, 1), 2, 1, 8),
    ],
)
def test_upsample_conv_2d_same_equals_the_separate_operations(kernel, factor, conv_size, size):
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=generator)
    weight = torch.randn(4, 3, conv_size, conv_size, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    separate = F.conv2d(upsample_2d(x, kernel, factor), weight, bias, padding=conv_size // 2)
    out = upsample_conv_2d_same(x, weight, bias, kernel, factor)
    assert out.shape == separate.shape == (2, 4, size * factor, size * factor)
    torch.testing.assert_close(out, separate, rtol=0, atol=1e-12)
    # StyleGAN2's fused operation differs from it only within conv_size // 2 of the border
    border = conv_size // 2
    fused = upsample_conv_2d(x, weight, kernel, factor) + bias.reshape(1, -1, 1, 1)
    inner = (..., slice(border, size * factor - border), slice(border, size * factor - border))
    torch.testing.assert_close(fused[inner], separate[inner], rtol=0, atol=1e-12)
    if border and size > 2 and kernel is not None:  # (nearest upsampling continued beyond the edge is zero)
        assert (fused - separate).abs().max() > 1e-3


def test_upsample_conv_2d_same_gradient():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, generator=generator, requires_grad=True)
    probe = torch.randn(1, 4, 16, 16, dtype=torch.float64, generator=generator)
    fused = torch.autograd.grad((upsample_conv_2d_same(x, weight, bias, (1, 3, 3, 1)) * probe).sum(), (x, weight, bias))
    separate = F.conv2d(upsample_2d(x, (1, 3, 3, 1)), weight, bias, padding=1)
    expected = torch.autograd.grad((separate * probe).sum(), (x, weight, bias))
    for a, b in zip(fused, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("fir", [True, False])
def test_biggan_up_block_equals_its_definition(fir):
    """The up block projects its shortcut before resampling and fuses Conv_0 with the upsampling: the same values as
    score_sde's order (resample, then convolve)."""
    torch.manual_seed(0)
    block = ResnetBlockBigGAN(nn.SiLU(), 8, 4, temb_dim=16, up=True, fir=fir, init_scale=1.0).double().eval()
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    temb = torch.randn(2, 16, dtype=torch.float64)
    h = block._resample(F.silu(block.GroupNorm_0(x)))
    h = block.Conv_0(h) + block.Dense_0(F.silu(temb))[:, :, None, None]
    h = block.Conv_1(F.silu(block.GroupNorm_1(h)))
    expected = (block.Conv_2(block._resample(x)) + h) / 2**0.5
    with torch.no_grad():
        torch.testing.assert_close(block(x, temb), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("act", [nn.SiLU(), nn.ReLU(), nn.ELU(), nn.LeakyReLU(0.2), nn.GELU()])
def test_norm_act_in_place_only_without_a_graph(act):
    norm = nn.GroupNorm(2, 4)
    x = torch.randn(2, 4, 5, 5)
    expected = act(norm(x))
    with torch.no_grad():
        torch.testing.assert_close(norm_act(norm, act, x), expected, rtol=0, atol=0)
    graph = norm_act(norm, act, x)  # norm's parameters require grad: out of place, differentiable
    graph.sum().backward()
    torch.testing.assert_close(graph.detach(), expected.detach(), rtol=0, atol=0)
    assert norm.weight.grad is not None


def test_rescaled_sum_overwrite():
    x, h = torch.randn(3, 4), torch.randn(3, 4)
    expected = (x + h) / 2**0.5
    torch.testing.assert_close(rescaled_sum(x, h.clone(), True), expected, rtol=0, atol=0)
    target = h.clone()
    out = rescaled_sum(x, target, True, overwrite_h=True)
    assert out.data_ptr() == target.data_ptr()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(rescaled_sum(x, h, False), x + h, rtol=0, atol=0)
