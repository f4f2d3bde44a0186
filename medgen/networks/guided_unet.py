"""The guided-diffusion U-Net in 2D/3D as used by WDM and cWDM, and its loader for official checkpoints."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medgen.networks.checkpoint import build_uninitialized, load_state_dict_checked, read_checkpoint, strip_prefix
from medgen.networks.guided_layers import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    TimestepMLP,
    Upsample,
    batch_timesteps,
    check_input_shape,
    check_int_arguments,
    conv_nd,
    output_head,
    resample_factors,
)

__all__ = [
    "BlockMaker",
    "GuidedUNet",
    "build_decoder",
    "build_encoder",
    "guided_unet_from_official",
    "official_flat_state_dict",
    "official_unet_kwargs",
    "parse_channel_mult",
]

# official UNetModel arguments that do not change the computation in medgen (see GuidedUNet.from_config)
_IGNORED_OFFICIAL_KEYS = frozenset({"image_size", "use_fp16", "decoder_device_thresh"})


def parse_channel_mult(channel_mult: str | Sequence[float], allow_fractions: bool = False) -> tuple[float, ...]:
    """``"1,2,2,4,4"`` or ``(1, 2, 2, 4, 4)`` -> ``(1, 2, 2, 4, 4)``.

    Args:
        channel_mult: comma-separated integers, or a sequence of numbers.
        allow_fractions: also accept positive non-integer multipliers in a sequence (the official SDM ``0.5`` for
            image size 512); otherwise every entry must be an integer >= 1.

    Raises:
        ValueError: empty, or an entry is not a positive integer (or positive number with ``allow_fractions``).
    """
    if isinstance(channel_mult, str):
        try:
            mult = tuple(int(m) for m in channel_mult.strip("()[] ").split(",") if m.strip())
        except ValueError as err:
            raise ValueError(f"channel_mult must be comma-separated integers, got '{channel_mult}'.") from err
    else:
        mult = tuple(channel_mult)

    def valid(m: Any) -> bool:
        if isinstance(m, bool):
            return False
        if isinstance(m, int):
            return m >= 1
        return allow_fractions and isinstance(m, float) and m > 0

    if not mult or not all(valid(m) for m in mult):
        kind = "numbers" if allow_fractions else "integers"
        raise ValueError(f"channel_mult must be a non-empty sequence of positive {kind}, got {channel_mult!r}.")
    return mult


@dataclass(frozen=True)
class BlockMaker:
    """How a guided-diffusion U-Net makes its blocks from its options (shared by :class:`GuidedUNet` and
    :class:`~medgen.networks.sdm_unet.SDMUNet`); see :class:`ResBlock` and :class:`AttentionBlock` for the fields."""

    emb_channels: int
    spatial_dims: int
    dropout: float
    use_scale_shift_norm: bool
    resample_factor: tuple[int, ...]
    num_groups: int
    use_checkpoint: bool
    num_head_channels: int
    use_new_attention_order: bool
    resblock_updown: bool
    conv_resample: bool

    def res_block(self, in_channels: int, out_channels: int, resample: str | None = None) -> ResBlock:
        """A :class:`ResBlock` ``in_channels -> out_channels``, resampling with ``"up"``/``"down"``."""
        return ResBlock(in_channels, self.emb_channels, out_channels, self.spatial_dims, self.dropout,
                        self.use_scale_shift_norm, resample, self.resample_factor, self.num_groups,
                        self.use_checkpoint)

    def attention(self, channels: int, num_heads: int) -> AttentionBlock:
        """An :class:`AttentionBlock` (``num_heads`` is used when ``num_head_channels == -1``)."""
        return AttentionBlock(channels, num_heads, self.num_head_channels, not self.use_new_attention_order,
                              self.num_groups, self.use_checkpoint)

    def down(self, channels: int) -> nn.Module:
        """The downsampling step: a pooling ResBlock with ``resblock_updown``, else a strided conv or pooling."""
        if self.resblock_updown:
            return self.res_block(channels, channels, "down")
        return Downsample(channels, self.spatial_dims, self.conv_resample, channels, self.resample_factor)

    def up(self, channels: int, res_block: Callable[..., nn.Module] | None = None) -> nn.Module:
        """The upsampling step: ``res_block(channels, channels, "up")`` (default :meth:`res_block`) with
        ``resblock_updown``, else nearest upsampling (+ conv with ``conv_resample``)."""
        if self.resblock_updown:
            return (res_block or self.res_block)(channels, channels, "up")
        return Upsample(channels, self.spatial_dims, self.conv_resample, channels, self.resample_factor)


def build_encoder(
    stem: nn.Module,
    stem_channels: int,
    widths: Sequence[int],
    num_res_blocks: int,
    attention_rates: Sequence[int],
    res_block: Callable[[int, int], nn.Module],
    attention: Callable[[int], nn.Module],
    downsample: Callable[[int], nn.Module],
) -> tuple[nn.ModuleList, list[int], int, int]:
    """guided-diffusion's ``input_blocks``: the stem, then per level ``num_res_blocks`` residual blocks (each followed
    by attention where the downsample rate is in ``attention_rates``) and, except at the last level, a downsampling.

    Layers are built in the official order (seeded construction draws the official initial weights).

    Args:
        stem: the input convolution (to ``stem_channels``).
        stem_channels: output channels of ``stem``.
        widths: output channels of the residual blocks of each level.
        num_res_blocks: residual blocks per level.
        attention_rates: downsample rates (1, 2, 4, ...) whose blocks get attention.
        res_block: ``(in_channels, out_channels) -> block``.
        attention: ``channels -> attention block``.
        downsample: ``channels -> downsampling layer``.

    Returns:
        ``(input_blocks, skip_channels, channels, rate)``: the blocks, the output channels of each (the decoder's skip
        widths), and the channels and downsample rate at the bottom.
    """
    input_blocks = nn.ModuleList([TimestepEmbedSequential(stem)])
    skip_channels = [stem_channels]
    ch, rate = stem_channels, 1
    for level, width in enumerate(widths):
        for _ in range(num_res_blocks):
            layers: list[nn.Module] = [res_block(ch, width)]
            ch = width
            if rate in attention_rates:
                layers.append(attention(ch))
            input_blocks.append(TimestepEmbedSequential(*layers))
            skip_channels.append(ch)
        if level != len(widths) - 1:
            input_blocks.append(TimestepEmbedSequential(downsample(ch)))
            skip_channels.append(ch)
            rate *= 2
    return input_blocks, skip_channels, ch, rate


def build_decoder(
    channels: int,
    skip_channels: list[int],
    widths: Sequence[int],
    num_res_blocks: int,
    attention_rates: Sequence[int],
    rate: int,
    res_block: Callable[[int, int], nn.Module],
    attention: Callable[[int], nn.Module],
    upsample: Callable[[int], nn.Module],
    additive_skips: bool = False,
) -> tuple[nn.ModuleList, int]:
    """guided-diffusion's ``output_blocks``: per level (reversed) ``num_res_blocks + 1`` residual blocks, each taking
    one skip (+ attention where the rate is in ``attention_rates``), the last of each level but level 0 followed by an
    upsampling.

    With ``additive_skips=False`` a block takes ``cat([h, skip])`` and outputs the level's width; with
    ``additive_skips=True`` (WDM) it takes ``(h + skip) / 2`` and outputs the width of the NEXT skip it will be
    averaged with.

    Args:
        channels: channels at the bottom (output of the middle block).
        skip_channels: the encoder's skip widths (see :func:`build_encoder`); consumed.
        widths: residual-block widths per level (encoder order).
        num_res_blocks: encoder residual blocks per level (the decoder has one more).
        attention_rates: downsample rates whose blocks get attention.
        rate: the downsample rate at the bottom.
        res_block: ``(in_channels, out_channels) -> block``.
        attention: ``channels -> attention block``.
        upsample: ``channels -> upsampling layer``.
        additive_skips: average skips instead of concatenating them.

    Returns:
        ``(output_blocks, channels)``: the blocks and the channels they output.
    """
    output_blocks = nn.ModuleList()
    ch = channels
    for level, width in reversed(list(enumerate(widths))):
        for i in range(num_res_blocks + 1):
            skip_ch = skip_channels.pop()
            if additive_skips:
                block_in, block_out = ch, skip_channels[-1] if skip_channels else skip_ch
            else:
                block_in, block_out = ch + skip_ch, width
            layers: list[nn.Module] = [res_block(block_in, block_out)]
            ch = block_out
            if rate in attention_rates:
                layers.append(attention(ch))
            if level and i == num_res_blocks:
                layers.append(upsample(ch))
                rate //= 2
            output_blocks.append(TimestepEmbedSequential(*layers))
    return output_blocks, ch


def official_flat_state_dict(checkpoint: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Read a guided-diffusion checkpoint: a flat ``name -> tensor`` state dict (WDM/cWDM ``.pt`` files, SDM
    ``model*.pt`` and ``ema_<rate>_*.pt`` files), with or without the ``module.`` prefix of ``DataParallel``.

    Raises:
        TypeError: the content is not a flat mapping of tensors.
    """
    content = read_checkpoint(checkpoint)
    not_tensors = [k for k, v in content.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise TypeError(
            "checkpoint must be a flat guided-diffusion state dict (name -> tensor); entries that are not tensors: "
            + ", ".join(map(str, not_tensors[:10]))
        )
    if content and all(k.startswith("module.") for k in content):
        return strip_prefix(content, "module.")
    return dict(content)


class GuidedUNet(nn.Module):
    """guided-diffusion ``UNetModel`` (Dhariwal & Nichol 2021) for 1D/2D/3D with the WDM/cWDM options.

    Layout (parameter names as the official code): ``time_embed`` (Linear-SiLU-Linear, width 4 * model_channels),
    optional ``label_emb``; ``input_blocks`` = input conv, then per level ``num_res_blocks`` :class:`ResBlock` (each
    followed by an :class:`AttentionBlock` where the downsample rate is in ``attention_resolutions``) and, except
    at the last level, a downsampling step (a ResBlock with average pooling when ``resblock_updown``, else a strided
    conv or pooling); ``middle_block`` = ResBlock, [attention if ``bottleneck_attention``], ResBlock;
    ``output_blocks`` = per level (reversed) ``num_res_blocks + 1`` ResBlocks (+ attention), the last of each level
    except level 0 followed by an upsampling step; ``out`` = GroupNorm-SiLU-zero-initialised conv.

    Skips: with ``additive_skips=False`` (cWDM, guided-diffusion) each decoder block takes
    ``cat([h, skip])``; with ``additive_skips=True`` (WDM) it takes the average ``(h + skip) / 2`` and every decoder
    ResBlock outputs the channel count of the NEXT skip it will be averaged with (WDM's ``mid_ch`` rule), so
    ``model_channels * channel_mult`` widths shift by one block in the decoder.

    Args:
        spatial_dims: 1, 2 or 3 (official ``dims``).
        in_channels: input channels (WDM 8 wavelet subbands; cWDM 32 = 8 noisy + 24 condition subbands).
        out_channels: output channels (before ``learn_sigma`` doubling).
        model_channels: base width C.
        channel_mult: width multiplier per level (``len`` = number of levels).
        num_res_blocks: ResBlocks per level in the encoder (the decoder has one more).
        attention_resolutions: downsample rates (1, 2, 4, ...) at which attention is applied; WDM uses none. The
            official ``create_model`` converts resolutions to these rates as ``image_size // resolution``.
        dropout: dropout probability inside ResBlocks.
        conv_resample: without ``resblock_updown``, resample with (strided) convolutions instead of pooling/nearest.
        num_classes: if given, class-conditional: ``forward`` needs labels ``y``.
        num_heads: attention heads (used when ``num_head_channels == -1``).
        num_head_channels: channels per attention head, -1 to use ``num_heads``.
        num_heads_upsample: heads in the decoder attention, -1 for ``num_heads``.
        use_scale_shift_norm: FiLM-like timestep conditioning in ResBlocks.
        resblock_updown: resample inside ResBlocks (WDM default True).
        use_new_attention_order: split q/k/v before heads (``QKVAttention``) instead of the legacy order.
        num_groups: GroupNorm groups (WDM 32).
        bottleneck_attention: attention between the two middle ResBlocks.
        additive_skips: average skips instead of concatenating (WDM True, cWDM False).
        resample_factor: per-axis (or one) integer factor of every down/up step; official ``resample_2d=True``
            with ``dims=3`` is ``(1, 2, 2)``; WDM uses 2.
        learn_sigma: predict a variance too: the output has ``2 * out_channels`` channels.
        use_checkpoint: gradient checkpointing of ResBlocks and attention while training.

    Example::

        net = GuidedUNet(spatial_dims=3, in_channels=8, out_channels=8, model_channels=64,
                         channel_mult=(1, 2, 2, 4, 4), num_res_blocks=2, additive_skips=True,
                         bottleneck_attention=False)
        x0_pred = net(x_t, t)   # x_t (B, 8, 64, 64, 64) wavelet coefficients, t (B,) integer timesteps
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] | str = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        conv_resample: bool = True,
        num_classes: int | None = None,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = True,
        use_new_attention_order: bool = False,
        num_groups: int = 32,
        bottleneck_attention: bool = True,
        additive_skips: bool = False,
        resample_factor: int | Sequence[int] = 2,
        learn_sigma: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        check_int_arguments({"in_channels": (in_channels, 1), "out_channels": (out_channels, 1),
                             "model_channels": (model_channels, 1), "num_res_blocks": (num_res_blocks, 0)})
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive integer, got {num_classes!r}.")
        mult = parse_channel_mult(channel_mult)
        factor = resample_factors(resample_factor, spatial_dims)
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels * (2 if learn_sigma else 1)
        self.model_channels = model_channels
        self.channel_mult = mult
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.num_classes = num_classes
        self.additive_skips = additive_skips
        self.resample_factor = factor

        emb_dim = 4 * model_channels
        self.time_embed = TimestepMLP(model_channels, emb_dim)
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        blocks = BlockMaker(emb_dim, spatial_dims, dropout, use_scale_shift_norm, factor, num_groups, use_checkpoint,
                            num_head_channels, use_new_attention_order, resblock_updown, conv_resample)
        widths = [m * model_channels for m in mult]
        stem = conv_nd(spatial_dims, in_channels, model_channels, 3, padding=1)
        self.input_blocks, skip_channels, ch, rate = build_encoder(
            stem, model_channels, widths, num_res_blocks, self.attention_resolutions, blocks.res_block,
            lambda c: blocks.attention(c, num_heads), blocks.down,
        )
        middle: list[nn.Module] = [blocks.res_block(ch, ch)]  # built in the official order (seeded init)
        if bottleneck_attention:
            middle.append(blocks.attention(ch, num_heads))
        self.middle_block = TimestepEmbedSequential(*middle, blocks.res_block(ch, ch))
        self.output_blocks, ch = build_decoder(
            ch, skip_channels, widths, num_res_blocks, self.attention_resolutions, rate, blocks.res_block,
            lambda c: blocks.attention(c, heads_up), blocks.up, additive_skips=additive_skips,
        )
        self.out = output_head(spatial_dims, ch, self.out_channels, num_groups)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GuidedUNet:
        """Build from the official ``UNetModel`` keyword arguments (as stored in the parity files' ``config``).

        ``dims`` -> ``spatial_dims``; ``resample_2d`` (official default True) -> ``resample_factor`` ``(1, 2, 2)``
        for 3D, else 2; ``out_channels`` is taken as the final width (the official ``create_model`` has already
        doubled it for ``learn_sigma``). ``image_size`` (only used by ``create_model`` to turn attention resolutions
        into rates), ``use_fp16`` (medgen uses autocast instead of converting weights) and ``decoder_device_thresh``
        (the official two-GPU split) do not change the computation and are ignored.

        Raises:
            ValueError: unknown keys, or invalid values.
        """
        return cls(**official_unet_kwargs(config, allowed_extra=()))

    @property
    def input_multiple(self) -> tuple[int, ...]:
        """Per spatial axis, the size every input must be a multiple of: ``resample_factor ** (levels - 1)``."""
        return tuple(int(f) ** (len(self.channel_mult) - 1) for f in self.resample_factor)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S), every spatial size divisible by ``resample_factor ** (levels - 1)``.
            timesteps: (B,) or scalar diffusion step (integer index ``0..T-1`` for WDM/cWDM).
            y: (B,) integer class labels, required iff ``num_classes`` was given.

        Returns:
            (B, out_channels, *S) (``2 * out_channels`` with ``learn_sigma``).
        """
        check_input_shape(x, self.in_channels, self.spatial_dims, self.resample_factor, len(self.channel_mult) - 1)
        timesteps = batch_timesteps(timesteps, x)
        emb = self.time_embed(timesteps)
        if self.num_classes is not None:
            if y is None or y.shape != (x.shape[0],):
                raise ValueError(f"y must be (B,) = ({x.shape[0]},) class labels for a class-conditional model, got "
                                 f"{None if y is None else tuple(y.shape)}.")
            emb = emb + self.label_emb(y)
        elif y is not None:
            raise ValueError("y was given but the model is not class-conditional (num_classes=None).")

        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            skip = skips.pop()
            h = (h + skip) / 2 if self.additive_skips else torch.cat([h, skip], dim=1)
            h = block(h, emb)
        return self.out(h)


def official_unet_kwargs(config: Mapping[str, Any], allowed_extra: Sequence[str]) -> dict[str, Any]:
    """Official ``UNetModel``/``WavUNetModel`` keyword arguments -> :class:`GuidedUNet` keyword arguments.

    Args:
        config: the official keyword arguments (see :meth:`GuidedUNet.from_config`).
        allowed_extra: further official keys the caller handles itself (left out of the result).

    Raises:
        TypeError: ``config`` is not a mapping.
        ValueError: unknown or missing keys.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of official UNetModel arguments, got {type(config).__name__}.")
    known = {
        "in_channels", "model_channels", "out_channels", "num_res_blocks", "attention_resolutions", "dropout",
        "channel_mult", "conv_resample", "dims", "num_classes", "use_checkpoint", "num_heads", "num_head_channels",
        "num_heads_upsample", "use_scale_shift_norm", "resblock_updown", "use_new_attention_order", "num_groups",
        "bottleneck_attention", "resample_2d", "additive_skips",
    }
    unknown = sorted(set(config) - known - _IGNORED_OFFICIAL_KEYS - set(allowed_extra))
    if unknown:
        raise ValueError(f"config has keys that are not official UNetModel arguments: {unknown}.")
    missing = sorted({"in_channels", "model_channels", "out_channels", "num_res_blocks"} - set(config))
    if missing:
        raise ValueError(f"config misses required official UNetModel arguments: {missing}.")
    dims = int(config.get("dims", 2))
    kwargs = {k: config[k] for k in known - {"dims", "resample_2d", "attention_resolutions"} if k in config}
    kwargs["spatial_dims"] = dims
    kwargs["attention_resolutions"] = tuple(config.get("attention_resolutions", ()))
    kwargs["resample_factor"] = (1, 2, 2) if dims == 3 and config.get("resample_2d", True) else 2
    kwargs.setdefault("resblock_updown", False)  # the official UNetModel constructor default
    kwargs.setdefault("channel_mult", (1, 2, 4, 8))
    return kwargs


def guided_unet_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Mapping[str, Any], **options: Any
) -> GuidedUNet:
    """Load a WDM/cWDM (or other guided-diffusion ``UNetModel``) checkpoint into a :class:`GuidedUNet`.

    Args:
        checkpoint: path to the official flat state dict (e.g. WDM ``brats_unet_128_1200k.pt``), or the dict; a
            ``module.`` prefix is removed; EMA files of guided-diffusion/SDM are flat state dicts too.
        config: official ``UNetModel`` keyword arguments (see :meth:`GuidedUNet.from_config`).
        options: none are accepted.

    Returns:
        the loaded network (CPU, float32).

    Raises:
        CheckpointMismatchError: keys or shapes do not match the configuration.
    """
    if options:
        raise TypeError(f"guided_unet_from_official takes no options, got {sorted(options)}.")
    network = build_uninitialized(lambda: GuidedUNet.from_config(config))  # checks the config before reading the file
    return load_state_dict_checked(network, official_flat_state_dict(checkpoint))
