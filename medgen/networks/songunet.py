"""EDM's SongUNet (DDPM++ / NCSN++) and the PaDIS patch denoiser with positional input channels.

:class:`SongUNet` re-implements the U-Net of Karras et al. (EDM, ``training/networks.py`` in NVlabs/edm), itself a
re-implementation of Song et al.'s DDPM++/NCSN++, with the official parameter names (``map_layer0``,
``enc.16x16_conv``, ``enc.16x16_block0.norm0``, ``dec.4x4_in0``, ``dec.16x16_aux_norm``, ...) so EDM and PaDIS
checkpoints load unchanged. :class:`PatchEDMPrecond` is EDM's preconditioning as used by PaDIS (Hu et al., NeurIPS
2024): the noisy patch is scaled by ``c_in`` and concatenated with two clean positional channels.
:func:`patch_position_channels` and :func:`canvas_position_channels` are the one definition of those channels used by
the PaDIS inferer and the patch loss.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medgen.networks.checkpoint import build_uninitialized, load_state_dict_checked, read_checkpoint
from medgen.networks.edm_pickle import load_edm_snapshot, module_state_dict, read_edm_pickle

__all__ = [
    "SongUNet",
    "UNetBlock",
    "PatchEDMPrecond",
    "patch_position_channels",
    "canvas_position_channels",
    "padis_from_official",
]


def _edm_init(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """EDM's weight initialisation (same draws, same order as the official ``weight_init``)."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(
        f"init_mode must be one of xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, got '{mode}'."
    )


