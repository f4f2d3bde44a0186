"""WDM's wavelet U-Net (``WavUNetModel`` with ``use_freq=True``): Haar-DWT downsampling, IDWT upsampling with the
high-frequency subbands as skips, a wavelet input pyramid; and its loader for official checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medgen.networks.checkpoint import build_uninitialized, load_state_dict_checked
from medgen.networks.guided_layers import (
    ResBlock,
    TimestepEmbedSequential,
    TimestepMLP,
    batch_timesteps,
    check_input_shape,
    check_int_arguments,
    checkpointed,
    conv_nd,
    output_head,
)
from medgen.networks.guided_unet import official_flat_state_dict, official_unet_kwargs, parse_channel_mult
from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d

__all__ = [
    "WaveletDownResBlock",
    "WaveletUpResBlock",
    "WaveletPyramidDownsample",
    "WavUNet",
    "wavunet_from_official",
]

# WDM scales the LLL band by 1/3 inside the network, as in its diffusion space
_LLL_SCALE = 3.0


class _WaveletResBlock(ResBlock):
    """A 3D :class:`ResBlock` with equal input and output channels whose resampling is a Haar (I)DWT in ``forward``.

    Args:
        channels: input = output channels C.
        emb_channels: width of the timestep embedding.
        dropout, use_scale_shift_norm, num_groups, use_checkpoint: as in :class:`ResBlock`.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        num_groups: int = 32,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__(channels, emb_channels, channels, 3, dropout, use_scale_shift_norm, None, 2, num_groups,
                         use_checkpoint)


