"""Layers shared by score_sde's NCSN++ (:mod:`medgen.networks.ncsnpp`) and DDPM U-Net (:mod:`medgen.networks.ddpm`).

The blocks keep the attribute names of yang-song/score_sde_pytorch (``GroupNorm_0``, ``Conv_0``, ``Dense_0``,
``NIN_0.W``, ``Conv2d_0``, ...), so official state dicts load into them without a key map, and they draw their
initial weights with the same calls in the same order, so ``torch.manual_seed(s)`` followed by construction gives the
official initial weights. The FIR resampling (StyleGAN2 ``upfirdn2d``) is written with plain PyTorch convolutions and
needs no compiled extension.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medgen.networks.checkpoint import (  # build_uninitialized lived here first; still importable from here
    apply_ordered_ema,
    build_uninitialized,
    load_state_dict_checked,
    read_checkpoint,
    strip_prefix,
)

__all__ = [
    "ACTIVATIONS",
    "get_activation",
    "default_init_",
    "conv1x1",
    "conv3x3",
    "default_linear",
    "group_norm",
    "norm_act",
    "geometric_sigmas",
    "sinusoidal_embedding",
    "GaussianFourierProjection",
    "NIN",
    "AttnBlock",
    "Combine",
    "fir_kernel_2d",
    "upfirdn2d",
    "upsample_2d",
    "downsample_2d",
    "transposed_conv_2d",
    "upsample_conv_2d",
    "upsample_conv_2d_same",
    "conv_downsample_2d",
    "naive_upsample_2d",
    "naive_downsample_2d",
    "FIRConv2d",
    "Upsample",
    "Downsample",
    "rescaled_sum",
    "ResnetBlockDDPM",
    "ResnetBlockBigGAN",
    "ScoreSdeUNet",
    "flatten_config",
    "config_value",
    "score_sde_kwargs",
    "build_uninitialized",
    "load_score_sde_checkpoint",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(negative_slope=0.2),
}


def get_activation(name: str) -> nn.Module:
    """Return the activation module score_sde's ``config.model.nonlinearity`` names.

    ``"swish"`` is ``nn.SiLU`` as in score_sde; TPDM's vendored copy writes ``x * sigmoid(x)`` instead, which differs
    from it by float rounding only (about 2.5e-6 on the outputs of a small NCSN++).

    Raises:
        ValueError: ``name`` is not one of ``swish``, ``silu``, ``elu``, ``relu``, ``lrelu``.
    """
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, got '{name}'.")
    return ACTIVATIONS[key]()


# ---------------------------------------------------------------------------------------------------------------------
# initialisation and basic layers
# ---------------------------------------------------------------------------------------------------------------------


def default_init_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Fill ``weight`` in place with DDPM's default initialiser (variance scaling, ``fan_avg``, uniform).

    The bound is ``sqrt(3 * scale / ((fan_in + fan_out) / 2))`` with fans computed from dims 1 (in) and 0 (out) times
    the receptive field. ``scale == 0`` means ``1e-10`` (a "zero" layer that still has a gradient direction). The
    random draw is the official ``torch.rand(shape) * 2 - 1`` so seeded construction matches score_sde.

    Args:
        weight: a tensor of rank >= 2.
        scale: the variance scale.

    Returns:
        ``weight``.
    """
    scale = 1e-10 if scale == 0 else scale
    shape = tuple(weight.shape)
    receptive_field = math.prod(shape) / shape[0] / shape[1]
    fan_in, fan_out = shape[1] * receptive_field, shape[0] * receptive_field
    variance = scale / ((fan_in + fan_out) / 2)
    with torch.no_grad():
        values = (torch.rand(*shape, dtype=torch.float32, device=weight.device) * 2.0 - 1.0) * np.sqrt(3 * variance)
        weight.copy_(values)
    return weight


def conv3x3(
    in_ch: int, out_ch: int, stride: int = 1, bias: bool = True, init_scale: float = 1.0, padding: int = 1
) -> nn.Conv2d:
    """3x3 ``nn.Conv2d`` with DDPM initialisation (default-init weight, zero bias)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=padding, bias=bias)
    default_init_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def conv1x1(in_ch: int, out_ch: int, bias: bool = True, init_scale: float = 1.0) -> nn.Conv2d:
    """1x1 ``nn.Conv2d`` with DDPM initialisation (default-init weight, zero bias)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=bias)
    default_init_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def default_linear(in_features: int, out_features: int) -> nn.Linear:
    """``nn.Linear`` with DDPM initialisation (default-init weight, zero bias)."""
    linear = nn.Linear(in_features, out_features)
    default_init_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def group_norm(channels: int, num_groups: int | None = None) -> nn.GroupNorm:
    """``nn.GroupNorm`` with eps 1e-6; ``num_groups=None`` is NCSN++'s ``min(channels // 4, 32)``."""
    groups = min(channels // 4, 32) if num_groups is None else num_groups
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6)


# the activations of ACTIVATIONS applied in place
_IN_PLACE: dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    nn.SiLU: lambda act, h: F.silu(h, inplace=True),
    nn.ReLU: lambda act, h: F.relu_(h),
    nn.ELU: lambda act, h: F.elu_(h, act.alpha),
    nn.LeakyReLU: lambda act, h: F.leaky_relu_(h, act.negative_slope),
}


