"""Building blocks of the guided-diffusion U-Net (Dhariwal & Nichol 2021) in 1D/2D/3D.

These are the pieces :class:`medgen.networks.guided_unet.GuidedUNet` (WDM, cWDM) and
:class:`medgen.networks.wavunet.WavUNet` are made of, written so other guided-diffusion descendants (e.g. the CTCA
SDM U-Net with SPADE normalisation and anisotropic resampling) can be assembled from them:

- :func:`timestep_embedding`: the sinusoidal embedding of integer timesteps, ``[cos, sin]`` order.
- :class:`GroupNorm32`: group normalisation computed in float32 for half-precision inputs.
- :class:`Upsample` / :class:`Downsample`: resampling by a per-axis integer factor (``(2, 2, 1)`` resamples only
  the first two spatial axes), optionally with a convolution.
- :class:`ResBlock`: the residual block with timestep embedding (additive or scale-shift), optionally resampling.
- :class:`AttentionBlock` with :class:`QKVAttention`: self-attention over all spatial positions.
- :class:`TimestepBlock` / :class:`ConditionedTimestepBlock` / :class:`TimestepEmbedSequential`: a container that
  feeds the timestep embedding (and an optional extra condition, e.g. a label map) to the layers that take them.
- :class:`TimestepMLP` (``time_embed``) and :func:`output_head` (``out``): the two ends of every U-Net.
- :func:`resample_layer`, :func:`embedding_layers`, :func:`skip_layer`, :func:`project_embedding`,
  :func:`checkpointed`: the parts residual blocks with other norms (SDM's SPADE, WDM's wavelets) share with
  :class:`ResBlock`; :func:`check_input_shape`, :func:`batch_timesteps`: the input checks of every U-Net.

Parameter names follow guided-diffusion exactly (``in_layers.0``, ``emb_layers.1``, ``out_layers.3``,
``skip_connection``, ``norm``, ``qkv``, ``proj_out``, ``op``, ``conv``) so official state dicts load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from monai.utils import ensure_tuple_rep
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

__all__ = [
    "timestep_embedding",
    "zero_module",
    "conv_nd",
    "GroupNorm32",
    "check_int_arguments",
    "resample_factors",
    "check_input_shape",
    "batch_timesteps",
    "Upsample",
    "Downsample",
    "resample_layer",
    "embedding_layers",
    "skip_layer",
    "project_embedding",
    "checkpointed",
    "TimestepMLP",
    "output_head",
    "TimestepBlock",
    "ConditionedTimestepBlock",
    "TimestepEmbedSequential",
    "ResBlock",
    "QKVAttention",
    "AttentionBlock",
]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep embedding of guided-diffusion: ``[cos(t f_0..f_{h-1}), sin(t f_0..f_{h-1})]``.

    ``f_i = max_period ** (-i / h)`` with ``h = dim // 2``; an odd ``dim`` gets one trailing zero. Computed in
    float32 like the official code.

    Args:
        timesteps: shape (B,), the diffusion step of each sample (an integer index ``0..T-1`` for WDM; fractional
            values are accepted).
        dim: the embedding width.
        max_period: the longest period, 10000 in guided-diffusion.

    Returns:
        float32 tensor of shape (B, dim) on ``timesteps.device``.

    Raises:
        ValueError: ``timesteps`` is not one-dimensional.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got shape {tuple(timesteps.shape)}.")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps[:, None].float() * torch.exp(exponent)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero (in place) and return it."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def conv_nd(spatial_dims: int, *args: Any, **kwargs: Any) -> nn.Module:
    """``nn.Conv1d``/``Conv2d``/``Conv3d`` chosen by ``spatial_dims``; other arguments as for the torch class."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
    return Conv[Conv.CONV, spatial_dims](*args, **kwargs)


class GroupNorm32(nn.GroupNorm):
    """``nn.GroupNorm`` that normalises half-precision inputs in float32 and returns the input dtype.

    float32 and float64 inputs are normalised in their own precision (the official class always casts to float32,
    which is the same for float32 and would fail for float64 parameters).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *S), in the dtype of ``x``."""
        if x.dtype in (torch.float16, torch.bfloat16):
            return super().forward(x.float()).type(x.dtype)
        return super().forward(x)