class Linear(nn.Module):
    """Fully connected layer with EDM's initialisation (``weight`` is ``(out_features, in_features)``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(_edm_init([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(_edm_init([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features)`` -> ``(..., out_features)``, in the dtype of ``x``."""
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class Conv2d(nn.Module):
    """2D convolution with optional FIR up/downsampling by 2, as in EDM.

    ``kernel=0`` gives a pure resampling layer without weights. ``resample_filter`` (a separable 1D filter, e.g.
    ``[1, 1]`` or ``[1, 3, 3, 1]``) is registered as a buffer only when ``up`` or ``down`` is set, which is what the
    official state dicts contain.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[float] = (1, 1),
        fused_resample: bool = False,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        if up and down:
            raise ValueError("Conv2d cannot both upsample and downsample (up and down are both True).")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        shape = [out_channels, in_channels, kernel, kernel]
        self.weight = nn.Parameter(_edm_init(shape, **fans) * init_weight) if kernel else None
        self.bias = nn.Parameter(_edm_init([out_channels], **fans) * init_bias) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f = torch.outer(f, f).unsqueeze(0).unsqueeze(1) / f.sum().square()
        self.register_buffer("resample_filter", f if up or down else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H', W')`` with H' = 2H (up), H/2 (down) or H."""
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            f_up = f.mul(4).tile([self.in_channels, 1, 1, 1])
            x = F.conv_transpose2d(x, f_up, groups=self.in_channels, stride=2, padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(
                    x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad
                )
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if b is not None:
            x = x + b.reshape(1, -1, 1, 1)
        return x


def _group_norm(num_channels: int, eps: float) -> nn.GroupNorm:
    """EDM's GroupNorm: 32 groups, but at least 4 channels per group."""
    num_groups = min(32, num_channels // 4)
    if num_groups < 1:
        raise ValueError(f"GroupNorm needs at least 4 channels (EDM uses >= 4 channels per group), got {num_channels}.")
    return nn.GroupNorm(num_groups, num_channels, eps=eps)


class UNetBlock(nn.Module):
    """EDM's residual U-Net block (DDPM++/NCSN++ flavour: additive embedding, ``adaptive_scale=False``).

    ``out = skip_scale * (skip(x) + conv1(dropout(silu(norm1(conv0(silu(norm0(x))) + affine(emb))))))``, optionally
    followed by single-resolution self-attention ``out = skip_scale * (out + proj(attn(norm2(out))))``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        emb_channels: width of the embedding vector.
        up: upsample by 2 (in ``conv0`` and the skip path).
        down: downsample by 2.
        attention: add a self-attention layer after the residual path.
        num_heads: attention heads (SongUNet uses 1).
        dropout: dropout probability before ``conv1``.
        skip_scale: factor applied after each residual addition (``sqrt(0.5)`` in SongUNet).
        eps: GroupNorm epsilon.
        resample_filter: FIR filter for up/downsampling.
        resample_proj: use a 1x1 convolution (not a pure resampling) on the skip path when resampling.
        init: initialisation options of ordinary layers.
        init_zero: initialisation options of the last layer of each residual path (near-zero).
        init_attn: initialisation options of ``qkv`` (defaults to ``init``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int = 1,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[float] = (1, 1),
        resample_proj: bool = False,
        init: Mapping[str, Any] | None = None,
        init_zero: Mapping[str, Any] | None = None,
        init_attn: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        init = dict(init or {})
        init_zero = dict(init_zero) if init_zero is not None else dict(init_weight=0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_heads = num_heads if attention else 0
        self.dropout = dropout
        self.skip_scale = skip_scale

        self.norm0 = _group_norm(in_channels, eps)
        self.conv0 = Conv2d(
            in_channels, out_channels, kernel=3, up=up, down=down, resample_filter=resample_filter, **init
        )
        self.affine = Linear(emb_channels, out_channels, **init)
        self.norm1 = _group_norm(out_channels, eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(
                in_channels, out_channels, kernel=kernel, up=up, down=down, resample_filter=resample_filter, **init
            )
        if self.num_heads:
            if out_channels % self.num_heads:
                raise ValueError(f"out_channels ({out_channels}) must be divisible by num_heads ({self.num_heads}).")
            self.norm2 = _group_norm(out_channels, eps)
            qkv_init = dict(init_attn) if init_attn is not None else init
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1, **qkv_init)
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Args:
            x: ``(B, in_channels, H, W)``.
            emb: ``(B, emb_channels)`` (or ``(1, emb_channels)``, broadcast over the batch).

        Returns:
            ``(B, out_channels, H', W')`` with ``H' = 2H``/``H/2`` when upsampling/downsampling.
        """
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb).unsqueeze(2).unsqueeze(3).to(x.dtype)
        x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(orig) if self.skip is not None else orig)
        x = x * self.skip_scale
        if self.num_heads:
            batch, channels = x.shape[:2]
            # channel layout of qkv (official): head-major, then channel, then q/k/v interleaved
            qkv = self.qkv(self.norm2(x)).reshape(batch * self.num_heads, channels // self.num_heads, 3, -1)
            q, k, v = qkv.unbind(2)
            scale = 1 / math.sqrt(k.shape[1])
            w = torch.einsum("ncq,nck->nqk", q.float(), (k * scale).float()).softmax(dim=2).to(q.dtype)
            a = torch.einsum("nqk,nck->ncq", w, v)
            x = self.proj(a.reshape(*x.shape)) + x
            x = x * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar per sample (DDPM++); output ``[cos, sin]`` halves, ``(B, num_channels)``."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` scalars -> ``(B, num_channels)`` ``[cos, sin]`` features."""
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar per sample (NCSN++); ``freqs`` is a buffer, output ``(B, num_channels)``."""

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` scalars -> ``(B, num_channels)`` ``[cos, sin]`` features."""
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class SongUNet(nn.Module):
    """EDM's re-implementation of the DDPM++ / NCSN++ U-Net (Song et al. 2021), official parameter naming.

    The network is fully convolutional except the self-attention layers. DDPM++ is ``embedding_type='positional',
    encoder_type='standard', channel_mult_noise=1, resample_filter=[1, 1]``; NCSN++ is ``embedding_type='fourier',
    encoder_type='residual', channel_mult_noise=2, resample_filter=[1, 3, 3, 1]``.

    Attention placement (reproduced quirk, relevant for PaDIS): a block gets attention when ``img_resolution >> level``
    is in ``attn_resolutions``, computed from the CONSTRUCTOR ``img_resolution``, not from the size of the input at run
    time. A patch model built with ``img_resolution=304`` (256 + 2*24 padding) and ``attn_resolutions=[16]`` therefore
    has no attention block in the encoder/decoder levels (304, 152, 76); only the always-present bottleneck block
    ``dec.{R/4}x{R/4}_in0`` attends (globally over the patch). The level names in the state dict
    (``enc.304x304_block0``, ...) also come from the constructor resolution.

    Args:
        img_resolution: image size the network is built for (sets level names and attention placement, see above).
        in_channels: input channels (for PaDIS: image channels + 2 positional channels).
        out_channels: output channels.
        label_dim: number of class labels, 0 = unconditional.
        augment_dim: dimensionality of augmentation labels, 0 = none.
        model_channels: base channel count.
        channel_mult: per-level channel multipliers (one level per entry; each further level halves the resolution).
        channel_mult_emb: embedding width = ``model_channels * channel_mult_emb``.
        num_blocks: residual blocks per level in the encoder (the decoder has ``num_blocks + 1``).
        attn_resolutions: resolutions (``img_resolution >> level``) with self-attention.
        dropout: dropout probability inside the residual blocks.
        label_dropout: probability of dropping class labels during training (classifier-free guidance).
        embedding_type: ``'positional'`` (DDPM++) or ``'fourier'`` (NCSN++) noise embedding.
        channel_mult_noise: noise-embedding width = ``model_channels * channel_mult_noise``.
        encoder_type: ``'standard'``, ``'skip'`` or ``'residual'`` (NCSN++'s progressive input).
        decoder_type: ``'standard'`` or ``'skip'`` (progressive output).
        resample_filter: separable FIR filter for up/downsampling.
        implicit_mlp: PaDIS option: the input layer is three 1x1 convolutions with SiLU before the 3x3 convolution.
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[float] = (1, 1),
        implicit_mlp: bool = False,
    ) -> None:
        if embedding_type not in ("positional", "fourier"):
            raise ValueError(f"embedding_type must be 'positional' or 'fourier', got '{embedding_type}'.")
        if encoder_type not in ("standard", "skip", "residual"):
            raise ValueError(f"encoder_type must be 'standard', 'skip' or 'residual', got '{encoder_type}'.")
        if decoder_type not in ("standard", "skip"):
            raise ValueError(f"decoder_type must be 'standard' or 'skip', got '{decoder_type}'.")
        for name, value in (
            ("img_resolution", img_resolution),
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("model_channels", model_channels),
            ("channel_mult_emb", channel_mult_emb),
            ("channel_mult_noise", channel_mult_noise),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if len(channel_mult) < 1 or any(int(m) < 1 for m in channel_mult):
            raise ValueError(f"channel_mult must be a non-empty sequence of positive integers, got {channel_mult!r}.")
        if num_blocks < 0 or label_dim < 0 or augment_dim < 0:
            raise ValueError(
                f"num_blocks, label_dim and augment_dim must be >= 0, got {num_blocks}, {label_dim}, {augment_dim}."
            )
        if not 0 <= dropout < 1 or not 0 <= label_dropout < 1:
            raise ValueError(f"dropout and label_dropout must be in [0, 1), got {dropout} and {label_dropout}.")
        super().__init__()
        self.img_resolution = img_resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.augment_dim = augment_dim
        self.label_dropout = label_dropout
        self.num_levels = len(channel_mult)
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block_kwargs = dict(
            emb_channels=emb_channels,
            num_heads=1,
            dropout=dropout,
            skip_scale=math.sqrt(0.5),
            eps=1e-6,
            resample_filter=resample_filter,
            resample_proj=True,
            init=init,
            init_zero=init_zero,
            init_attn=init_attn,
        )

        # Mapping network (construction order = official order, so seeded initialisations match EDM's).
        if embedding_type == "positional":
            self.map_noise: nn.Module = PositionalEmbedding(noise_channels, endpoint=True)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder. The plans record what each ModuleDict entry does, so forward() needs no name parsing.
        self.enc = nn.ModuleDict()
        enc_plan: list[tuple[str, str]] = []
        skip_channels: list[int] = []
        cout = in_channels
        caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                name = f"{res}x{res}_conv"
                if implicit_mlp:
                    self.enc[name] = nn.Sequential(
                        Conv2d(cin, cout, kernel=1, **init),
                        nn.SiLU(),
                        Conv2d(cout, cout, kernel=1, **init),
                        nn.SiLU(),
                        Conv2d(cout, cout, kernel=1, **init),
                        nn.SiLU(),
                        Conv2d(cout, cout, kernel=3, **init),
                    )
                else:
                    self.enc[name] = Conv2d(cin, cout, kernel=3, **init)
                enc_plan.append((name, "conv"))
            else:
                name = f"{res}x{res}_down"
                self.enc[name] = UNetBlock(cout, cout, down=True, **block_kwargs)
                enc_plan.append((name, "block"))
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(
                        caux, caux, kernel=0, down=True, resample_filter=resample_filter
                    )
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, kernel=1, **init)
                    enc_plan += [(f"{res}x{res}_aux_down", "aux_down"), (f"{res}x{res}_aux_skip", "aux_skip")]
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, kernel=3, down=True, resample_filter=resample_filter, fused_resample=True, **init
                    )
                    enc_plan.append((f"{res}x{res}_aux_residual", "aux_residual"))
                    caux = cout
            skip_channels.append(cout)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * int(mult)
                name = f"{res}x{res}_block{idx}"
                self.enc[name] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block_kwargs)
                enc_plan.append((name, "block"))
                skip_channels.append(cout)

        # Decoder.
        self.dec = nn.ModuleDict()
        dec_plan: list[tuple[str, str]] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
                dec_plan += [(f"{res}x{res}_in0", "block"), (f"{res}x{res}_in1", "block")]
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
                dec_plan.append((f"{res}x{res}_up", "block"))
            for idx in range(num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), model_channels * int(mult)
                name = f"{res}x{res}_block{idx}"
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[name] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
                dec_plan.append((name, "block_cat"))
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, kernel=0, up=True, resample_filter=resample_filter
                    )
                    dec_plan.append((f"{res}x{res}_aux_up", "aux_up"))
                self.dec[f"{res}x{res}_aux_norm"] = _group_norm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, kernel=3, **init_zero)
                dec_plan += [(f"{res}x{res}_aux_norm", "aux_norm"), (f"{res}x{res}_aux_conv", "aux_conv")]
        self._enc_plan = tuple(enc_plan)
        self._dec_plan = tuple(dec_plan)

    def _embedding(
        self, noise_labels: torch.Tensor, class_labels: torch.Tensor | None, augment_labels: torch.Tensor | None
    ) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [cos, sin] -> [sin, cos], as official
        if self.map_label is not None:
            labels = class_labels
            if self.training and self.label_dropout:
                keep = torch.rand([labels.shape[0], 1], device=labels.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the U-Net.

        Args:
            x: ``(B, in_channels, H, W)``; ``H`` and ``W`` divisible by ``2 ** (len(channel_mult) - 1)``. Any size is
                accepted (the network is convolutional), not only ``img_resolution``.
            noise_labels: ``(B,)`` or ``(1,)`` conditioning scalar per sample (EDM: ``c_noise = ln(sigma) / 4``).
            class_labels: ``(B, label_dim)`` (one-hot or soft labels); required when ``label_dim > 0``.
            augment_labels: ``(B, augment_dim)`` augmentation labels, or None (no augmentation conditioning).

        Returns:
            ``(B, out_channels, H, W)``.

        Raises:
            ValueError: on a wrong shape or a missing ``class_labels``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}.")
        factor = 2 ** (self.num_levels - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"x spatial size must be divisible by {factor}, got {tuple(x.shape[2:])}.")
        if noise_labels.ndim != 1 or noise_labels.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"noise_labels must be (B,) or (1,) with B={x.shape[0]}, got {tuple(noise_labels.shape)}.")
        if self.map_label is not None and (class_labels is None or class_labels.shape[-1] != self.label_dim):
            got = None if class_labels is None else tuple(class_labels.shape)
            raise ValueError(f"class_labels must be (B, {self.label_dim}) for this conditional network, got {got}.")
        if self.map_augment is not None and augment_labels is not None and augment_labels.shape[-1] != self.augment_dim:
            raise ValueError(f"augment_labels must be (B, {self.augment_dim}), got {tuple(augment_labels.shape)}.")

        emb = self._embedding(noise_labels, class_labels, augment_labels)

        skips = []
        aux = x
        for name, role in self._enc_plan:
            block = self.enc[name]
            if role == "aux_down":
                aux = block(aux)
            elif role == "aux_skip":
                x = skips[-1] = x + block(aux)
            elif role == "aux_residual":
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if role == "block" else block(x)
                skips.append(x)

        aux = None
        tmp = None
        for name, role in self._dec_plan:
            block = self.dec[name]
            if role == "aux_up":
                aux = block(aux)
            elif role == "aux_norm":
                tmp = block(x)
            elif role == "aux_conv":
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if role == "block_cat":
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


def patch_position_channels(
    row_offset: int | torch.Tensor,
    col_offset: int | torch.Tensor,
    patch_height: int,
    patch_width: int,
    resolution: int,
    batch: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """PaDIS positional channels of patches cut from a (padded) ``resolution x resolution`` canvas.

    Channel 0 is the x (column) coordinate, channel 1 the y (row) coordinate, each
    ``((index + offset) / (resolution - 1) - 0.5) * 2`` in ``[-1, 1]`` over the whole canvas (the official formula,
    evaluated in ``dtype`` in the official order so float32 values match bit for bit). In training ``resolution`` is
    the padded training image size (e.g. 256 + 2*pad); at inference it is the padded canvas size.

    Args:
        row_offset: top row of each patch in the canvas: an int, or an integer tensor ``(B,)`` (one per sample).
        col_offset: left column of each patch: an int or an integer tensor ``(B,)``.
        patch_height: patch rows ``h``.
        patch_width: patch columns ``w``.
        resolution: canvas size the coordinates are normalised by (``>= 2``).
        batch: number of samples when both offsets are ints (default 1); must agree with tensor offsets.
        device: device of the result (defaults to the offsets' device, else CPU).
        dtype: floating dtype of the result.

    Returns:
        ``(B, 2, h, w)`` tensor.

    Raises:
        ValueError: on non-positive sizes, ``resolution < 2`` or inconsistent batch sizes.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}.")
    if patch_height < 1 or patch_width < 1:
        raise ValueError(f"patch_height and patch_width must be positive, got {patch_height} and {patch_width}.")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}.")
    offsets = []
    for name, value in (("row_offset", row_offset), ("col_offset", col_offset)):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() or value.ndim > 1:
                raise ValueError(
                    f"{name} must be an int or a 1-D integer tensor, got {value.dtype} {tuple(value.shape)}."
                )
            if device is None:
                device = value.device
            offsets.append(value.reshape(-1))
        elif isinstance(value, int) and not isinstance(value, bool):
            offsets.append(torch.tensor([value]))
        else:
            raise TypeError(f"{name} must be an int or an integer tensor, got {type(value).__name__}.")
    sizes = {o.numel() for o in offsets if o.numel() != 1}
    if batch is not None:
        sizes.add(batch)
    if len(sizes) > 1:
        raise ValueError(f"row_offset, col_offset and batch disagree on the batch size: {sorted(sizes)}.")
    n = sizes.pop() if sizes else 1
    rows, cols = (o.to(device=device).expand(n) for o in offsets)
    row_index = torch.arange(patch_height, device=device)[None, :, None] + rows[:, None, None]
    col_index = torch.arange(patch_width, device=device)[None, None, :] + cols[:, None, None]
    x_pos = (col_index.to(dtype) / (resolution - 1) - 0.5) * 2.0
    y_pos = (row_index.to(dtype) / (resolution - 1) - 0.5) * 2.0
    return torch.stack(torch.broadcast_tensors(x_pos, y_pos), dim=1)