def norm_act(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(norm(x))``; without a graph to record (no grad mode, or nothing requires grad) the activation
    overwrites the normalised tensor instead of allocating another one (the same values)."""
    h = norm(x)
    in_place = _IN_PLACE.get(type(act))
    if in_place is None or (torch.is_grad_enabled() and h.requires_grad):
        return act(h)
    return in_place(act, h)


def geometric_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> torch.Tensor:
    """score_sde's ``get_sigmas``: ``num_scales`` noise stds from ``sigma_max`` DOWN to ``sigma_min``, float64.

    This is the ``sigmas`` buffer stored in score_sde state dicts, computed with numpy float64 exactly as score_sde
    does (``np.exp(np.linspace(log(sigma_max), log(sigma_min), N))``) so a freshly built network holds the same bits
    as an official checkpoint. The sampling schedule of the same name,
    :func:`medgen.diffusion.schedules.geometric_sigmas`, uses ``torch.linspace`` and differs from it in the last bits
    (e.g. 1220 of 2000 entries, by up to 3e-13, for TPDM's config), so the buffer is not built from it.

    Args:
        sigma_min: smallest std.
        sigma_max: largest std.
        num_scales: number of noise levels.

    Returns:
        a float64 tensor of shape ``(num_scales,)``, geometric, descending.
    """
    values = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(num_scales)))
    return torch.from_numpy(values)


# ---------------------------------------------------------------------------------------------------------------------
# noise-level embeddings
# ---------------------------------------------------------------------------------------------------------------------


def sinusoidal_embedding(timesteps: torch.Tensor, embedding_dim: int, max_positions: int = 10000) -> torch.Tensor:
    """DDPM's sinusoidal embedding of a (float or integer) time label.

    ``freq_j = exp(-j * log(max_positions) / (half - 1))``, ``emb = [sin(t * freq), cos(t * freq)]``, zero-padded to an
    odd ``embedding_dim``. Computed in float32 as in score_sde.

    Args:
        timesteps: shape ``(B,)``; whatever the network was trained with (an integer step, a continuous time, or,
            in HFS-SDE, the marginal std).
        embedding_dim: the output width.
        max_positions: the period scale.

    Returns:
        float32 tensor of shape ``(B, embedding_dim)``.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(timesteps.shape)}.")
    half = embedding_dim // 2
    rate = math.log(max_positions) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=timesteps.device) * -rate)
    angles = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if embedding_dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar: ``[sin(2 pi x W), cos(2 pi x W)]``.

    ``W`` (``embedding_size`` values drawn ``N(0, scale^2)``) is a parameter with ``requires_grad=False`` as in
    score_sde: it is saved in the state dict but not trained and not part of the score_sde EMA list.

    Args:
        embedding_size: the number of frequencies (output width is twice this).
        scale: the std of the frequencies.
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``x`` of shape ``(B,)`` (NCSN++ passes ``log(sigma)``) into ``(B, 2 * embedding_size)``."""
        x_proj = x[:, None] * self.W[None, :] * 2 * np.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


# ---------------------------------------------------------------------------------------------------------------------
# attention and 1x1 layers
# ---------------------------------------------------------------------------------------------------------------------


class NIN(nn.Module):
    """Per-pixel linear map over channels ("network in network"): ``y[b, :, h, w] = x[b, :, h, w] @ W + b``.

    Parameters ``W`` of shape ``(in_dim, num_units)`` and ``b`` of shape ``(num_units,)`` (score_sde naming).
    """

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.W = nn.Parameter(default_init_(torch.empty(in_dim, num_units), init_scale))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim, H, W)`` to ``(B, num_units, H, W)``.

        Runs as a 1x1 convolution: the output keeps the input's memory layout (a product over permuted channels
        would return a channels-last view, which every following elementwise op then reads with large strides).
        """
        return F.conv2d(x, self.W.t()[:, :, None, None], self.b)


class AttnBlock(nn.Module):
    """Self-attention over the pixels of a feature map (DDPM), with a residual connection.

    ``out = (x + NIN_3(attention(GroupNorm_0(x))))``, divided by ``sqrt(2)`` when ``skip_rescale``.
    The DDPM U-Net uses ``num_groups=32, init_scale=0, skip_rescale=False``; NCSN++ (``AttnBlockpp``) uses
    ``num_groups=None`` (``min(C // 4, 32)``) with its config's ``init_scale``/``skip_rescale``.

    Args:
        channels: the feature channels C.
        skip_rescale: divide the residual sum by ``sqrt(2)``.
        init_scale: init scale of the output projection ``NIN_3``.
        num_groups: GroupNorm groups (``None``: ``min(C // 4, 32)``).
    """

    def __init__(
        self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0, num_groups: int | None = None
    ) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels, num_groups)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        batch, channels, height, width = x.shape
        h = self.GroupNorm_0(x)
        q = self.NIN_0(h).reshape(batch, channels, height * width)
        k = self.NIN_1(h).reshape(batch, channels, height * width)
        v = self.NIN_2(h).reshape(batch, channels, height * width)
        weights = torch.bmm(q.transpose(1, 2), k) * (int(channels) ** (-0.5))
        weights = F.softmax(weights, dim=-1)
        h = torch.bmm(v, weights.transpose(1, 2)).reshape(batch, channels, height, width)
        return rescaled_sum(x, self.NIN_3(h), self.skip_rescale, overwrite_h=True)