def check_int_arguments(minimums: Mapping[str, tuple[Any, int]]) -> None:
    """Check constructor arguments that must be integers (not bools) of at least a minimum.

    Args:
        minimums: ``{name: (value, minimum)}``.

    Raises:
        ValueError: naming the first argument that is not an integer ``>= minimum``, and what it got.
    """
    for name, (value, low) in minimums.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def resample_factors(factor: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """Per-axis integer resampling factors, e.g. ``2 -> (2, 2, 2)``, ``(2, 2, 1)`` kept.

    Raises:
        ValueError: the length does not match ``spatial_dims`` or a factor is not a positive integer.
    """
    try:
        factors = ensure_tuple_rep(factor, spatial_dims)
    except ValueError as err:
        raise ValueError(f"resampling factor must be one integer or {spatial_dims} integers, got {factor}.") from err
    if any(not isinstance(f, int) or isinstance(f, bool) or f < 1 for f in factors):
        raise ValueError(f"resampling factor must be positive integers (one per spatial axis), got {factor}.")
    return tuple(factors)


def check_input_shape(
    x: Any, channels: int, spatial_dims: int, factor: Sequence[int], resampling_steps: int
) -> None:
    """Check that ``x`` is (B, channels, *S) with every S[i] divisible by ``factor[i] ** resampling_steps``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong number of dimensions or channels, or indivisible spatial size.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != spatial_dims + 2 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (B, {channels}, {', '.join(['S'] * spatial_dims)}), got {tuple(x.shape)}.")
    multiple = [f**resampling_steps for f in factor]
    if any(s % m for s, m in zip(x.shape[2:], multiple)):
        raise ValueError(
            f"x spatial shape {tuple(x.shape[2:])} must be divisible by {tuple(multiple)} "
            f"({resampling_steps} resampling steps of {tuple(factor)})."
        )


def batch_timesteps(timesteps: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Return ``timesteps`` as a (B,) tensor on ``x.device`` (a scalar is repeated for the batch of ``x``).

    Raises:
        ValueError: neither a scalar nor of shape (B,).
    """
    timesteps = torch.as_tensor(timesteps, device=x.device)
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(x.shape[0])
    if timesteps.shape != (x.shape[0],):
        raise ValueError(
            f"timesteps must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(timesteps.shape)}."
        )
    return timesteps


class _Resample(nn.Module):
    """Resampling by an integer factor per spatial axis; a channel change needs a convolution."""

    def __init__(
        self, channels: int, spatial_dims: int, use_conv: bool, out_channels: int | None, factor: int | Sequence[int]
    ) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if not use_conv and self.out_channels != channels:
            raise ValueError(f"out_channels ({self.out_channels}) != channels ({channels}) requires use_conv=True.")
        self.factor = resample_factors(factor, spatial_dims)


class Upsample(_Resample):
    """Nearest-neighbour upsampling by an integer factor per spatial axis, optionally followed by a 3x3 convolution.

    Args:
        channels: input channels C.
        spatial_dims: 1, 2 or 3.
        use_conv: apply a 3x3(x3) convolution (``conv``) after upsampling.
        out_channels: output channels (only with ``use_conv``), default C.
        factor: one integer or one per spatial axis, e.g. ``(1, 2, 2)`` (official ``resample_2d``: only the last two
            axes) or ``(2, 2, 1)`` (CTCA SDM: only the first two axes).

    Raises:
        ValueError: ``out_channels`` differs from ``channels`` without ``use_conv``, or a bad ``factor``.
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        use_conv: bool = False,
        out_channels: int | None = None,
        factor: int | Sequence[int] = 2,
    ) -> None:
        super().__init__(channels, spatial_dims, use_conv, out_channels, factor)
        self.conv = conv_nd(spatial_dims, channels, self.out_channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, out_channels, *(S * factor))."""
        size = [s * f for s, f in zip(x.shape[2:], self.factor)]
        x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class Downsample(_Resample):
    """Downsampling by an integer factor per spatial axis: strided 3x3 convolution (``op``) or average pooling.

    Args:
        channels: input channels C.
        spatial_dims: 1, 2 or 3.
        use_conv: strided convolution (kernel 3, padding 1, stride ``factor``) instead of average pooling.
        out_channels: output channels (only with ``use_conv``), default C.
        factor: one integer or one per spatial axis (see :class:`Upsample`).

    Raises:
        ValueError: ``out_channels`` differs from ``channels`` without ``use_conv``, or a bad ``factor``.
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        use_conv: bool = False,
        out_channels: int | None = None,
        factor: int | Sequence[int] = 2,
    ) -> None:
        super().__init__(channels, spatial_dims, use_conv, out_channels, factor)
        if use_conv:
            self.op = conv_nd(spatial_dims, channels, self.out_channels, 3, stride=self.factor, padding=1)
        else:
            self.op = Pool[Pool.AVG, spatial_dims](kernel_size=self.factor, stride=self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, out_channels, *(S // factor))."""
        return self.op(x)


def resample_layer(
    resample: str | None, channels: int, spatial_dims: int, factor: int | Sequence[int]
) -> Upsample | Downsample | None:
    """The parameter-free resampling of a residual block: ``None``, ``"up"`` (nearest) or ``"down"`` (average pool).

    Raises:
        ValueError: ``resample`` is none of these.
    """
    if resample is None:
        return None
    if resample == "up":
        return Upsample(channels, spatial_dims, factor=factor)
    if resample == "down":
        return Downsample(channels, spatial_dims, factor=factor)
    raise ValueError(f"resample must be None, 'up' or 'down', got {resample!r}.")


def embedding_layers(emb_channels: int, out_channels: int, use_scale_shift_norm: bool) -> nn.Sequential:
    """A residual block's ``emb_layers``: SiLU, then Linear to ``out_channels`` (twice that for scale and shift)."""
    return nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))