def canvas_position_channels(
    resolution: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Positional channels of the whole padded ``resolution x resolution`` canvas (PaDIS inference ``latents_pos``).

    Returns:
        ``(1, 2, resolution, resolution)``; channel 0 = x (columns), channel 1 = y (rows), in ``[-1, 1]``.
    """
    return patch_position_channels(0, 0, resolution, resolution, resolution, device=device, dtype=dtype)


class PatchEDMPrecond(nn.Module):
    """EDM preconditioning around a :class:`SongUNet` with PaDIS positional input channels.

    ``D(x; sigma) = c_skip * x + c_out * F(cat([c_in * x, x_pos]), c_noise)`` with ``c_skip = sd^2 / (sigma^2 + sd^2)``,
    ``c_out = sigma * sd / sqrt(sigma^2 + sd^2)``, ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = ln(sigma) / 4`` and
    ``sd = sigma_data``. The positional channels are clean conditioning and are NOT scaled by ``c_in``. The inner
    network is ``self.model`` so state-dict keys carry the official ``model.`` prefix.

    The official ``use_fp16`` switch is not reproduced; run under ``torch.autocast`` for mixed precision.

    Args:
        img_resolution: resolution the inner U-Net is built for (PaDIS: padded training size, e.g. 256 + 2*pad).
        img_channels: channels of the image being denoised (PaDIS: 1); the output has the same channels.
        pos_channels: positional channels concatenated to the input (PaDIS: 2; 0 = plain EDM preconditioning).
        label_dim: number of class labels, 0 = unconditional.
        sigma_min: smallest supported noise level (kept for EDM samplers).
        sigma_max: largest supported noise level.
        sigma_data: expected standard deviation of the training data.
        unet_kwargs: further :class:`SongUNet` arguments (``model_channels``, ``channel_mult``, ...).
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int = 1,
        pos_channels: int = 2,
        label_dim: int = 0,
        sigma_min: float = 0.0,
        sigma_max: float = float("inf"),
        sigma_data: float = 0.5,
        **unet_kwargs: Any,
    ) -> None:
        if pos_channels < 0:
            raise ValueError(f"pos_channels must be >= 0, got {pos_channels}.")
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}.")
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.pos_channels = pos_channels
        self.label_dim = label_dim
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = sigma_data
        self.model = SongUNet(
            img_resolution=img_resolution,
            in_channels=img_channels + pos_channels,
            out_channels=img_channels,
            label_dim=label_dim,
            **unet_kwargs,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PatchEDMPrecond:
        """Build from the official ``Patch_EDMPrecond`` keyword arguments (PaDIS ``network_kwargs``).

        Official ``img_channels`` counts the network INPUT channels (image + positions) and ``out_channels`` the image
        channels, so ``pos_channels = img_channels - out_channels``. ``use_fp16`` is accepted and ignored (see class
        docstring); ``four_channels``/``hash_channels`` must be 1 (PaDIS always uses 1); ``model_type`` must be
        ``'SongUNet'``.

        Raises:
            ValueError: unsupported ``model_type``/``four_channels``/``hash_channels``, or unknown keys.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a mapping of official Patch_EDMPrecond arguments, got {type(config).__name__}."
            )
        cfg = dict(config)
        model_type = cfg.pop("model_type", "SongUNet")
        if model_type != "SongUNet":
            raise ValueError(
                f"config['model_type'] must be 'SongUNet' (only DDPM++/NCSN++ are supported), got '{model_type}'."
            )
        for name in ("four_channels", "hash_channels"):
            if cfg.pop(name, 1) != 1:
                raise ValueError(f"config['{name}'] must be 1 (the value PaDIS always uses), got {config[name]!r}.")
        cfg.pop("use_fp16", None)
        cfg.pop("class_name", None)
        if "img_resolution" not in cfg or "img_channels" not in cfg:
            raise ValueError("config must contain 'img_resolution' and 'img_channels'.")
        in_channels = int(cfg.pop("img_channels"))
        out_channels = cfg.pop("out_channels", None)
        out_channels = in_channels if out_channels is None else int(out_channels)
        if out_channels > in_channels:
            raise ValueError(f"config out_channels ({out_channels}) exceeds img_channels ({in_channels}).")
        known = {
            "img_resolution", "label_dim", "sigma_min", "sigma_max", "sigma_data", "augment_dim", "model_channels",
            "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions", "dropout", "label_dropout",
            "embedding_type", "channel_mult_noise", "encoder_type", "decoder_type", "resample_filter", "implicit_mlp",
        }  # fmt: skip
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"config has keys Patch_EDMPrecond/SongUNet do not take: {unknown}.")
        for key in ("channel_mult", "attn_resolutions", "resample_filter"):
            if key in cfg:
                cfg[key] = list(cfg[key])
        return cls(img_channels=out_channels, pos_channels=in_channels - out_channels, **cfg)

    def round_sigma(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """EDM sampler hook: the supported noise level nearest to ``sigma`` (every level is supported)."""
        return torch.as_tensor(sigma)

    def forward(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        x_pos: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoise ``x``.

        Args:
            x: noisy image (patches) ``(B, img_channels, h, w)``, image units.
            sigma: noise standard deviation in image units: a float, a 0-d/``(1,)`` tensor (shared by all samples) or
                ``(B,)`` (also ``(B, 1, 1, 1)``). Must be > 0 (``c_noise = ln(sigma) / 4``).
            x_pos: positional channels ``(B, pos_channels, h, w)`` (see :func:`patch_position_channels`); required
                when ``pos_channels > 0``.
            class_labels: ``(B, label_dim)``; zeros are used when None and ``label_dim > 0`` (as in EDM).
            augment_labels: ``(B, augment_dim)`` or None.

        Returns:
            the denoised image ``D(x; sigma)``, ``(B, img_channels, h, w)``, in the network's parameter dtype
            (inputs are cast to it, as the official code casts to float32).
        """
        dtype = self.model.map_layer0.weight.dtype
        if x.ndim != 4 or x.shape[1] != self.img_channels:
            raise ValueError(f"x must be (B, {self.img_channels}, h, w), got {tuple(x.shape)}.")
        batch = x.shape[0]
        x = x.to(dtype)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=dtype)
        if sigma.numel() not in (1, batch):
            raise ValueError(
                f"sigma must be a scalar or hold one value per sample ({batch}), got {tuple(sigma.shape)}."
            )
        sigma = sigma.reshape(-1, 1, 1, 1).expand(batch, 1, 1, 1)
        if self.pos_channels:
            if x_pos is None:
                raise ValueError(f"x_pos is required: this network takes {self.pos_channels} positional channels.")
            if x_pos.shape != (batch, self.pos_channels, *x.shape[2:]):
                raise ValueError(
                    f"x_pos must be {(batch, self.pos_channels, *x.shape[2:])} to match x, got {tuple(x_pos.shape)}."
                )
        elif x_pos is not None:
            raise ValueError("x_pos was given but this network has pos_channels=0.")
        if self.label_dim:
            if class_labels is None:
                class_labels = torch.zeros(1, self.label_dim, device=x.device, dtype=dtype).expand(batch, -1)
            class_labels = class_labels.to(dtype).reshape(-1, self.label_dim)

        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        x_in = torch.cat([c_in * x, x_pos.to(dtype)], dim=1) if self.pos_channels else c_in * x
        f_x = self.model(x_in, c_noise.flatten(), class_labels=class_labels, augment_labels=augment_labels)
        return c_skip * x + c_out * f_x