class WaveletDownResBlock(_WaveletResBlock):
    """ResBlock that halves every axis with the 3D Haar DWT and returns the high subbands of its main branch.

    ``h = in_layers(x)`` (full resolution), then ``h -> LLL(h) / 3`` and ``x -> LLL(x) / 3``; the output is
    ``skip_connection(x) + out_layers(h + emb)``. The seven high subbands of ``h`` (unscaled) are returned as the
    skip features of the decoder's :class:`WaveletUpResBlock`.

    Args:
        channels: input = output channels C.
        emb_channels: width of the timestep embedding.
        dropout, use_scale_shift_norm, num_groups, use_checkpoint: as in :class:`ResBlock`.
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, C, D, H, W) with even D, H, W.
            emb: (B, E).

        Returns:
            ``(out, highs)``: out (B, C, D/2, H/2, W/2); highs (B, 7C, D/2, H/2, W/2), subband-major
            ``[LLH (C), LHL (C), ..., HHH (C)]``.
        """
        return checkpointed(self._forward, self.use_checkpoint, x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        h = haar_dwt3d(self.in_layers(x), lll_scale=_LLL_SCALE, padding_mode="error", layout="subband")
        x_low = haar_dwt3d(x, lll_scale=_LLL_SCALE, padding_mode="error", layout="subband")[:, :c]
        return self.skip_connection(x_low) + self.apply_embedding(h[:, :c], emb), h[:, c:]


class WaveletUpResBlock(_WaveletResBlock):
    """ResBlock that doubles every axis with the inverse 3D Haar DWT, taking the high subbands from the encoder.

    ``h = in_layers(x)``, then ``h -> IDWT(3 h, highs)`` and ``x -> IDWT(3 x, highs)`` (the SAME encoder highs for
    both branches, as in WDM); the output is ``skip_connection(x) + out_layers(h + emb)``.

    Args:
        channels: input = output channels C (equal to the channels of the encoder level).
        emb_channels, dropout, use_scale_shift_norm, num_groups, use_checkpoint: as in :class:`ResBlock`.
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, highs: torch.Tensor
    ) -> torch.Tensor:
        """Args:
            x: (B, C, d, h, w) low-band features.
            emb: (B, E).
            highs: (B, 7C, d, h, w) the high subbands returned by the matching :class:`WaveletDownResBlock`.

        Returns:
            (B, C, 2d, 2h, 2w).
        """
        return checkpointed(self._forward, self.use_checkpoint, x, emb, highs)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor, highs: torch.Tensor) -> torch.Tensor:
        h = haar_idwt3d(torch.cat([self.in_layers(x), highs], dim=1), lll_scale=_LLL_SCALE, layout="subband")
        x = haar_idwt3d(torch.cat([x, highs], dim=1), lll_scale=_LLL_SCALE, layout="subband")
        return self.skip_connection(x) + self.apply_embedding(h, emb)


class WaveletPyramidDownsample(nn.Module):
    """One step of WDM's wavelet input pyramid (official ``WaveletDownsample``): ``conv(DWT(x) / 3)``.

    All eight subbands (subband-major) are divided by 3 and mixed by a 3x3x3 convolution ``conv``.

    Args:
        in_channels: channels C of the pyramid level.
        out_channels: channels of the U-Net level it is added to.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_nd(3, 8 * in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, out_channels, D/2, H/2, W/2)."""
        return self.conv(haar_dwt3d(x, padding_mode="error", layout="subband") / _LLL_SCALE)


class WavUNet(nn.Module):
    """WDM's wavelet U-Net (Friedrich et al. 2024, ``WavUNetModel`` with ``use_freq=True``), 3D only.

    Encoder: ``input_blocks.0`` = conv3 (in -> C); per level ``num_res_blocks`` :class:`ResBlock` (to
    ``C * channel_mult[level]``), a :class:`WaveletDownResBlock` (at EVERY level, the last included) whose high
    subbands are the level's skip, and a :class:`WaveletPyramidDownsample` of the input pyramid (the input volume,
    then the previous pyramid output) whose output is added to the features and becomes the next pyramid level.
    ``middle_block`` = two ResBlocks. Decoder: per level (reversed) ``num_res_blocks`` ResBlocks and a
    :class:`WaveletUpResBlock` consuming the level's high subbands; ``out_res`` = ``num_res_blocks`` ResBlocks;
    ``out`` = GroupNorm-SiLU-conv3 (NOT zero-initialised, as in the official code).

    Tied decoder blocks (``official_tied_decoder=True``, needed for official checkpoints): the official decoder
    builds each level's up step as ``output_blocks[k + 1] = [R, Up]`` where ``R`` is the SAME module object as the
    level's last ResBlock ``output_blocks[k] = [R]`` (the layer list is not reset). ``R`` is therefore applied twice
    in a row with shared weights, and the state dict holds both ``output_blocks.k.0.*`` and ``output_blocks.k+1.0.*``,
    two keys aliasing one tensor (parameters are counted once). With ``num_res_blocks=1`` the repeated ResBlock
    receives its own output; the official model then crashes (GroupNorm channel mismatch) unless all
    ``channel_mult`` entries are equal, so this class raises ``ValueError`` for that configuration.
    ``official_tied_decoder=False`` builds the evidently intended decoder instead: ``output_blocks[k + 1] = [Up]``,
    each ResBlock applied once (state dicts of the two modes are not interchangeable).

    Args:
        in_channels: input channels (WDM: 8 wavelet subbands).
        out_channels: output channels (before ``learn_sigma`` doubling).
        model_channels: base width C.
        channel_mult: width multiplier per level.
        num_res_blocks: ResBlocks per level (>= 1).
        dropout: dropout probability inside ResBlocks.
        use_scale_shift_norm: FiLM-like timestep conditioning.
        num_groups: GroupNorm groups.
        learn_sigma: output ``2 * out_channels`` channels.
        use_checkpoint: gradient checkpointing of the blocks while training.
        official_tied_decoder: reproduce the official tied decoder blocks (see above).
    """

    def __init__(
        self,
        in_channels: int = 8,
        out_channels: int = 8,
        model_channels: int = 64,
        channel_mult: Sequence[int] | str = (1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        num_groups: int = 32,
        learn_sigma: bool = False,
        use_checkpoint: bool = False,
        official_tied_decoder: bool = True,
    ) -> None:
        super().__init__()
        check_int_arguments({"in_channels": (in_channels, 1), "out_channels": (out_channels, 1),
                             "model_channels": (model_channels, 1), "num_res_blocks": (num_res_blocks, 1)})
        mult = parse_channel_mult(channel_mult)
        if official_tied_decoder and num_res_blocks == 1 and len(set(mult)) > 1:
            raise ValueError(
                "num_res_blocks=1 with different channel_mult entries cannot be built with official_tied_decoder=True: "
                "the official decoder applies each level's last ResBlock twice, which needs equal input and output "
                "channels (the official model crashes here); use num_res_blocks >= 2 or official_tied_decoder=False."
            )
        self.in_channels = in_channels
        self.out_channels = out_channels * (2 if learn_sigma else 1)
        self.model_channels = model_channels
        self.channel_mult = mult
        self.num_res_blocks = num_res_blocks
        self.official_tied_decoder = official_tied_decoder

        emb_dim = 4 * model_channels
        block_options = dict(dropout=dropout, use_scale_shift_norm=use_scale_shift_norm, num_groups=num_groups,
                             use_checkpoint=use_checkpoint)

        def res_block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb_dim, cout, spatial_dims=3, **block_options)

        self.time_embed = TimestepMLP(model_channels, emb_dim)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(conv_nd(3, in_channels, model_channels, 3, padding=1))]
        )
        ch, pyramid_ch = model_channels, in_channels
        for m in mult:
            for _ in range(num_res_blocks):
                self.input_blocks.append(TimestepEmbedSequential(res_block(ch, m * model_channels)))
                ch = m * model_channels
            self.input_blocks.append(TimestepEmbedSequential(WaveletDownResBlock(ch, emb_dim, **block_options)))
            self.input_blocks.append(TimestepEmbedSequential(WaveletPyramidDownsample(pyramid_ch, ch)))
            pyramid_ch = ch

        self.middle_block = TimestepEmbedSequential(res_block(ch, ch), res_block(ch, ch))

        self.output_blocks = nn.ModuleList()
        for m in reversed(mult):
            for _ in range(num_res_blocks):
                last = res_block(ch, m * model_channels)
                ch = m * model_channels
                self.output_blocks.append(TimestepEmbedSequential(last))
            up = WaveletUpResBlock(ch, emb_dim, **block_options)
            self.output_blocks.append(TimestepEmbedSequential(last, up) if official_tied_decoder
                                      else TimestepEmbedSequential(up))

        self.out_res = nn.ModuleList(TimestepEmbedSequential(res_block(ch, ch)) for _ in range(num_res_blocks))
        self.out = output_head(3, ch, self.out_channels, num_groups, zero_init=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WavUNet:
        """Build from the official ``WavUNetModel`` keyword arguments (as stored in the parity files' ``config``).

        Only what the official model can run is accepted: ``use_freq=True``, ``dims=3``, ``resblock_updown=True``,
        ``additive_skips=False``, no attention (``attention_resolutions`` empty, ``bottleneck_attention=False``) and
        ``progressive_input='residual'`` (the official code crashes otherwise). ``num_classes`` is ignored like in
        the official model (it builds no label embedding); ``conv_resample``, ``resample_2d`` and the attention head
        settings have no effect with wavelet resampling; ``image_size``, ``use_fp16`` and
        ``decoder_device_thresh`` are ignored as in :meth:`GuidedUNet.from_config`.

        Raises:
            ValueError: unknown keys or a configuration the official model cannot run.
        """
        kwargs = official_unet_kwargs(config, allowed_extra=("use_freq", "progressive_input"))
        required = {
            "use_freq": (config.get("use_freq", False), True),
            "dims": (kwargs["spatial_dims"], 3),
            "resblock_updown": (kwargs["resblock_updown"], True),
            "additive_skips": (kwargs.get("additive_skips", False), False),
            "attention_resolutions": (tuple(kwargs["attention_resolutions"]), ()),
            "bottleneck_attention": (kwargs.get("bottleneck_attention", True), False),
            "progressive_input": (config.get("progressive_input", "residual"), "residual"),
        }
        bad = {k: got for k, (got, want) in required.items() if got != want}
        if bad:
            raise ValueError(
                f"WavUNet supports only {({k: want for k, (_, want) in required.items()})}; config has {bad}."
            )
        keep = ("in_channels", "out_channels", "model_channels", "channel_mult", "num_res_blocks", "dropout",
                "use_scale_shift_norm", "num_groups", "use_checkpoint")
        return cls(**{k: kwargs[k] for k in keep if k in kwargs})

    @property
    def input_multiple(self) -> tuple[int, int, int]:
        """Per spatial axis, the size every input must be a multiple of: ``2 ** levels`` (one Haar step per level)."""
        return (2 ** len(self.channel_mult),) * 3

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, in_channels, D, H, W), every size divisible by ``2 ** len(channel_mult)``.
            timesteps: (B,) or scalar integer diffusion step ``0..T-1``.

        Returns:
            (B, out_channels, D, H, W) (``2 * out_channels`` with ``learn_sigma``).
        """
        check_input_shape(x, self.in_channels, 3, (2, 2, 2), len(self.channel_mult))
        timesteps = batch_timesteps(timesteps, x)
        emb = self.time_embed(timesteps)

        highs_per_level = []
        h = pyramid = x
        for block in self.input_blocks:
            layer = block[0]
            if isinstance(layer, WaveletDownResBlock):
                h, highs = layer(h, emb)
                highs_per_level.append(highs)
            elif isinstance(layer, WaveletPyramidDownsample):
                h = pyramid = layer(pyramid) + h
            else:
                h = block(h, emb)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            for layer in block:
                h = layer(h, emb, highs_per_level.pop()) if isinstance(layer, WaveletUpResBlock) else layer(h, emb)
        for block in self.out_res:
            h = block(h, emb)
        return self.out(h)


def wavunet_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Mapping[str, Any], **options: Any
) -> WavUNet:
    """Load a WDM WavU-Net checkpoint (flat state dict, e.g. ``ours_wnet_128``) into a :class:`WavUNet`.

    The official state dict holds the tied decoder ResBlocks under two keys each (see :class:`WavUNet`); both must
    be present and hold the same values.

    Args:
        checkpoint: path to the official flat state dict or the dict (an optional ``module.`` prefix is removed).
        config: official ``WavUNetModel`` keyword arguments (see :meth:`WavUNet.from_config`).
        options: none are accepted.

    Returns:
        the loaded network (CPU, float32).

    Raises:
        CheckpointMismatchError: keys or shapes do not match the configuration.
        ValueError: the two keys of a tied block hold different values.
    """
    if options:
        raise TypeError(f"wavunet_from_official takes no options, got {sorted(options)}.")
    network = build_uninitialized(lambda: WavUNet.from_config(config))  # checks the config before reading the file
    state = official_flat_state_dict(checkpoint)
    _check_tied_entries(network, state)
    return load_state_dict_checked(network, state)


def _check_tied_entries(net: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Keys of one shared tensor must carry equal values (else loading would silently keep only the last)."""
    by_tensor: dict[int, list[str]] = {}
    for name, tensor in net.state_dict(keep_vars=True).items():
        by_tensor.setdefault(id(tensor), []).append(name)
    for names in by_tensor.values():
        present = [n for n in names if n in state]
        if len(present) > 1 and any(
            state[n].shape != state[present[0]].shape or not torch.equal(state[n], state[present[0]])
            for n in present[1:]
        ):
            raise ValueError(f"checkpoint entries {present} belong to one tied decoder block but differ.")