def skip_layer(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """A residual block's ``skip_connection``: identity, or a 1x1 convolution when the channels change."""
    if out_channels == in_channels:
        return nn.Identity()
    return conv_nd(spatial_dims, in_channels, out_channels, 1)


def project_embedding(emb_layers: nn.Module, emb: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``emb_layers(emb)`` (B, E') in ``h``'s dtype, reshaped to (B, E', 1, ..., 1) to broadcast over ``h``'s space."""
    emb_out = emb_layers(emb).type(h.dtype)
    return emb_out.reshape(*emb_out.shape, *([1] * (h.ndim - 2)))


def checkpointed(function: Callable[..., Any], enabled: bool, *args: Any) -> Any:
    """``function(*args)``, recomputing its activations in the backward pass when ``enabled`` and grads are on."""
    if enabled and torch.is_grad_enabled():
        return activation_checkpoint(function, *args, use_reentrant=False)
    return function(*args)


class TimestepMLP(nn.Sequential):
    """guided-diffusion's ``time_embed``: the sinusoidal :func:`timestep_embedding`, then Linear-SiLU-Linear.

    Args:
        model_channels: width C of the sinusoidal embedding.
        emb_channels: width E of the output (4C in guided-diffusion).
    """

    def __init__(self, model_channels: int, emb_channels: int) -> None:
        super().__init__(nn.Linear(model_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels))
        self.model_channels = model_channels

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B,) timesteps -> (B, E) embedding in the dtype of the layers."""
        return super().forward(timestep_embedding(timesteps, self.model_channels).to(self[0].weight.dtype))


def output_head(
    spatial_dims: int, channels: int, out_channels: int, num_groups: int, zero_init: bool = True
) -> nn.Sequential:
    """The ``out`` layers of a guided-diffusion U-Net: GroupNorm-SiLU-3x3 conv, zero-initialised by default."""
    conv = conv_nd(spatial_dims, channels, out_channels, 3, padding=1)
    return nn.Sequential(GroupNorm32(num_groups, channels), nn.SiLU(), zero_module(conv) if zero_init else conv)


class TimestepBlock(nn.Module):
    """A layer whose ``forward(x, emb)`` also takes the timestep embedding ``emb`` of shape (B, E)."""


class ConditionedTimestepBlock(TimestepBlock):
    """A layer whose ``forward(x, emb, cond)`` also takes an extra condition (e.g. a label map for SPADE norms)."""


class TimestepEmbedSequential(nn.Sequential):
    """``nn.Sequential`` that passes ``emb`` to :class:`TimestepBlock` layers and ``cond`` to
    :class:`ConditionedTimestepBlock` layers; other layers get only the features."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: Any = None) -> torch.Tensor:  # type: ignore[override]
        """Run the layers on ``x`` (B, C, *S) with the embedding ``emb`` (B, E) and the optional condition ``cond``."""
        for layer in self:
            if isinstance(layer, ConditionedTimestepBlock):
                x = layer(x, emb, cond)
            elif isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            else:
                x = layer(x)
        return x


class ResBlock(TimestepBlock):
    """guided-diffusion residual block with timestep embedding, optionally up- or downsampling.

    ``in_layers`` = GroupNorm-SiLU-conv3, ``emb_layers`` = SiLU-Linear, ``out_layers`` = GroupNorm-SiLU-Dropout-
    zero-initialised conv3, ``skip_connection`` = identity or 1x1 conv. The embedding is added after ``in_layers``
    (or, with ``use_scale_shift_norm``, applied as ``norm(h) * (1 + scale) + shift``). With ``resample="down"``
    (average pooling) or ``"up"`` (nearest), both the features after the in-norm/SiLU and the residual input are
    resampled before the in-conv, as in guided-diffusion's ``resblock_updown``.

    Args:
        in_channels: input channels.
        emb_channels: width E of the timestep embedding.
        out_channels: output channels, default ``in_channels``.
        spatial_dims: 1, 2 or 3.
        dropout: dropout probability before the last conv.
        use_scale_shift_norm: FiLM-like conditioning (``emb_layers`` outputs 2 * out_channels).
        resample: ``None``, ``"up"`` or ``"down"``.
        resample_factor: integer or per-axis factors of the resampling (see :class:`Upsample`).
        num_groups: groups of both GroupNorms.
        use_checkpoint: recompute activations in the backward pass (saves memory while training).
    """

    def __init__(
        self,
        in_channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        spatial_dims: int = 2,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        resample: str | None = None,
        resample_factor: int | Sequence[int] = 2,
        num_groups: int = 32,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            GroupNorm32(num_groups, in_channels),
            nn.SiLU(),
            conv_nd(spatial_dims, in_channels, self.out_channels, 3, padding=1),
        )
        self.resample = resample_layer(resample, in_channels, spatial_dims, resample_factor)
        self.emb_layers = embedding_layers(emb_channels, self.out_channels, use_scale_shift_norm)
        self.out_layers = nn.Sequential(
            GroupNorm32(num_groups, self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(spatial_dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        self.skip_connection = skip_layer(spatial_dims, in_channels, self.out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S) features.
            emb: (B, E) timestep embedding.

        Returns:
            (B, out_channels, *S') with S' = S, S * factor (up) or S // factor (down).
        """
        return checkpointed(self._forward, self.use_checkpoint, x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample is not None:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.resample(h))
            x = self.resample(x)
        else:
            h = self.in_layers(x)
        return self.skip_connection(x) + self.apply_embedding(h, emb)

    def apply_embedding(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Inject the timestep embedding into ``h`` (B, out_channels, *S) and run ``out_layers``."""
        emb_out = project_embedding(self.emb_layers, emb, h)
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            return self.out_layers[1:](h)
        return self.out_layers(h + emb_out)


class QKVAttention(nn.Module):
    """Multi-head scaled dot-product attention over a fused ``qkv`` tensor.

    Args:
        num_heads: number of heads H.
        legacy_order: ``True`` (guided-diffusion's ``QKVAttentionLegacy``, the default): channels are laid out as
            [head][q, k, v][c]; ``False`` (``QKVAttention``, ``use_new_attention_order``): [q, k, v][head][c].
    """

    def __init__(self, num_heads: int, legacy_order: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.legacy_order = legacy_order

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        """Args:
            qkv: (B, 3 * H * c, T) queries, keys and values of T positions.

        Returns:
            (B, H * c, T).
        """
        batch, width, length = qkv.shape
        if width % (3 * self.num_heads):
            raise ValueError(f"qkv width {width} is not divisible by 3 * num_heads ({3 * self.num_heads}).")
        ch = width // (3 * self.num_heads)
        if self.legacy_order:
            q, k, v = qkv.reshape(batch * self.num_heads, 3 * ch, length).split(ch, dim=1)
        else:
            q, k, v = (t.reshape(batch * self.num_heads, ch, length) for t in qkv.chunk(3, dim=1))
        scale = 1 / math.sqrt(math.sqrt(ch))  # scaling q and k separately is more stable in float16
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        return torch.einsum("bts,bcs->bct", weight, v).reshape(batch, -1, length)


class AttentionBlock(nn.Module):
    """Residual self-attention over all spatial positions: ``x + proj_out(attention(qkv(norm(x))))``.

    Args:
        channels: feature channels C.
        num_heads: number of heads (used when ``num_head_channels == -1``).
        num_head_channels: channels per head; if not -1 the number of heads is ``C // num_head_channels``.
        legacy_order: see :class:`QKVAttention` (official ``use_new_attention_order`` is ``not legacy_order``).
        num_groups: groups of the GroupNorm.
        use_checkpoint: recompute activations in the backward pass.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        legacy_order: bool = True,
        num_groups: int = 32,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            heads = num_heads
        else:
            if num_head_channels < 1 or channels % num_head_channels:
                raise ValueError(f"channels ({channels}) must be divisible by num_head_channels ({num_head_channels}).")
            heads = channels // num_head_channels
        if heads < 1 or channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by the number of heads ({heads}).")
        self.channels = channels
        self.num_heads = heads
        self.use_checkpoint = use_checkpoint
        self.norm = GroupNorm32(num_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.attention = QKVAttention(heads, legacy_order=legacy_order)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *S)."""
        return checkpointed(self._forward, self.use_checkpoint, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        x = x.reshape(batch, channels, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(batch, channels, *spatial)
