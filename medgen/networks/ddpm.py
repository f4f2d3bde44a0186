"""score_sde's DDPM U-Net (Ho et al. 2020, PyTorch port in score_sde ``models/ddpm.py``) as HFS-SDE uses it.

The module tree is score_sde's (flat ``all_modules`` ``nn.ModuleList`` plus a float64 ``sigmas`` buffer), so official
state dicts load without a key map.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medgen.networks.checkpoint import build_uninitialized
from medgen.networks.score_sde_layers import (
    AttnBlock,
    Downsample,
    ResnetBlockDDPM,
    ScoreSdeUNet,
    Upsample,
    conv3x3,
    default_linear,
    flatten_config,
    group_norm,
    load_score_sde_checkpoint,
    norm_act,
    score_sde_kwargs,
    sinusoidal_embedding,
)

__all__ = ["DDPMUNet", "ddpm_from_official"]

_NUM_GROUPS = 32


class DDPMUNet(ScoreSdeUNet):
    """The DDPM U-Net of score_sde, 2D, conditioned on a float time label through a sinusoidal embedding.

    Defaults are HFS-SDE's ``ddpm_continuous`` network for 320x320 two-channel (real, imaginary) images:
    ``nf=128``, ``ch_mult=(1, 2, 2, 2)``, 2 residual blocks per level, attention at 16x16 (never reached at 320, so
    only the middle attention block is used), dropout 0.1, GroupNorm with 32 groups.

    Official quirks kept because trained weights depend on them:

    - ``centered=False`` maps the input by ``2x - 1`` (meant for [0, 1] data; HFS-SDE feeds std-normalised complex
      images and still trained with it).
    - ``scale_by_sigma=True`` divides the output by ``sigmas[time_label.long()]``: the float label is truncated to an
      index into the descending ``sigmas`` table (``sigma_lookup="index"``, the official behaviour baked into
      score_sde's VE DDPM checkpoints, wrong when the label is a std). ``sigma_lookup="label"`` divides by the
      label itself instead (correct when the label is the noise std).

    Args:
        in_channels: image channels (score_sde ``data.num_channels``); the output has as many.
        image_size: the training image size (used to place attention: levels whose size is in ``attn_resolutions``).
        nf: base feature width (a multiple of 32 for the 32-group GroupNorm).
        ch_mult: width multiplier per resolution level.
        num_res_blocks: residual blocks per level.
        attn_resolutions: feature-map sizes that get self-attention.
        dropout: dropout probability in residual blocks.
        resamp_with_conv: up/downsampling layers with a 3x3 convolution.
        conditional: condition on the time label; when False the label is ignored.
        centered: inputs already in [-1, 1]; when False the network applies ``2x - 1`` first.
        scale_by_sigma: divide the output by a sigma (see ``sigma_lookup``).
        sigma_lookup: ``"index"`` (official: ``sigmas[time_label.long()]``) or ``"label"`` (``time_label`` itself).
        nonlinearity: ``'swish'``, ``'elu'``, ``'relu'`` or ``'lrelu'``.
        sigma_min: smallest std of the ``sigmas`` buffer.
        sigma_max: largest std of the ``sigmas`` buffer.
        num_scales: length of the ``sigmas`` buffer (float64, geometric, descending).

    Raises:
        ValueError: a size or option does not fit.
    """

    def __init__(
        self,
        in_channels: int = 2,
        image_size: int = 320,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resamp_with_conv: bool = True,
        conditional: bool = True,
        centered: bool = False,
        scale_by_sigma: bool = False,
        sigma_lookup: str = "index",
        nonlinearity: str = "swish",
        sigma_min: float = 0.01,
        sigma_max: float = 348.0,
        num_scales: int = 1000,
    ) -> None:
        if nf < _NUM_GROUPS or nf % _NUM_GROUPS:
            raise ValueError(f"nf must be a positive multiple of {_NUM_GROUPS} (GroupNorm groups), got {nf}.")
        if sigma_lookup not in ("index", "label"):
            raise ValueError(f"sigma_lookup must be 'index' or 'label', got {sigma_lookup!r}.")
        super().__init__(
            in_channels, image_size, nf, ch_mult, num_res_blocks, attn_resolutions, nonlinearity, sigma_min,
            sigma_max, num_scales,
        )
        act, num_resolutions, ch_mult = self.act, self.num_resolutions, self.ch_mult
        self.conditional, self.centered = conditional, centered
        self.scale_by_sigma, self.sigma_lookup = scale_by_sigma, sigma_lookup

        def resblock(in_ch: int, out_ch: int | None = None) -> nn.Module:
            return ResnetBlockDDPM(
                act,
                in_ch,
                out_ch,
                temb_dim=4 * nf,
                dropout=dropout,
                skip_rescale=False,
                init_scale=0.0,
                num_groups=_NUM_GROUPS,
            )

        def attn(channels: int) -> nn.Module:
            return AttnBlock(channels, skip_rescale=False, init_scale=0.0, num_groups=_NUM_GROUPS)

        modules: list[nn.Module] = []
        if conditional:
            modules.append(default_linear(nf, nf * 4))
            modules.append(default_linear(nf * 4, nf * 4))
        modules.append(conv3x3(in_channels, nf))
        hs_c = [nf]
        in_ch = nf
        for i_level in range(num_resolutions):
            for _ in range(num_res_blocks):
                out_ch = nf * ch_mult[i_level]
                modules.append(resblock(in_ch, out_ch))
                in_ch = out_ch
                if self.level_has_attention[i_level]:
                    modules.append(attn(in_ch))
                hs_c.append(in_ch)
            if i_level != num_resolutions - 1:
                modules.append(Downsample(in_ch, with_conv=resamp_with_conv))
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        modules.append(resblock(in_ch))
        modules.append(attn(in_ch))
        modules.append(resblock(in_ch))

        for i_level in reversed(range(num_resolutions)):
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                modules.append(resblock(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            if self.level_has_attention[i_level]:
                modules.append(attn(in_ch))
            if i_level != 0:
                modules.append(Upsample(in_ch, with_conv=resamp_with_conv))

        modules.append(group_norm(in_ch, _NUM_GROUPS))
        modules.append(conv3x3(in_ch, in_channels, init_scale=0.0))
        self.all_modules = nn.ModuleList(modules)

    @classmethod
    def from_config(cls, config: Any, sigma_lookup: str = "index") -> DDPMUNet:
        """Build from a score_sde/HFS-SDE configuration with its field names.

        Args:
            config: flat dotted mapping, nested mapping (as in ``tests/data/parity/hfs_sde.pt``) or
                ``ml_collections.ConfigDict``. Uses ``data.{num_channels, image_size, centered}`` and
                ``model.{nf, ch_mult, num_res_blocks, attn_resolutions, dropout, resamp_with_conv, conditional,
                scale_by_sigma, nonlinearity, sigma_min, sigma_max, num_scales}``; ``model.normalization`` must be
                ``GroupNorm`` when present. ``model.embedding_type`` is ignored (the DDPM net always embeds
                sinusoidally), as in the official code.
            sigma_lookup: see the class docstring; ``"index"`` is the official behaviour.

        Raises:
            ValueError: a required field is missing or has an unsupported value.
        """
        return cls(sigma_lookup=sigma_lookup, **score_sde_kwargs(flatten_config(config), "DDPMUNet", "ddpm"))

    def forward(self, x: torch.Tensor, time_label: torch.Tensor | float) -> torch.Tensor:
        """Evaluate the network.

        Args:
            x: images ``(B, C, H, W)``; H and W multiples of ``2**(len(ch_mult) - 1)``. HFS-SDE: the perturbed
                coil-combined image as (real, imaginary) channels, std-normalised.
            time_label: the float label embedded sinusoidally, shape ``(B,)`` or a scalar. HFS-SDE passes the
                marginal std of its SDE at time t (``sqrt(1 - exp(2 * log_mean_coeff(t)))``); score_sde's discrete
                VP training passes the integer step ``t * (N - 1)``.

        Returns:
            ``(B, C, H, W)``: the raw network output (HFS-SDE uses it as the score directly), divided by a sigma when
            ``scale_by_sigma`` (see ``sigma_lookup``).
        """
        labels = self.check_input(x, time_label, "time_label")

        modules = iter(self.all_modules)
        if self.conditional:
            temb = next(modules)(sinusoidal_embedding(labels, self.nf).to(dtype=x.dtype))
            temb = next(modules)(self.act(temb))
        else:
            temb = None

        h = x if self.centered else 2 * x - 1.0
        hs = [next(modules)(h)]
        for i_level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                h = next(modules)(hs[-1], temb)
                if self.level_has_attention[i_level]:
                    h = next(modules)(h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                hs.append(next(modules)(hs[-1]))

        h = hs[-1]
        h = next(modules)(h, temb)
        h = next(modules)(h)
        h = next(modules)(h, temb)

        for i_level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = next(modules)(torch.cat([h, hs.pop()], dim=1), temb)
            if self.level_has_attention[i_level]:
                h = next(modules)(h)
            if i_level != 0:
                h = next(modules)(h)

        norm, conv = next(modules), next(modules)
        h = conv(norm_act(norm, self.act, h))

        if self.scale_by_sigma:
            h = self.divide_by_sigma(h, self.sigmas[labels.long()] if self.sigma_lookup == "index" else labels)
        return h


def ddpm_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Any, use_ema: bool = False
) -> DDPMUNet:
    """Build :class:`DDPMUNet` from a score_sde/HFS-SDE config and load an official checkpoint (``from_official`` kind
    ``"score_sde_ddpm"``).

    HFS-SDE samples with the RAW model weights (its ``run_lib.sample`` restores the EMA but never copies it into the
    model), hence ``use_ema=False`` by default; ``use_ema=True`` gives the EMA weights.

    Args:
        checkpoint: a score_sde training checkpoint ``{'model', 'ema', 'optimizer', 'step'}`` (path or dict) or a
            bare state dict; see :func:`medgen.networks.score_sde_layers.load_score_sde_checkpoint`.
        config: the score_sde/HFS-SDE config (flat dotted, nested or ``ConfigDict``); see
            :meth:`DDPMUNet.from_config`.
        use_ema: use the EMA ``shadow_params`` of a training checkpoint.

    Returns:
        the loaded network in eval mode.
    """
    network = build_uninitialized(lambda: DDPMUNet.from_config(config))
    return load_score_sde_checkpoint(network, checkpoint, use_ema).eval()