class Combine(nn.Module):
    """NCSN++ input-skip combiner: 1x1 ``Conv_0`` (``dim1 -> dim2``) of the pyramid, then ``cat`` or ``sum`` with ``y``.

    Args:
        dim1: channels of the pyramid input.
        dim2: channels of the main path.
        method: ``"cat"`` (output ``2 * dim2`` channels) or ``"sum"`` (output ``dim2``).
    """

    def __init__(self, dim1: int, dim2: int, method: str = "cat") -> None:
        super().__init__()
        if method not in ("cat", "sum"):
            raise ValueError(f"method must be 'cat' or 'sum', got '{method}'.")
        self.Conv_0 = conv1x1(dim1, dim2)
        self.method = method

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` (B, dim1, H, W) pyramid, ``y`` (B, dim2, H, W) -> (B, 2 * dim2 or dim2, H, W)."""
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


# ---------------------------------------------------------------------------------------------------------------------
# FIR resampling (StyleGAN2 upfirdn2d, pure PyTorch)
# ---------------------------------------------------------------------------------------------------------------------


def fir_kernel_2d(
    kernel: Sequence[float], gain: float = 1.0, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A 2D FIR kernel normalised to sum ``gain``: the outer product of a 1D kernel with itself (or a 2D kernel as is).

    Args:
        kernel: 1D taps (e.g. ``[1, 3, 3, 1]``) or a square 2D array.
        gain: the sum of the returned kernel.

    Returns:
        tensor of shape ``(K, K)``.
    """
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be 1D or square 2D, got shape {k.shape}.")
    k = k / np.sum(k) * gain
    return torch.as_tensor(k.astype(np.float32), device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _cached_fir_kernel(taps: tuple[float, ...], gain: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # one host-to-device copy per (taps, gain, device, dtype) instead of one per layer call; made outside inference
    # mode so the cached tensor can also serve forwards that build a graph
    with torch.inference_mode(False):
        return fir_kernel_2d(taps, gain, device=device, dtype=dtype)


def _resample_kernel(kernel: Sequence[float] | None, factor: int, gain: float, x: torch.Tensor) -> torch.Tensor:
    taps = [1] * factor if kernel is None else kernel
    if any(isinstance(tap, (Sequence, np.ndarray, torch.Tensor)) for tap in taps):  # a 2D kernel
        return fir_kernel_2d(taps, gain, device=x.device, dtype=x.dtype)
    # plain Python up to the cached kernel: no numpy array in the call, which torch.compile would have to break on
    return _cached_fir_kernel(tuple(float(tap) for tap in taps), float(gain), x.device, x.dtype)


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample every channel of ``x`` (StyleGAN2's ``upfirdn2d``).

    The filter is applied as a true convolution (kernel flipped), the same on H and W; negative pads crop.
    Resampling by one factor runs as ONE grouped convolution (one group per channel): a strided ``conv2d`` for
    ``up == 1``, a strided ``conv_transpose2d`` for ``down == 1`` (which never materialises the zero-inserted image
    and multiplies only the non-zero taps); the pads become the convolution's own padding where they fit it. Other
    combinations take the literal zero-insert / pad / filter / decimate route.

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(K, K)``.
        up: zero-insertion factor.
        down: decimation factor.
        pad: ``(before, after)`` padding of each spatial dim after upsampling.

    Returns:
        ``(B, C, (H * up + pad0 + pad1 - K) // down + 1, ...)``.
    """
    channels, size = x.shape[1], kernel.shape[0]
    before, after = pad
    # (C, 1, K, K): the same taps for every channel, contiguous so that the convolution backends take the fast path
    weight = kernel.to(dtype=x.dtype, device=x.device)[None, None].expand(channels, 1, *kernel.shape).contiguous()
    if up == 1:
        if before != after or before < 0:
            x, before = F.pad(x, (before, after, before, after)), 0
        return F.conv2d(x, torch.flip(weight, [2, 3]), stride=down, padding=before, groups=channels)
    # zero insertion + padding + true convolution == a transposed convolution with the unflipped kernel whose
    # padding crops (K - 1 - before) and whose output padding extends the far side to the requested size
    transposed_padding, output_padding = size - 1 - before, after - before + up - 1
    if down == 1 and transposed_padding >= 0 and 0 <= output_padding < up:
        return F.conv_transpose2d(
            x, weight, stride=up, padding=transposed_padding, output_padding=output_padding, groups=channels
        )
    batch, _, height, width = x.shape
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
    x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (before, after, before, after))
    return F.conv2d(x, torch.flip(weight, [2, 3]), stride=down, groups=channels)


def upsample_2d(
    x: torch.Tensor, kernel: Sequence[float] | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """FIR upsampling by ``factor``: ``(B, C, H, W)`` -> ``(B, C, H * factor, W * factor)``.

    ``kernel=None`` is ``[1] * factor`` (nearest neighbour); a constant image is scaled by ``gain``.
    """
    k = _resample_kernel(kernel, factor, gain * factor**2, x)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(
    x: torch.Tensor, kernel: Sequence[float] | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """FIR downsampling by ``factor``: ``(B, C, H, W)`` -> ``(B, C, H // factor, W // factor)``.

    ``kernel=None`` is ``[1] * factor`` (average pooling); a constant image is scaled by ``gain``.
    """
    k = _resample_kernel(kernel, factor, gain, x)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def transposed_conv_2d(x: torch.Tensor, weight: torch.Tensor, factor: int) -> torch.Tensor:
    """The "full" convolution of ``x`` zero-upsampled by ``factor`` with ``weight`` (no padding, no crop).

    Equals ``F.conv_transpose2d(x, torch.flip(weight, [2, 3]).transpose(0, 1), stride=factor)`` but runs as
    ``factor**2`` small convolutions at the input resolution, one per output phase, each with the taps of ``weight``
    that land on that phase (a 3x3 weight and ``factor=2`` give 2x2, 2x1, 1x2 and 1x1 convolutions): the
    multiply-adds of a stride-1 convolution at the input resolution, at the speed of ordinary convolutions.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, kh, kw)`` with ``kh, kw <= factor * H, factor * W``.
        factor: the upsampling factor.

    Returns:
        ``(B, C_out, R * factor, S * factor)`` with ``R = ceil(((H - 1) * factor + kh) / factor)`` (and ``S`` alike):
        the ``((H - 1) * factor + kh, (W - 1) * factor + kw)`` values of the transposed convolution followed by
        zeros up to the next multiple of ``factor``.
    """
    batch, _, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    rows, cols = -(-((height - 1) * factor + kh) // factor), -(-((width - 1) * factor + kw) // factor)
    out = x.new_zeros(batch, out_ch, rows, factor, cols, factor)
    for a in range(factor):
        for b in range(factor):
            # output row factor * i + a sums x[i - q] * weight[kh - 1 - a - factor * q]: a cross-correlation with
            # every factor-th tap from (kh - 1 - a) % factor on, padded so that i runs from 0
            taps = weight[:, :, (kh - 1 - a) % factor :: factor, (kw - 1 - b) % factor :: factor]
            if taps.numel():
                phase = F.conv2d(x, taps.contiguous(), padding=(taps.shape[2] - 1, taps.shape[3] - 1))
                out[:, :, : phase.shape[2], a, : phase.shape[3], b] = phase
    return out.reshape(batch, out_ch, rows * factor, cols * factor)


def upsample_conv_2d(
    x: torch.Tensor, weight: torch.Tensor, kernel: Sequence[float] | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """FIR upsampling fused with a "same" convolution (StyleGAN2 ``upsample_conv_2d``), padding applied once.

    The transposed convolution with the spatially flipped, in/out-swapped ``weight`` (:func:`transposed_conv_2d`)
    followed by the FIR filter: the convolution runs at the input resolution. Away from a border of ``k // 2`` pixels
    this equals ``F.conv2d(upsample_2d(x, kernel), weight, padding=k // 2)``; on that border it differs, because the
    separate convolution sees the zero padding of the upsampled image (:func:`upsample_conv_2d_same` gives the
    separate operations' values everywhere). score_sde writes the flip as ``w[..., ::-1, ::-1]``, which PyTorch
    rejects, so its FIR ``Upsample(with_conv=True)`` cannot run; this is the intended operation.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)``, odd ``k``.

    Returns:
        ``(B, C_out, H * factor, W * factor)``.
    """
    k = _resample_kernel(kernel, factor, gain * factor**2, x)
    taps, border = k.shape[0], weight.shape[-1] // 2
    # upsample_2d pads by `before` ahead of its filter; the transposed convolution already extends `border` ahead
    # (StyleGAN2's pads for factor 2; theirs give one pixel too few for odd factors)
    before = (taps - factor + 1) // 2 + factor - 1
    full_size = (x.shape[-1] - 1) * factor + 2 * border + 1
    x = transposed_conv_2d(x, weight, factor)
    # the trailing zeros transposed_conv_2d appends stand for that much of the far-side zero padding
    after = taps + factor - border - 2 - before - (x.shape[-1] - full_size)
    return upfirdn2d(x, k, pad=(before - border, after))


def upsample_conv_2d_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    kernel: Sequence[float] | None = None,
    factor: int = 2,
    gain: float = 1.0,
) -> torch.Tensor:
    """``F.conv2d(upsample_2d(x, kernel, factor, gain), weight, bias, padding=k // 2)`` with a ``factor**2`` times
    smaller convolution.

    :func:`upsample_conv_2d` runs the convolution at the input resolution and filters after it; it equals the
    separate operations except within ``k // 2`` pixels of the border, where the separate convolution reads the zero
    padding of the upsampled image and the fused one reads the upsampled image continued beyond its edge. Those
    continued values (a ``k // 2``-pixel frame, from strips of ``x``) times the weight taps that reach them are
    subtracted, so the result equals the separate operations to float rounding. Square images; odd ``k``.

    Args:
        x: ``(B, C_in, H, H)``.
        weight: ``(C_out, C_in, k, k)``.
        bias: ``(C_out,)`` or None.
        kernel: the 1D FIR taps (``None``: nearest, ``[1] * factor``).

    Returns:
        ``(B, C_out, H * factor, H * factor)``.
    """
    size, border = x.shape[-1], weight.shape[-1] // 2
    taps = factor if kernel is None else len(kernel)
    before, after = (taps - factor + 1) // 2 + factor - 1, (taps - factor) // 2  # upsample_2d's pads
    # the frame is upsample_2d's output continued `border` pixels beyond each edge: a strip of `rows` input rows
    # upsampled with the pads grown by `border` holds it (the first frame rows read the strip up to row
    # (taps - 2 - before) // factor; the last ones read back to row -ceil(before / factor) from the strip's end)
    rows = max(1, -(-before // factor), (taps - 2 - before) // factor + 1)
    if border == 0 or rows >= size or x.shape[-2] != size:
        return F.conv2d(upsample_2d(x, kernel, factor, gain), weight, bias, padding=border)
    y = upsample_conv_2d(x, weight, kernel, factor, gain)
    if taps <= factor:  # (e.g. nearest) the upsampled image continued beyond its edge is zero: nothing to correct
        return y if bias is None else y.add_(bias.reshape(1, -1, 1, 1))
    k = _resample_kernel(kernel, factor, gain * factor**2, x)
    pad = (before + border, after + border)

    def frame(strip: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(strip, k, up=factor, pad=pad)

    top = frame(x[:, :, :rows])[:, :, :border]  # (B, C_in, border, H * factor + 2 * border), corners included
    bottom = frame(x[:, :, -rows:])[:, :, -border:]
    left = frame(x[..., :rows])[:, :, border:-border, :border]  # (B, C_in, H * factor, border), no corners
    right = frame(x[..., -rows:])[:, :, border:-border, -border:]
    # output row i < border reads frame rows i - border + d for the taps d < border - i: the first `border` tap rows
    # over the frame followed by border - 1 zero rows
    y[:, :, :border] -= F.conv2d(F.pad(top, (0, 0, 0, border - 1)), weight[:, :, :border])
    y[:, :, -border:] -= F.conv2d(F.pad(bottom, (0, 0, border - 1, 0)), weight[:, :, -border:])
    y[..., :border] -= F.conv2d(F.pad(left, (0, border - 1, border, border)), weight[..., :border])
    y[..., -border:] -= F.conv2d(F.pad(right, (border - 1, 0, border, border)), weight[..., -border:])
    return y if bias is None else y.add_(bias.reshape(1, -1, 1, 1))


def conv_downsample_2d(
    x: torch.Tensor, weight: torch.Tensor, kernel: Sequence[float] | None = None, factor: int = 2, gain: float = 1.0
) -> torch.Tensor:
    """A convolution fused with FIR downsampling (StyleGAN2 ``conv_downsample_2d``), padding applied once.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)``, odd ``k``.

    Returns:
        ``(B, C_out, H // factor, W // factor)``.
    """
    k_conv = weight.shape[-1]
    k = _resample_kernel(kernel, factor, gain, x)
    p = (k.shape[0] - factor) + (k_conv - 1)
    x = upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, weight, stride=factor)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by pixel repetition: ``(B, C, H, W)`` -> ``(B, C, H * f, W * f)``."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling over ``factor x factor`` blocks: ``(B, C, H, W)`` -> ``(B, C, H // f, W // f)``."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height // factor, factor, width // factor, factor)
    return x.mean(dim=(3, 5))


class FIRConv2d(nn.Module):
    """A convolution with optional fused FIR up- or downsampling by 2 (score_sde ``up_or_down_sampling.Conv2d``).

    Parameters ``weight`` ``(out_ch, in_ch, k, k)`` (default init) and ``bias`` ``(out_ch,)``.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        kernel: the odd convolution size k.
        up: upsample by 2 (FIR) fused with the convolution.
        down: downsample by 2 (FIR) fused with the convolution.
        resample_kernel: the 1D FIR taps.
        use_bias: add a bias.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        up: bool = False,
        down: bool = False,
        resample_kernel: Sequence[float] = (1, 3, 3, 1),
        use_bias: bool = True,
    ) -> None:
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d cannot both upsample and downsample (up=True and down=True).")
        if kernel < 1 or kernel % 2 != 1:
            raise ValueError(f"kernel must be a positive odd int, got {kernel}.")
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, kernel, kernel))
        default_init_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_ch)) if use_bias else None
        self.up, self.down, self.kernel = up, down, kernel
        self.resample_kernel = tuple(resample_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, H', W')`` with H' = 2H (up), H/2 (down) or H."""
        if self.up:
            x = upsample_conv_2d(x, self.weight, self.resample_kernel)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, self.resample_kernel)
        else:
            x = F.conv2d(x, self.weight, padding=self.kernel // 2)
        if self.bias is not None:
            x = x + self.bias.reshape(1, -1, 1, 1)
        return x


class _Resample2x(nn.Module):
    """Resampling by 2 with an optional 3x3 convolution: ``Conv_0`` (plain) or ``Conv2d_0`` (FIR-fused)."""

    up: bool

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        if with_conv:
            if fir:
                self.Conv2d_0 = FIRConv2d(
                    in_ch, out_ch, kernel=3, up=self.up, down=not self.up, resample_kernel=fir_kernel
                )
            elif self.up:
                self.Conv_0 = conv3x3(in_ch, out_ch)
            else:
                self.Conv_0 = conv3x3(in_ch, out_ch, stride=2, padding=0)
        self.with_conv, self.fir, self.fir_kernel = with_conv, fir, tuple(fir_kernel)


class Upsample(_Resample2x):
    """Upsampling by 2: nearest (+ ``Conv_0`` 3x3) or FIR (+ fused ``Conv2d_0`` 3x3).

    Used by the DDPM U-Net (``fir=False``) and by NCSN++ (``layerspp.Upsample``).

    Args:
        in_ch: input channels.
        out_ch: output channels (default ``in_ch``; only with a convolution).
        with_conv: follow the upsampling with a 3x3 convolution.
        fir: FIR upsampling with ``fir_kernel`` instead of nearest neighbour.
        fir_kernel: the 1D FIR taps.
    """

    up = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, 2H, 2W)``."""
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir_kernel, factor=2)
        if self.with_conv:  # the values of Conv_0(nearest(x)) with the convolution at x's resolution
            return upsample_conv_2d_same(x, self.Conv_0.weight, self.Conv_0.bias)
        return F.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2), mode="nearest")


class Downsample(_Resample2x):
    """Downsampling by 2: strided ``Conv_0`` 3x3 (TF "SAME" emulated by right/bottom padding) or average pooling, or
    FIR (+ fused ``Conv2d_0`` 3x3).

    Args:
        in_ch: input channels.
        out_ch: output channels (default ``in_ch``; only with a convolution).
        with_conv: use a strided 3x3 convolution.
        fir: FIR downsampling with ``fir_kernel``.
        fir_kernel: the 1D FIR taps.
    """

    up = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_ch, H, W)`` -> ``(B, out_ch, H/2, W/2)``."""
        if self.fir:
            return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir_kernel, factor=2)
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


# ---------------------------------------------------------------------------------------------------------------------
# residual blocks
# ---------------------------------------------------------------------------------------------------------------------


def rescaled_sum(x: torch.Tensor, h: torch.Tensor, skip_rescale: bool, overwrite_h: bool = False) -> torch.Tensor:
    """``x + h``, divided by ``sqrt(2)`` when ``skip_rescale`` (score_sde's residual merge).

    ``overwrite_h`` writes the result into ``h`` (a temporary the caller no longer needs, e.g. a convolution's output)
    instead of a new tensor.
    """
    out = h.add_(x) if overwrite_h else x + h
    return out.div_(math.sqrt(2.0)) if skip_rescale else out


class _ResnetBlock(nn.Module):
    """The residual branch both score_sde blocks share: ``GroupNorm_0``, ``Conv_0``, ``Dense_0`` (with a time
    embedding), ``GroupNorm_1``, ``Dropout_0``, ``Conv_1``, registered in score_sde's order (the EMA list order)."""

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None,
        temb_dim: int | None,
        dropout: float,
        skip_rescale: bool,
        init_scale: float,
        num_groups: int | None,
    ) -> None:
        super().__init__()
        out_ch = out_ch if out_ch else in_ch
        self.GroupNorm_0 = group_norm(in_ch, num_groups)
        self.Conv_0 = conv3x3(in_ch, out_ch)
        if temb_dim is not None:
            self.Dense_0 = default_linear(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch, num_groups)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv3x3(out_ch, out_ch, init_scale=init_scale)
        self.act, self.in_ch, self.out_ch, self.skip_rescale = act, in_ch, out_ch, skip_rescale

    def _second_half(self, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        """Add ``Dense_0(act(temb))`` to the output of ``Conv_0``, then GN-act-dropout-``Conv_1``."""
        if temb is not None:  # in place: h is the fresh output of Conv_0, which its backward does not need
            h = h.add_(self.Dense_0(self.act(temb))[:, :, None, None])
        return self.Conv_1(self.Dropout_0(norm_act(self.GroupNorm_1, self.act, h)))



class ResnetBlockDDPM(_ResnetBlock):
    """DDPM residual block: GN-act-conv, + Dense(act(temb)), GN-act-dropout-conv, + shortcut.

    The DDPM U-Net uses ``num_groups=32, init_scale=0, skip_rescale=False`` (score_sde ``layers.ResnetBlockDDPM``);
    NCSN++ with ``resblock_type='ddpm'`` uses ``num_groups=None`` and its config's values (``ResnetBlockDDPMpp``).
    The shortcut (when channels change) is ``NIN_0`` or, with ``conv_shortcut``, a 3x3 ``Conv_2``.

    Args:
        act: the activation module.
        in_ch: input channels.
        out_ch: output channels (default ``in_ch``).
        temb_dim: width of the time embedding (``None``: no ``Dense_0``).
        conv_shortcut: 3x3 conv shortcut instead of NIN.
        dropout: dropout probability.
        skip_rescale: divide the residual sum by ``sqrt(2)``.
        init_scale: init scale of ``Conv_1``.
        num_groups: GroupNorm groups (``None``: ``min(C // 4, 32)``).
    """

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        conv_shortcut: bool = False,
        dropout: float = 0.1,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        num_groups: int | None = None,
    ) -> None:
        super().__init__(act, in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale, num_groups)
        if self.in_ch != self.out_ch:
            if conv_shortcut:
                self.Conv_2 = conv3x3(in_ch, self.out_ch)
            else:
                self.NIN_0 = NIN(in_ch, self.out_ch)
        self.conv_shortcut = conv_shortcut

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, in_ch, H, W)``, ``temb`` ``(B, temb_dim)`` or None -> ``(B, out_ch, H, W)``."""
        h = self._second_half(self.Conv_0(norm_act(self.GroupNorm_0, self.act, x)), temb)
        if self.in_ch != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return rescaled_sum(x, h, self.skip_rescale, overwrite_h=True)


class ResnetBlockBigGAN(_ResnetBlock):
    """BigGAN residual block of NCSN++ (``ResnetBlockBigGANpp``), optionally resampling by 2.

    ``h = GN-act -> [up/down] -> Conv_0 -> + Dense_0(act(temb)) -> GN-act-dropout -> Conv_1``; the shortcut is
    resampled the same way and passes through the 1x1 ``Conv_2`` when channels change or it resamples.

    Args:
        act: the activation module.
        in_ch: input channels.
        out_ch: output channels (default ``in_ch``).
        temb_dim: width of the time embedding (``None``: no ``Dense_0``).
        up: upsample by 2.
        down: downsample by 2.
        dropout: dropout probability.
        fir: FIR resampling with ``fir_kernel`` (else nearest / average pooling).
        fir_kernel: the 1D FIR taps.
        skip_rescale: divide the residual sum by ``sqrt(2)``.
        init_scale: init scale of ``Conv_1``.
    """

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.1,
        fir: bool = False,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        init_scale: float = 0.0,
    ) -> None:
        super().__init__(act, in_ch, out_ch, temb_dim, dropout, skip_rescale, init_scale, None)
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)
        if self.in_ch != self.out_ch or up or down:
            self.Conv_2 = conv1x1(in_ch, self.out_ch)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.fir_kernel, factor=2) if self.fir else naive_upsample_2d(x, factor=2)
        if self.down:
            return downsample_2d(x, self.fir_kernel, factor=2) if self.fir else naive_downsample_2d(x, factor=2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, in_ch, H, W)``, ``temb`` ``(B, temb_dim)`` or None -> ``(B, out_ch, H', W')`` (H' = 2H, H/2 or H)."""
        h = norm_act(self.GroupNorm_0, self.act, x)
        if self.up and self.fir:  # the same values as Conv_0(upsample_2d(h)), a quarter of the convolution's work
            h = upsample_conv_2d_same(h, self.Conv_0.weight, self.Conv_0.bias, self.fir_kernel)
        else:
            h = self.Conv_0(self._resample(h))
        h = self._second_half(h, temb)
        if self.up:
            # the 1x1 Conv_2 and the per-channel resampling commute (zero padding included), so the shortcut is
            # projected at the input's resolution, a quarter of the work; the bias is added after resampling
            x = self._resample(F.conv2d(x, self.Conv_2.weight)).add_(self.Conv_2.bias.reshape(1, -1, 1, 1))
        elif self.in_ch != self.out_ch or self.down:
            x = self.Conv_2(self._resample(x))
        return rescaled_sum(x, h, self.skip_rescale, overwrite_h=True)


# ---------------------------------------------------------------------------------------------------------------------
# what NCSN++ and the DDPM U-Net share
# ---------------------------------------------------------------------------------------------------------------------


class ScoreSdeUNet(nn.Module):
    """Base of score_sde's 2D U-Nets (:class:`~medgen.networks.ncsnpp.NCSNpp`, :class:`~medgen.networks.ddpm.DDPMUNet`).

    Holds what both share: the sizes, the activation ``act``, the float64 ``sigmas`` buffer of score_sde's state
    dicts, which levels have attention, and the check of a batch and its noise label. Subclasses build the flat
    ``all_modules`` list after calling ``super().__init__``.

    Whether a level has attention is decided from ``image_size`` at construction (score_sde compares the feature
    width with ``attn_resolutions`` at run time): inputs of another size keep the trained structure.

    Args:
        in_channels: image channels (score_sde ``data.num_channels``).
        image_size: the training image size (places attention: levels whose size is in ``attn_resolutions``).
        nf: base feature width.
        ch_mult: width multiplier per resolution level.
        num_res_blocks: residual blocks per level.
        attn_resolutions: feature-map sizes that get self-attention.
        nonlinearity: ``'swish'``, ``'silu'``, ``'elu'``, ``'relu'`` or ``'lrelu'``.
        sigma_min: smallest std of the ``sigmas`` buffer.
        sigma_max: largest std of the ``sigmas`` buffer.
        num_scales: length of the ``sigmas`` buffer.

    Raises:
        ValueError: a size does not fit.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        nf: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        nonlinearity: str,
        sigma_min: float,
        sigma_max: float,
        num_scales: int,
    ) -> None:
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"ch_mult must be a non-empty sequence of positive ints, got {ch_mult}.")
        if in_channels < 1 or nf < 4 or num_res_blocks < 0:
            raise ValueError(
                f"need in_channels >= 1, nf >= 4, num_res_blocks >= 0; got {in_channels}, {nf}, {num_res_blocks}."
            )
        if image_size % 2 ** (len(ch_mult) - 1) != 0:
            raise ValueError(f"image_size must be divisible by 2**(len(ch_mult)-1), got {image_size} for {ch_mult}.")
        self.act = get_activation(nonlinearity)
        self.register_buffer("sigmas", geometric_sigmas(sigma_min, sigma_max, num_scales))
        self.in_channels, self.image_size, self.nf = in_channels, image_size, nf
        self.ch_mult, self.num_res_blocks = ch_mult, num_res_blocks
        self.num_resolutions = len(ch_mult)
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.all_resolutions = [image_size // (2**i) for i in range(self.num_resolutions)]
        self.level_has_attention = [r in self.attn_resolutions for r in self.all_resolutions]

    def check_input(self, x: torch.Tensor, label: torch.Tensor | float, label_name: str) -> torch.Tensor:
        """Check the image batch ``x`` and return the noise label as a ``(B,)`` tensor on ``x.device``.

        Args:
            x: ``(B, in_channels, H, W)`` with H and W multiples of ``2 ** (len(ch_mult) - 1)``.
            label: a scalar or ``(B,)`` noise label (sigma, std or step, see the subclass).
            label_name: the argument name used in error messages.

        Raises:
            ValueError: a shape does not fit.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels, got shape {tuple(x.shape)}.")
        multiple = 2 ** (self.num_resolutions - 1)
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(f"x height and width must be multiples of {multiple}, got shape {tuple(x.shape)}.")
        label = torch.as_tensor(label, device=x.device)
        if label.ndim == 0:
            label = label.expand(x.shape[0])
        if label.shape != (x.shape[0],):
            raise ValueError(
                f"{label_name} must be a scalar or have shape ({x.shape[0]},), got {tuple(label.shape)}."
            )
        return label

    def divide_by_sigma(self, h: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """``h / sigma`` per sample: ``h`` ``(B, C, H, W)``, ``sigmas`` ``(B,)`` (cast to ``h``'s dtype)."""
        return h / sigmas.to(dtype=h.dtype).reshape(h.shape[0], 1, 1, 1)


# ---------------------------------------------------------------------------------------------------------------------
# score_sde configs
# ---------------------------------------------------------------------------------------------------------------------


def flatten_config(config: Any) -> dict[str, Any]:
    """Flatten a score_sde config to ``{"model.nf": 128, "data.image_size": 256, ...}``.

    Accepts a flat mapping with dotted keys (as stored in the parity files), a nested mapping
    (``{"model": {"nf": 128}, ...}``) or an ``ml_collections.ConfigDict`` (anything with ``to_dict()``).

    Raises:
        TypeError: ``config`` is none of these.
    """
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of score_sde config fields, got {type(config).__name__}.")
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if hasattr(value, "to_dict") and not isinstance(value, Mapping):
            value = value.to_dict()
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in flatten_config(value).items()})
        else:
            flat[str(key)] = value
    return flat


_MISSING = object()


def config_value(flat: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    """``flat[key]``, or ``default`` when given; a missing required field is a ``ValueError`` naming it."""
    if key in flat:
        return flat[key]
    if default is _MISSING:
        raise ValueError(f"config has no field '{key}' (needed to build the network).")
    return default


# data/model fields every score_sde U-Net reads, with the conversion applied to each (None: passed as it is)
_SHARED_FIELDS: dict[str, Callable[[Any], Any] | None] = {
    "data.num_channels": int,
    "data.image_size": int,
    "data.centered": bool,
    "model.nf": int,
    "model.ch_mult": tuple,
    "model.num_res_blocks": int,
    "model.attn_resolutions": tuple,
    "model.dropout": float,
    "model.resamp_with_conv": bool,
    "model.conditional": bool,
    "model.scale_by_sigma": bool,
    "model.nonlinearity": None,
    "model.sigma_min": float,
    "model.sigma_max": float,
    "model.num_scales": int,
}
_RENAMED = {"data.num_channels": "in_channels"}


def score_sde_kwargs(
    flat: Mapping[str, Any],
    network: str,
    model_name: str,
    model_fields: Mapping[str, Callable[[Any], Any] | None] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Constructor keyword arguments of a score_sde network from a flattened score_sde config.

    Reads ``data.{num_channels (-> in_channels), image_size, centered}`` and ``model.{nf, ch_mult, num_res_blocks,
    attn_resolutions, dropout, resamp_with_conv, conditional, scale_by_sigma, nonlinearity, sigma_min, sigma_max,
    num_scales}`` plus ``model_fields``; each argument is named after the last part of its field.

    Args:
        flat: the config flattened by :func:`flatten_config`.
        network: the class name, for error messages.
        model_name: the required ``model.name`` (checked when present).
        model_fields: further ``model.<field>`` names read, mapped to a conversion (None: passed as it is).
        defaults: values of fields that may be absent, by field name (``{"model.fourier_scale": 16.0}``).

    Raises:
        ValueError: a required field is missing, ``model.normalization`` is not ``GroupNorm`` or ``model.name`` is
            not ``model_name``.
    """
    if str(config_value(flat, "model.normalization", "GroupNorm")).lower() != "groupnorm":
        raise ValueError(f"model.normalization must be 'GroupNorm', got {flat['model.normalization']!r}.")
    name = config_value(flat, "model.name", model_name)
    if name != model_name:
        raise ValueError(f"model.name must be {model_name!r} for {network}, got {name!r}.")
    fields = {**_SHARED_FIELDS, **{f"model.{k}": v for k, v in (model_fields or {}).items()}}
    defaults = defaults or {}
    kwargs = {}
    for field, convert in fields.items():
        value = config_value(flat, field, *([defaults[field]] if field in defaults else []))
        kwargs[_RENAMED.get(field, field.split(".")[-1])] = value if convert is None else convert(value)
    return kwargs


def load_score_sde_checkpoint(
    network: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any], use_ema: bool
) -> nn.Module:
    """Load a score_sde checkpoint into ``network`` (an ``NCSNpp`` or a ``DDPMUNet``).

    Accepted layouts:

    - score_sde's training checkpoint ``{'model', 'ema', 'optimizer', 'step'}``: ``model`` is the state dict of the
      ``DataParallel``-wrapped network (keys prefixed ``module.``), ``ema`` is
      ``{'decay', 'num_updates', 'shadow_params'}`` with ``shadow_params`` the list of trainable parameters in
      ``parameters()`` order. ``model`` gives every entry (including frozen ones such as the Fourier ``W`` and the
      ``sigmas`` buffer); with ``use_ema`` the trainable parameters are then overwritten by ``shadow_params``,
      matched by order, as score_sde's ``ema.copy_to`` does.
    - a bare state dict, with or without the ``module.`` prefix: loaded as it is (``use_ema`` does not apply).

    Args:
        network: the freshly built network.
        checkpoint: a path to a ``.pth``/``.pt`` file or an already loaded mapping.
        use_ema: take the EMA weights of a training checkpoint.

    Returns:
        ``network``, loaded.

    Raises:
        ValueError: ``use_ema=True`` but the training checkpoint has no ``ema`` entry, or ``ema`` is malformed.
        CheckpointMismatchError: keys, shapes or the EMA list do not match the network.
    """
    content = read_checkpoint(checkpoint)
    if isinstance(content.get("model"), Mapping):
        load_state_dict_checked(network, strip_prefix(content["model"], "module."))
        if use_ema:
            ema = content.get("ema")
            if ema is None:
                raise ValueError(
                    "use_ema=True but the checkpoint has no 'ema' entry (keys: "
                    f"{sorted(content)}); pass use_ema=False to use the raw 'model' weights."
                )
            if not isinstance(ema, Mapping) or not isinstance(ema.get("shadow_params"), (list, tuple)):
                raise ValueError("checkpoint 'ema' must be a dict with a 'shadow_params' list (score_sde EMA layout).")
            apply_ordered_ema(network, list(ema["shadow_params"]))
        return network
    return load_state_dict_checked(network, strip_prefix(content, "module."))
