"""The semantic diffusion model (SDM) 3D U-Net of the CTCA patched SDM, its conditioning inputs and checkpoint loader.

SDM (Wang et al. 2022, arXiv 2207.00050) conditions a guided-diffusion U-Net on a semantic label map by replacing
the group norms of the middle and decoder residual blocks with spatially-adaptive (SPADE) norms; the encoder sees
only the noisy image. The CTCA variant (Manubolgia/semantic-diffusion-model, branches ``3d_sdm`` for the low-res
64^3 model and ``3d_sdm_hr_sliceref`` for the high-res 128x128x16 slab model) makes it 3D with anisotropic
resampling (only the first two spatial axes are halved/doubled; the slab axis ``z`` never is) and, for the slab
model, adds a z-position channel to the label map and a second SPADE branch fed with a low-res reference volume.

- :class:`SPADEGroupNorm`, :class:`SDMResBlock`, :class:`SDMUNet`: the network, with official parameter names.
- :func:`sdm_unet_from_official`: load an official ``model*.pt`` / ``ema_0.9999_*.pt`` (flat state dicts).
- :func:`one_hot_labels`, :func:`slab_z_position_channel`, :func:`reference_for_slab`: the conditioning tensors
  exactly as the official dataset and sampler build them.

The encoder blocks, attention, resampling and timestep embedding are those of :mod:`medgen.networks.guided_layers`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.utils import convert_to_tensor
from torch import nn

from medgen.networks.checkpoint import build_uninitialized, load_state_dict_checked, unwrap_network
from medgen.networks.guided_layers import (
    ConditionedTimestepBlock,
    GroupNorm32,
    TimestepEmbedSequential,
    TimestepMLP,
    batch_timesteps,
    check_input_shape,
    check_int_arguments,
    checkpointed,
    conv_nd,
    embedding_layers,
    output_head,
    project_embedding,
    resample_factors,
    resample_layer,
    skip_layer,
    zero_module,
)
from medgen.networks.guided_unet import (
    BlockMaker,
    build_decoder,
    build_encoder,
    official_flat_state_dict,
    parse_channel_mult,
)

__all__ = [
    "SPADEGroupNorm",
    "SDMResBlock",
    "SDMUNet",
    "sdm_unet_from_official",
    "one_hot_labels",
    "slab_z_position_channel",
    "reference_for_slab",
    "sdm_conditioning",
    "slab_conditioning",
    "check_label_map",
    "check_reference",
]

# create_model's channel_mult for channel_mult="" (script_util.py of both CTCA branches)
_DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    176: (1, 2, 3, 4),
    128: (1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 3, 4),
}

# model_and_diffusion_defaults() of the CTCA branches: what the official scripts use for a flag not given
_OFFICIAL_DEFAULTS: dict[str, Any] = {
    "image_size": 64,
    "num_classes": 2,
    "num_channels": 128,
    "num_res_blocks": 2,
    "num_heads": 4,
    "num_heads_upsample": -1,
    "num_head_channels": -1,
    "attention_resolutions": "16,8",
    "channel_mult": "",
    "dropout": 0.0,
    "class_cond": True,
    "use_checkpoint": False,
    "use_scale_shift_norm": True,
    "resblock_updown": False,
    "use_fp16": False,
    "use_new_attention_order": False,
    "no_instance": False,
    "reference": False,
    "pos_emb": False,
    "learn_sigma": False,
}


class SPADEGroupNorm(nn.Module):
    """Spatially-adaptive group norm: ``GroupNorm(x) * (1 + gamma(segmap)) + beta(segmap)``.

    The group norm has no affine parameters; the segmentation map (label map, or reference volume) is resized to the
    feature map by nearest-neighbour interpolation, passed through a shared 3x3 conv + ReLU (``mlp_shared``) and two
    3x3 convs give the per-voxel ``gamma`` and ``beta`` (``mlp_gamma``, ``mlp_beta``).

    Args:
        channels: feature channels C.
        label_channels: channels L of the segmentation map.
        spatial_dims: 1, 2 or 3 (the CTCA code is 3D).
        hidden_channels: width of ``mlp_shared`` (128 in SDM).
        num_groups: groups of the norm (32 in SDM).
        eps: epsilon of the norm.
    """

    def __init__(
        self,
        channels: int,
        label_channels: int,
        spatial_dims: int = 3,
        hidden_channels: int = 128,
        num_groups: int = 32,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm = GroupNorm32(num_groups, channels, eps=eps, affine=False)
        self.mlp_shared = nn.Sequential(
            conv_nd(spatial_dims, label_channels, hidden_channels, 3, padding=1), nn.ReLU()
        )
        self.mlp_gamma = conv_nd(spatial_dims, hidden_channels, channels, 3, padding=1)
        self.mlp_beta = conv_nd(spatial_dims, hidden_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (B, C, *S) features.
            segmap: (B, L, *S') segmentation map of any spatial size S' (resized to S, nearest).

        Returns:
            (B, C, *S).
        """
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return self.norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SDMResBlock(ConditionedTimestepBlock):
    """SDM residual block: the guided-diffusion ResBlock with both group norms replaced by SPADE norms.

    ``h = in_layers(in_norm(x, y) [+ in_norm_ref(x, r)])`` (``in_layers`` = SiLU, 3x3 conv; with ``resample`` the
    normalised features and ``x`` are resampled between the SiLU and the conv), then with ``use_scale_shift_norm``
    ``h = (out_norm(h, y) [+ out_norm_ref(h, r)]) * (1 + scale) + shift``, else ``h = out_norm(h + emb, y)
    [+ out_norm_ref(h + emb, r)]``; ``out_layers`` = SiLU, dropout, zero-initialised 3x3 conv; output
    ``skip_connection(x) + h``. The bracketed reference terms exist when ``reference_channels > 0`` (the "v2" sum of
    the CTCA ``3d_sdm_hr_sliceref`` branch).

    Args:
        in_channels: input channels.
        emb_channels: width E of the timestep embedding.
        label_channels: channels of the label map ``y`` (one-hot classes, + 1 z-position channel for the slab model).
        out_channels: output channels, default ``in_channels``.
        spatial_dims: 1, 2 or 3.
        dropout: dropout probability before the last conv.
        use_scale_shift_norm: FiLM-like timestep conditioning.
        resample: ``None``, ``"up"`` (nearest) or ``"down"`` (average pooling).
        resample_factor: integer or per-axis factors of the resampling, CTCA ``(2, 2, 1)``.
        reference_channels: channels of the reference ``r`` (CTCA slab model: 2 = intensity + z-position); 0 for no
            reference branch.
        spade_hidden_channels: hidden width of every SPADE norm (128).
        num_groups: groups of every SPADE norm (32).
        use_checkpoint: recompute activations in the backward pass (saves memory while training).
    """

    def __init__(
        self,
        in_channels: int,
        emb_channels: int,
        label_channels: int,
        out_channels: int | None = None,
        spatial_dims: int = 3,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        resample: str | None = None,
        resample_factor: int | Sequence[int] = (2, 2, 1),
        reference_channels: int = 0,
        spade_hidden_channels: int = 128,
        num_groups: int = 32,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.has_reference = reference_channels > 0

        def spade(channels: int, label_nc: int) -> SPADEGroupNorm:
            return SPADEGroupNorm(channels, label_nc, spatial_dims, spade_hidden_channels, num_groups)

        self.in_norm = spade(in_channels, label_channels)
        if self.has_reference:
            self.in_norm_ref = spade(in_channels, reference_channels)
        self.in_layers = nn.Sequential(nn.SiLU(), conv_nd(spatial_dims, in_channels, self.out_channels, 3, padding=1))
        self.resample = resample_layer(resample, in_channels, spatial_dims, resample_factor)
        self.emb_layers = embedding_layers(emb_channels, self.out_channels, use_scale_shift_norm)
        self.out_norm = spade(self.out_channels, label_channels)
        if self.has_reference:
            self.out_norm_ref = spade(self.out_channels, reference_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(spatial_dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        self.skip_connection = skip_layer(spatial_dims, in_channels, self.out_channels)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, cond: tuple[torch.Tensor, torch.Tensor | None]
    ) -> torch.Tensor:
        """Args:
            x: (B, in_channels, *S) features.
            emb: (B, E) timestep embedding.
            cond: ``(y, r)``: label map (B, label_channels, *S_y) and reference (B, reference_channels, *S_r) or
                ``None`` without a reference branch; any spatial sizes (resized inside the SPADE norms).

        Returns:
            (B, out_channels, *S') with S' = S, S * factor (up) or S // factor (down).
        """
        y, r = cond
        return checkpointed(self._forward, self.use_checkpoint, x, emb, y, r)

    def _normalize(self, h: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None, which: str) -> torch.Tensor:
        out = getattr(self, f"{which}_norm")(h, y)
        if self.has_reference:
            out = out + getattr(self, f"{which}_norm_ref")(h, r)
        return out

    def _forward(self, x: torch.Tensor, emb: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        h = self._normalize(x, y, r, "in")
        if self.resample is not None:
            h = self.in_layers[1](self.resample(self.in_layers[0](h)))
            x = self.resample(x)
        else:
            h = self.in_layers(h)
        emb_out = project_embedding(self.emb_layers, emb, h)
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self._normalize(h, y, r, "out") * (1 + scale) + shift
        else:
            h = self._normalize(h + emb_out, y, r, "out")
        return self.skip_connection(x) + self.out_layers(h)


class SDMUNet(nn.Module):
    """The CTCA semantic diffusion 3D U-Net (guided-diffusion ``UNetModel`` with SDM's SPADE decoder).

    Layout (official parameter names): ``time_embed`` (Linear-SiLU-Linear, width 4 * model_channels);
    ``input_blocks`` = input conv, then per level ``num_res_blocks`` plain :class:`~medgen.networks.guided_layers.
    ResBlock` (+ :class:`~medgen.networks.guided_layers.AttentionBlock` where the downsample rate is in
    ``attention_resolutions``) and, except at the last level, a downsampling step (a ResBlock with average pooling
    when ``resblock_updown``, else a strided conv or pooling); ``middle_block`` = :class:`SDMResBlock`, attention,
    :class:`SDMResBlock`; ``output_blocks`` = per level (reversed) ``num_res_blocks + 1`` SDMResBlocks on
    ``cat([h, skip])`` (+ attention), the last of each level except level 0 followed by an upsampling step (an
    SDMResBlock with nearest upsampling when ``resblock_updown``); ``out`` = GroupNorm-SiLU-zero-initialised conv.
    The label map ``y`` (and reference ``r``) reaches the network only through the SPADE norms of the middle and
    decoder blocks. Every resampling step scales the spatial axes by ``resample_factor`` (CTCA ``(2, 2, 1)``: the
    slab/z axis keeps its size).

    Args:
        spatial_dims: 1, 2 or 3 (CTCA 3).
        in_channels: image channels (1: the noisy CT volume).
        out_channels: predicted channels before ``learn_sigma`` doubling (1: epsilon).
        model_channels: base width C (official ``num_channels``, 128).
        channel_mult: width multiplier per level, e.g. ``(1, 2, 3, 4)``.
        num_res_blocks: ResBlocks per level in the encoder (the decoder has one more).
        attention_resolutions: downsample rates (1, 2, 4, ...) with attention; the official ``create_model`` turns
            ``"16,8"`` into ``image_size // 16, image_size // 8``.
        num_classes: one-hot label channels of ``y`` (9 for CTCA; the official value after ``no_instance``).
        position_channel: ``y`` carries one more channel, the slab's z-position (official ``pos_emb``).
        reference_channels: channels of the reference input ``r`` (official ``reference=True``: 2, intensity and
            z-position of the low-res volume); 0 for a model without reference (the low-res ``3d_sdm`` model).
        dropout: dropout probability inside residual blocks.
        conv_resample: without ``resblock_updown``, resample with (strided) convs instead of pooling/nearest.
        num_heads: attention heads (used when ``num_head_channels == -1``).
        num_head_channels: channels per attention head (CTCA 64), -1 to use ``num_heads``.
        num_heads_upsample: heads in the decoder attention, -1 for ``num_heads``.
        use_scale_shift_norm: FiLM-like timestep conditioning in all residual blocks.
        resblock_updown: resample inside residual blocks.
        use_new_attention_order: split q/k/v before heads instead of guided-diffusion's legacy order.
        learn_sigma: also predict the variance interpolation: the output has ``2 * out_channels`` channels.
        resample_factor: per-axis (or one) integer factor of every down/up step.
        num_groups: groups of every group norm (32).
        spade_hidden_channels: hidden width of the SPADE norms (128).
        use_checkpoint: gradient checkpointing of residual and attention blocks while training.

    Example::

        net = SDMUNet(num_classes=9, position_channel=True, reference_channels=2, num_head_channels=64,
                      resblock_updown=True, use_scale_shift_norm=True, learn_sigma=True,
                      attention_resolutions=(8, 16))
        out = net(x_t, t, y, r)  # x_t (B,1,128,128,16), t (B,), y (B,10,128,128,16), r (B,2,64,64,24)
        eps, v = out[:, :1], out[:, 1:]
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        model_channels: int = 128,
        channel_mult: Sequence[int] | str = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (),
        num_classes: int = 9,
        position_channel: bool = False,
        reference_channels: int = 0,
        dropout: float = 0.0,
        conv_resample: bool = True,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        learn_sigma: bool = False,
        resample_factor: int | Sequence[int] = (2, 2, 1),
        num_groups: int = 32,
        spade_hidden_channels: int = 128,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        check_int_arguments({"in_channels": (in_channels, 1), "out_channels": (out_channels, 1),
                             "model_channels": (model_channels, 1), "num_res_blocks": (num_res_blocks, 0),
                             "num_classes": (num_classes, 1), "reference_channels": (reference_channels, 0)})
        mult = parse_channel_mult(channel_mult, allow_fractions=True)
        widths = [int(m * model_channels) for m in mult]
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
        self.position_channel = position_channel
        self.label_channels = num_classes + int(position_channel)
        self.reference_channels = reference_channels
        self.resample_factor = factor

        emb_dim = 4 * model_channels
        self.time_embed = TimestepMLP(model_channels, emb_dim)

        blocks = BlockMaker(emb_dim, spatial_dims, dropout, use_scale_shift_norm, factor, num_groups, use_checkpoint,
                            num_head_channels, use_new_attention_order, resblock_updown, conv_resample)

        def sdm_block(cin: int, cout: int, resample: str | None = None) -> SDMResBlock:
            return SDMResBlock(cin, emb_dim, self.label_channels, cout, spatial_dims, dropout, use_scale_shift_norm,
                               resample, factor, reference_channels, spade_hidden_channels, num_groups, use_checkpoint)

        stem = conv_nd(spatial_dims, in_channels, widths[0], 3, padding=1)
        self.input_blocks, skip_channels, ch, rate = build_encoder(
            stem, widths[0], widths, num_res_blocks, self.attention_resolutions, blocks.res_block,
            lambda c: blocks.attention(c, num_heads), blocks.down,
        )
        self.middle_block = TimestepEmbedSequential(
            sdm_block(ch, ch), blocks.attention(ch, num_heads), sdm_block(ch, ch)
        )
        self.output_blocks, ch = build_decoder(
            ch, skip_channels, widths, num_res_blocks, self.attention_resolutions, rate, sdm_block,
            lambda c: blocks.attention(c, heads_up), lambda c: blocks.up(c, sdm_block),
        )
        self.out = output_head(spatial_dims, ch, self.out_channels, num_groups)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SDMUNet:
        """Build from the official ``create_model`` / ``image_train.py`` arguments of the CTCA branches.

        Official names and meaning: ``image_size`` (picks ``channel_mult`` when it is ``""`` and turns
        ``attention_resolutions`` ``"16,8"`` into rates ``image_size // 16, image_size // 8``), ``num_classes``
        (+1 unless ``no_instance``), ``num_channels``, ``num_res_blocks``, ``channel_mult`` (``""`` or ``"1,2,3,4"``),
        ``learn_sigma``, ``class_cond`` (must be True: SDM always takes a label map), ``num_heads``,
        ``num_head_channels``, ``num_heads_upsample``, ``use_scale_shift_norm``, ``dropout``, ``resblock_updown``,
        ``use_new_attention_order``, ``use_checkpoint``, ``reference`` (-> ``reference_channels=2``), ``pos_emb``
        (-> ``position_channel``); ``use_fp16`` does not change the computation (use autocast). A missing field takes
        the value of the branches' ``model_and_diffusion_defaults()``, like the official scripts do; other keys
        (diffusion, data and training flags) are ignored. Always 3D, ``in_channels=1``, resampling ``(2, 2, 1)``.

        Raises:
            ValueError: ``class_cond`` is False, or ``image_size``/``channel_mult``/``attention_resolutions`` are
                invalid.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a mapping of official create_model arguments, got {type(config).__name__}."
            )
        c = {**_OFFICIAL_DEFAULTS, **config}
        if not c["class_cond"]:
            raise ValueError("config['class_cond'] must be True: the SDM U-Net is always conditioned on a label map.")
        image_size = int(c["image_size"])
        if c["channel_mult"] == "":
            if image_size not in _DEFAULT_CHANNEL_MULT:
                raise ValueError(f"config['image_size'] must be one of {sorted(_DEFAULT_CHANNEL_MULT)} when "
                                 f"channel_mult is '', got {image_size}.")
            channel_mult: Sequence[float] | str = _DEFAULT_CHANNEL_MULT[image_size]
        else:
            channel_mult = c["channel_mult"]
        resolutions = c["attention_resolutions"]
        if isinstance(resolutions, str):
            resolutions = [int(res) for res in resolutions.split(",") if res.strip()]
        return cls(
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            model_channels=int(c["num_channels"]),
            channel_mult=channel_mult,
            num_res_blocks=int(c["num_res_blocks"]),
            attention_resolutions=tuple(image_size // int(res) for res in resolutions),
            num_classes=int(c["num_classes"]) + (0 if c["no_instance"] else 1),
            position_channel=bool(c["pos_emb"]),
            reference_channels=2 if c["reference"] else 0,
            dropout=float(c["dropout"]),
            num_heads=int(c["num_heads"]),
            num_head_channels=int(c["num_head_channels"]),
            num_heads_upsample=int(c["num_heads_upsample"]),
            use_scale_shift_norm=bool(c["use_scale_shift_norm"]),
            resblock_updown=bool(c["resblock_updown"]),
            use_new_attention_order=bool(c["use_new_attention_order"]),
            learn_sigma=bool(c["learn_sigma"]),
            use_checkpoint=bool(c["use_checkpoint"]),
        )

    @property
    def input_multiple(self) -> tuple[int, ...]:
        """Per spatial axis, the size every input must be a multiple of: ``resample_factor ** (levels - 1)``."""
        return tuple(int(f) ** (len(self.channel_mult) - 1) for f in self.resample_factor)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise (and variance interpolation) of a noisy volume given its label map.

        Args:
            x: (B, in_channels, H, W, Dz) noisy volume (CTCA: intensities in [-1, 1] at t=0; slab depth Dz = 16 for
                the high-res model); H and W divisible by ``2 ** (levels - 1)``.
            timesteps: (B,) or scalar integer diffusion step ``0..T-1`` (T = 1000, cosine schedule in CTCA).
            y: (B, num_classes (+1 z-position channel), H, W, Dz) one-hot label map (:func:`one_hot_labels`, with
                :func:`slab_z_position_channel` concatenated for ``position_channel``); zeros for the unconditional
                pass of classifier-free guidance.
            r: (B, reference_channels, H', W', D') reference (:func:`reference_for_slab`, any spatial size, e.g.
                (B, 2, 64, 64, 24)), required iff ``reference_channels > 0``.

        Returns:
            (B, out_channels, H, W, Dz): epsilon (channel 0) and, with ``learn_sigma``, the variance interpolation
            value (channel 1, guided-diffusion's LEARNED_RANGE).

        Raises:
            ValueError: a shape does not match, or ``r`` is missing/unexpected.
        """
        check_input_shape(x, self.in_channels, self.spatial_dims, self.resample_factor, len(self.channel_mult) - 1)
        timesteps = batch_timesteps(timesteps, x)
        expected_y = (x.shape[0], self.label_channels, *x.shape[2:])
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected_y:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be the label map of shape {expected_y} (num_classes={self.num_classes}"
                             f"{' + 1 z-position channel' if self.position_channel else ''}), got {got}.")
        if self.reference_channels:
            expected_r = (x.shape[0], self.reference_channels)
            if not isinstance(r, torch.Tensor) or r.ndim != x.ndim or tuple(r.shape[:2]) != expected_r:
                got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
                raise ValueError(f"r must be the reference of shape ({x.shape[0]}, {self.reference_channels}, "
                                 f"{', '.join(['S'] * self.spatial_dims)}), got {got}.")
            r = r.to(x.dtype)
        elif r is not None:
            raise ValueError("r was given but the model has no reference branch (reference_channels=0).")
        cond = (y.to(x.dtype), r)

        emb = self.time_embed(timesteps)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, cond)
            skips.append(h)
        h = self.middle_block(h, emb, cond)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, cond)
        return self.out(h)


def sdm_unet_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Mapping[str, Any], **options: Any
) -> SDMUNet:
    """Load a CTCA SDM checkpoint (``model*.pt`` or EMA ``ema_0.9999_*.pt``; both flat state dicts) into an
    :class:`SDMUNet`.

    Args:
        checkpoint: path to the official file, or the loaded state dict (a ``module.`` prefix is removed).
        config: official ``create_model`` arguments (see :meth:`SDMUNet.from_config`), e.g. for the high-res model
            ``{"image_size": 128, "num_classes": 9, "no_instance": True, "num_channels": 128, "num_res_blocks": 2,
            "attention_resolutions": "16,8", "num_head_channels": 64, "resblock_updown": True,
            "use_scale_shift_norm": True, "learn_sigma": True, "reference": True, "pos_emb": True}``.
        options: none are accepted.

    Returns:
        the loaded network (CPU, float32).

    Raises:
        TypeError: unknown options, or the file is not a flat state dict.
        CheckpointMismatchError: keys or shapes do not match the configuration.
    """
    if options:
        raise TypeError(f"sdm_unet_from_official takes no options, got {sorted(options)}.")
    network = build_uninitialized(lambda: SDMUNet.from_config(config))  # checks the config before reading the file
    return load_state_dict_checked(network, official_flat_state_dict(checkpoint))


def one_hot_labels(
    label_map: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot encode an integer label map (official ``preprocess_input``: ``zeros.scatter_(1, label, 1.0)``).

    Args:
        label_map: (B, 1, *S) class indices ``0..num_classes-1`` (integer, or float holding integers as read from
            NIfTI).
        num_classes: number of classes (9 for CTCA).
        dtype: floating dtype of the result.

    Returns:
        (B, num_classes, *S) tensor on ``label_map.device``.

    Raises:
        ValueError: wrong shape, non-integer values or labels outside ``[0, num_classes)``.
    """
    if not isinstance(label_map, torch.Tensor) or label_map.ndim < 3 or label_map.shape[1] != 1:
        got = tuple(label_map.shape) if isinstance(label_map, torch.Tensor) else type(label_map).__name__
        raise ValueError(f"label_map must have shape (B, 1, *S), got {got}.")
    labels = label_map.long()
    if label_map.is_floating_point() and not torch.equal(labels.to(label_map.dtype), label_map):
        raise ValueError("label_map must hold integer class indices, got non-integer values.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"label_map values must be in [0, {num_classes}), got [{int(labels.min())}, "
                         f"{int(labels.max())}].")
    out = torch.zeros((labels.shape[0], num_classes, *labels.shape[2:]), dtype=dtype, device=label_map.device)
    return out.scatter_(1, labels, 1.0)


def slab_z_position_channel(
    slab_index: int,
    slab_depth: int = 16,
    resolution: int = 128,
    in_plane_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The z-position channel of slab ``slab_index`` (official ``ImageDataset.create_positional_embeddings``).

    Slice ``z`` of the full high-res volume gets ``2 * (z / resolution - 0.5)``, ``z = slab_index * slab_depth + j``
    for ``j < slab_depth``, constant over the in-plane axes: slab 0 of a 128-slice volume starts at -1, the last slab
    ends at ``1 - 2/128``. Computed in float64 like the official numpy code, then cast.

    Args:
        slab_index: index k of the slab (the ``_{k:04d}`` suffix of the official slab files), >= 0.
        slab_depth: slices per slab (16).
        resolution: normaliser: slices of the whole high-res volume (official ``image_size``, 128).
        in_plane_shape: (H, W) of the slab, default ``(resolution, resolution)`` as in the official code.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        (1, H, W, slab_depth), to be concatenated after the one-hot channels of ``y``.

    Raises:
        ValueError: negative index or non-positive sizes.
    """
    if not isinstance(slab_index, (int, np.integer)) or slab_index < 0:
        raise ValueError(f"slab_index must be a non-negative integer, got {slab_index!r}.")
    if slab_depth < 1 or resolution < 1:
        raise ValueError(f"slab_depth and resolution must be positive, got {slab_depth} and {resolution}.")
    height, width = (resolution, resolution) if in_plane_shape is None else tuple(in_plane_shape)
    z = torch.arange(slab_index * slab_depth, (slab_index + 1) * slab_depth, dtype=torch.float64, device=device)
    z = 2 * (z / resolution - 0.5)
    return z.to(dtype).reshape(1, 1, 1, slab_depth).expand(1, height, width, slab_depth).contiguous()


def reference_for_slab(
    low_res_volume: torch.Tensor | np.ndarray,
    slab_index: int,
    slab_depth: int = 16,
    volume_depth: int = 128,
    margin: int | None = None,
    pad_value: float = -1024.0,
    dtype: torch.dtype = torch.float32,
    first_slice: int | None = None,
) -> torch.Tensor:
    """The reference input ``r`` of one high-res slab (official ``ImageDataset.create_reference``).

    The low-res volume (depth ``D``) is cut in z to the slab's extent ``z0 = int(k * slab_depth * D / volume_depth)``,
    ``z1 = int(z0 + slab_depth * D / volume_depth)``, widened by ``margin`` slices on each side; slices outside the
    volume are filled with ``pad_value``. The padded volume is then min-max normalised to [-1, 1] as a WHOLE (official
    order: so for the first and last slab the -1024 padding takes part in the minimum, and a low-res volume already
    in [-1, 1] is squeezed towards +1 — reproduced as in the official code) and the window is cut out. A second
    channel holds each slice's position ``2 * (z / D - 0.5)`` (z of the unpadded volume, negative/above 1 in the
    margins), constant in-plane. Not resized: the SPADE norms interpolate it.

    Intensities are computed in ``dtype`` (the official code casts the volume to float32), the position in float64
    and cast to ``dtype``, matching the official float32/float64 numpy arithmetic.

    Args:
        low_res_volume: (H, W, D) or (1, H, W, D) low-res volume (tensor, MetaTensor or array; CTCA: the 64^3
            output of the low-res model).
        slab_index: index k of the high-res slab, ``0 <= k < volume_depth / slab_depth``.
        slab_depth: slices per high-res slab (16).
        volume_depth: slices of the high-res volume (128; 144 for the official 176 setting).
        margin: extra low-res slices on each side; default ``D // 8`` (official: 8 for D = 64, 4 for D = 32, the only
            depths the official code accepts).
        pad_value: value of slices outside the volume (-1024, HU of air).
        dtype: floating dtype of the computation and the result (float32 as the official code).
        first_slice: first high-res slice of the slab when slabs do not start at multiples of ``slab_depth``
            (overlapping or shifted slabs, a medgen extension); default ``slab_index * slab_depth`` (official).

    Returns:
        (2, H, W, n + 2 * margin) plain tensor with ``n = z1 - z0``: normalised intensity and z-position.

    Raises:
        ValueError: wrong shape, or an index outside the volume.
    """
    vol = convert_to_tensor(low_res_volume, track_meta=False)
    if vol.ndim == 4 and vol.shape[0] == 1:
        vol = vol[0]
    if vol.ndim != 3:
        raise ValueError(f"low_res_volume must have shape (H, W, D) or (1, H, W, D), got {tuple(vol.shape)}.")
    vol = vol.to(dtype)
    lr_depth = vol.shape[2]
    if not isinstance(slab_index, (int, np.integer)) or not 0 <= slab_index * slab_depth < volume_depth:
        raise ValueError(f"slab_index must be in [0, {-(-volume_depth // slab_depth)}) for volume_depth "
                         f"{volume_depth} and slab_depth {slab_depth}, got {slab_index!r}.")
    margin = lr_depth // 8 if margin is None else margin
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    if first_slice is None:
        first_slice = slab_index * slab_depth
    elif not isinstance(first_slice, (int, np.integer)) or not 0 <= first_slice < volume_depth:
        raise ValueError(f"first_slice must be an integer in [0, {volume_depth}), got {first_slice!r}.")
    first = int(first_slice * lr_depth / volume_depth)
    z_start = first - margin
    z_end = int(first + slab_depth * lr_depth / volume_depth) + margin
    pad_before, pad_after = max(0, -z_start), max(0, z_end - lr_depth)
    if pad_before or pad_after:
        vol = F.pad(vol, (pad_before, pad_after), mode="constant", value=pad_value)
    low, high = vol.min(), vol.max()
    if high != low:
        vol = (vol - low) / (high - low)
    else:
        vol = torch.zeros_like(vol)
    window = (2 * vol - 1)[:, :, z_start + pad_before : z_end + pad_before]
    z = torch.arange(z_start, z_end, dtype=torch.float64, device=vol.device)
    position = (2 * (z / lr_depth - 0.5)).to(vol.dtype).reshape(1, 1, -1).expand_as(window)
    return torch.stack([window, position])


def _z_position(start: int, slab_depth: int, normalizer: int, in_plane: tuple[int, int], dtype, device) -> torch.Tensor:
    """The official z-position channel ``2 (z / normalizer - 0.5)`` of slices ``start .. start + slab_depth - 1``."""
    if start % slab_depth == 0:
        return slab_z_position_channel(start // slab_depth, slab_depth, normalizer, in_plane, dtype, device)
    slices = [slab_z_position_channel(start + j, 1, normalizer, in_plane, dtype, device) for j in range(slab_depth)]
    return torch.cat(slices, dim=-1)


def slab_conditioning(
    labels: torch.Tensor,
    reference: torch.Tensor | None,
    starts: Sequence[int],
    slab_depth: int,
    canvas_depth: int,
    num_classes: int,
    position: bool,
    position_normalizer: int | None = None,
    reference_margin: int | None = None,
    reference_pad_value: float = -1024.0,
    pad_label: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network inputs ``y`` and ``r`` of every slab of every volume, stacked volume-major (row ``b * K + k``).

    Args:
        labels: ``(B, 1, H, W, D)`` label maps.
        reference: ``(B, 1, h, w, d)`` low-res volumes or ``None``.
        starts: first slice of each slab (:func:`~medgen.diffusion.views.slab_layout`).
        slab_depth: slices per slab.
        canvas_depth: depth the label maps are padded to (with ``pad_label``).
        num_classes: one-hot classes.
        position: append the z-position channel (:func:`slab_z_position_channel`, over ``position_normalizer``,
            default ``H``).
        reference_margin, reference_pad_value: see :func:`reference_for_slab`.
        pad_label: class of the padded slices.
        dtype: floating dtype of the outputs.

    Returns:
        ``y`` ``(B K, num_classes [+1], H, W, slab_depth)`` and ``r`` ``(B K, 2, h, w, n)`` or ``None``.
    """
    batch, _, height, width, depth = labels.shape
    device, sd = labels.device, slab_depth
    if canvas_depth > depth:
        labels = F.pad(labels, (0, canvas_depth - depth), mode="constant", value=pad_label)
    normalizer = position_normalizer or height
    ys, rs = [], []
    for b in range(batch):
        for start in starts:
            y = one_hot_labels(labels[b : b + 1, :, :, :, start : start + sd], num_classes, dtype=dtype)
            if position:
                y = torch.cat([y, _z_position(start, sd, normalizer, (height, width), dtype, device)[None]], 1)
            ys.append(y)
            if reference is not None:
                rs.append(reference_for_slab(reference[b, 0], start // sd, sd, depth, reference_margin,
                                             reference_pad_value, dtype, first_slice=start))
    return torch.cat(ys), (torch.stack(rs).to(device) if rs else None)


def check_reference(
    reference: Any, batch: int, reference_channels: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor | None:
    """The low-res reference ``(B or 1, 1, h, w, d)`` expanded to ``batch`` items on ``device`` (``None`` for a
    network without a reference branch), else a clear error.

    Args:
        reference: the reference volume(s) or ``None``.
        batch: the number of label maps.
        reference_channels: the network's ``reference_channels`` (0: no reference branch).
        device: where the label maps are.
        dtype: the dtype of an integer reference.

    Raises:
        TypeError, ValueError: a missing, unexpected or misshapen reference.
    """
    if not reference_channels:
        if reference is not None:
            raise ValueError("reference was given but the network has no reference branch (reference_channels=0).")
        return None
    if reference is None:
        raise ValueError(
            f"the network has a reference branch ({reference_channels} channels): pass reference=<low-res "
            "volume (B, 1, h, w, d)>."
        )
    if not isinstance(reference, torch.Tensor):
        raise TypeError(f"reference must be a tensor (B, 1, h, w, d), got {type(reference).__name__}.")
    if reference.ndim != 5 or reference.shape[1] != 1 or reference.shape[0] not in (1, batch):
        raise ValueError(f"reference must have shape ({batch} or 1, 1, h, w, d), got {tuple(reference.shape)}.")
    if reference_channels != 2:
        raise ValueError(
            f"the reference gives 2 channels (intensity, z-position), the network expects {reference_channels}."
        )
    ref = (reference.as_tensor() if hasattr(reference, "as_tensor") else reference).to(device)
    ref = ref.expand(batch, -1, -1, -1, -1)
    return ref if ref.is_floating_point() else ref.to(dtype)


def sdm_conditioning(network: Any, num_classes: int | None = None) -> tuple[int, bool, int]:
    """``(num_classes, position_channel, reference_channels)`` a (possibly wrapped) SDM network expects.

    Read from the network's attributes (:class:`SDMUNet` has them); a network without them gets ``num_classes`` from the
    caller, no position channel and no reference.

    Raises:
        ValueError: no class count is known, or ``num_classes`` contradicts the network's.
    """
    module = unwrap_network(network)
    found = getattr(module, "num_classes", None)
    found = found if isinstance(found, int) and not isinstance(found, bool) else None
    if found is not None and num_classes is not None and found != num_classes:
        raise ValueError(f"num_classes={num_classes} but network.num_classes is {found}.")
    if found is None and num_classes is None:
        raise ValueError(f"the network ({type(module).__name__}) has no num_classes attribute: pass num_classes.")
    position = bool(getattr(module, "position_channel", False))
    return found if found is not None else num_classes, position, int(getattr(module, "reference_channels", 0) or 0)


def check_label_map(labels: Any, num_classes: int, name: str = "inputs") -> torch.Tensor:
    """``labels`` as a plain tensor if it is an integer-valued label map ``(B, 1, *spatial)`` of classes in
    ``[0, num_classes)``, else a ``TypeError``/``ValueError`` naming ``name``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an integer label map tensor (B, 1, H, W, D), got {type(labels).__name__}.")
    if labels.ndim != 5 or labels.shape[1] != 1:
        raise ValueError(f"{name} must be a label map of shape (B, 1, H, W, D), got shape {tuple(labels.shape)}.")
    if labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}.")
    labels = labels.as_tensor() if hasattr(labels, "as_tensor") else labels
    if labels.is_floating_point() and not torch.equal(labels.round(), labels):
        raise ValueError(f"{name} must hold integer class indices, got non-integer values.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must hold classes in [0, {num_classes}) (the network's num_classes), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]."
        )
    return labels