def padis_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Mapping[str, Any], key: str = "ema"
) -> PatchEDMPrecond:
    """Load a PaDIS (or EDM-SongUNet) ``Patch_EDMPrecond`` checkpoint into :class:`PatchEDMPrecond`.

    Args:
        checkpoint: one of: a ``network-snapshot-*.pkl`` path (read by the restricted unpickler of
            :mod:`medgen.networks.edm_pickle`, no code from the file runs; ``key`` picks the module, default the EMA
            weights); a ``.pt`` path or dict holding ``{'net': state_dict, ...}`` or ``{'ema': state_dict, ...}``;
            an official ``training-state-*.pt`` (``torch.save(dict(net=<module>, ...))``, read with the same restricted
            unpickler; ``'net'`` is used when ``key`` is absent); or a bare state dict in official naming
            (``model.`` prefix).
        config: the official ``Patch_EDMPrecond`` keyword arguments (see :meth:`PatchEDMPrecond.from_config`).
        key: entry of a ``.pkl`` snapshot to read (``'ema'``).

    Returns:
        the loaded network, in eval mode, on the CPU.

    Raises:
        CheckpointMismatchError: the state dict does not fit the configuration (lists the differing keys).
    """
    net = build_uninitialized(lambda: PatchEDMPrecond.from_config(config))  # checks the config before reading the file
    if isinstance(checkpoint, (str, os.PathLike)) and os.fspath(checkpoint).endswith(".pkl"):
        content: Mapping[str, Any] = load_edm_snapshot(checkpoint, key=key)
    elif isinstance(checkpoint, (str, os.PathLike)):
        try:
            content = read_checkpoint(checkpoint)
        except pickle.UnpicklingError:
            # an official training-state-*.pt pickles the module itself (EDM persisted classes), which
            # weights_only loading refuses; read it with the restricted EDM unpickler instead
            tree = read_edm_pickle(checkpoint)
            entry = key if isinstance(tree, Mapping) and key in tree else "net"
            if not isinstance(tree, Mapping) or entry not in tree:
                raise
            content = module_state_dict(tree[entry])
    else:
        content = read_checkpoint(checkpoint)
    for wrapper in ("net", "ema", "state_dict"):
        if wrapper in content and isinstance(content[wrapper], Mapping):
            content = content[wrapper]
            break
    not_tensors = sorted(k for k, v in content.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise TypeError(f"checkpoint is not a state dict: entries {not_tensors[:10]} are not tensors.")
    return load_state_dict_checked(net, dict(content)).eval()
