"""score_sde's NCSN++ (Song et al., ICLR 2021) as TPDM uses it, with loading of the official checkpoints.

The module tree is score_sde's: one flat ``all_modules`` ``nn.ModuleList`` plus the ``sigmas`` buffer, so an official
state dict (``all_modules.<i>.<sub>``, ``sigmas``) loads without a key map and the parameter order is the order of
score_sde's EMA list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medgen.networks.checkpoint import build_uninitialized
from medgen.networks.score_sde_layers import (
    AttnBlock,
    Combine,
    Downsample,
    GaussianFourierProjection,
    ResnetBlockBigGAN,
    ResnetBlockDDPM,
    ScoreSdeUNet,
    Upsample,
    config_value,
    conv3x3,
    default_linear,
    downsample_2d,
    flatten_config,
    group_norm,
    load_score_sde_checkpoint,
    norm_act,
    rescaled_sum,
    score_sde_kwargs,
    sinusoidal_embedding,
    upsample_2d,
)

__all__ = ["NCSNpp", "ncsnpp_from_official"]

_PROGRESSIVE = ("none", "output_skip", "residual")
_PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
# model.<field> read by NCSNpp.from_config besides the ones every score_sde U-Net reads (see score_sde_kwargs)
_NCSNPP_FIELDS = {
    "fir": bool,
    "fir_kernel": tuple,
    "skip_rescale": bool,
    "resblock_type": None,
    "progressive": None,
    "progressive_input": None,
    "progressive_combine": None,
    "embedding_type": None,
    "fourier_scale": float,
    "init_scale": float,
}


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}.")
    return value.lower()


class NCSNpp(ScoreSdeUNet):
    """NCSN++ noise-conditional score network (score_sde ``models/ncsnpp.py``), 2D.

    The defaults are TPDM's ``BMR_ZSR_256`` configuration (61,433,601 parameters): 256x256 single-channel images in
    [0, 1], ``nf=128``, ``ch_mult=(1, 2, 2, 2)``, 4 BigGAN residual blocks per level, attention at 16x16, FIR
    resampling with ``[1, 3, 3, 1]``, residual input pyramid, Gaussian Fourier embedding of ``log(sigma)`` and the
    output divided by sigma (so the output IS the score of the VE-SDE marginal).

    Every score_sde option is supported: ``resblock_type`` ``'biggan'``/``'ddpm'``, ``progressive``
    ``'none'``/``'output_skip'``/``'residual'``, ``progressive_input`` ``'none'``/``'input_skip'``/``'residual'``,
    ``progressive_combine`` ``'sum'``/``'cat'``, ``embedding_type`` ``'fourier'``/``'positional'``, FIR or plain
    resampling, conditional or not. Differences from score_sde, none affecting a configuration score_sde can run:

    - whether a level has attention is decided from ``image_size`` at construction (score_sde compares the feature
      width with ``attn_resolutions`` at run time); inputs of another size are accepted and keep the trained
      structure.
    - FIR up-sampling fused with a convolution (``progressive='residual'`` or ``resblock_type='ddpm'`` with
      ``fir=True``) raises in score_sde (a negative-step slice); here it runs the intended StyleGAN2 operation.
    - the activation ``'swish'`` is ``nn.SiLU`` as in score_sde (the parity reference); TPDM's vendored
      ``x * sigmoid(x)`` differs by float rounding (about 2.5e-6 on a small network's output).

    Args:
        in_channels: image channels (score_sde ``data.num_channels``); the output has as many.
        image_size: the training image size (used to place attention: levels whose size is in ``attn_resolutions``).
        nf: base feature width.
        ch_mult: width multiplier per resolution level.
        num_res_blocks: residual blocks per level.
        attn_resolutions: feature-map sizes that get self-attention.
        dropout: dropout probability inside residual blocks.
        resamp_with_conv: up/downsampling layers with a convolution (``resblock_type='ddpm'`` only).
        conditional: condition on the noise level (time embedding); else the embedding is computed but not used.
        fir: FIR resampling (else nearest/average pooling).
        fir_kernel: the 1D FIR taps.
        skip_rescale: divide residual sums by ``sqrt(2)``.
        resblock_type: ``'biggan'`` (resampling residual blocks) or ``'ddpm'`` (separate resampling layers).
        progressive: output pyramid: ``'none'``, ``'output_skip'`` or ``'residual'``.
        progressive_input: input pyramid: ``'none'``, ``'input_skip'`` or ``'residual'``.
        progressive_combine: how ``'input_skip'`` merges the pyramid: ``'sum'`` or ``'cat'``.
        embedding_type: ``'fourier'`` (of ``log(sigma)``, continuous sigma) or ``'positional'`` (sinusoidal, of an
            integer noise-level index into ``sigmas``).
        fourier_scale: std of the Fourier frequencies.
        init_scale: init scale of the layers closing residual branches and of the output convolution
            (0 means 1e-10).
        scale_by_sigma: divide the output by sigma.
        centered: inputs are in [-1, 1]; when False (TPDM) inputs are taken to be in [0, 1] and mapped by ``2x - 1``.
        nonlinearity: ``'swish'``, ``'elu'``, ``'relu'`` or ``'lrelu'``.
        sigma_min: smallest noise std of the ``sigmas`` buffer.
        sigma_max: largest noise std of the ``sigmas`` buffer.
        num_scales: length of the ``sigmas`` buffer (float64, geometric, descending).

    Raises:
        ValueError: an option is not one of the listed values, or a size does not fit.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 256,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        conditional: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        resblock_type: str = "biggan",
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        embedding_type: str = "fourier",
        fourier_scale: float = 16.0,
        init_scale: float = 0.0,
        scale_by_sigma: bool = True,
        centered: bool = False,
        nonlinearity: str = "swish",
        sigma_min: float = 0.01,
        sigma_max: float = 378.0,
        num_scales: int = 2000,
    ) -> None:
        super().__init__(
            in_channels, image_size, nf, ch_mult, num_res_blocks, attn_resolutions, nonlinearity, sigma_min,
            sigma_max, num_scales,
        )
        resblock_type = _choice("resblock_type", resblock_type, ("biggan", "ddpm"))
        progressive = _choice("progressive", progressive, _PROGRESSIVE)
        progressive_input = _choice("progressive_input", progressive_input, _PROGRESSIVE_INPUT)
        combine_method = _choice("progressive_combine", progressive_combine, ("sum", "cat"))
        embedding_type = _choice("embedding_type", embedding_type, ("fourier", "positional"))
        act, num_resolutions, ch_mult = self.act, self.num_resolutions, self.ch_mult
        self.conditional, self.fir, self.fir_kernel = conditional, fir, tuple(fir_kernel)
        self.skip_rescale, self.resblock_type = skip_rescale, resblock_type
        self.progressive, self.progressive_input = progressive, progressive_input
        self.embedding_type, self.scale_by_sigma, self.centered = embedding_type, scale_by_sigma, centered

        modules: list[nn.Module] = []
        if embedding_type == "fourier":
            modules.append(GaussianFourierProjection(embedding_size=nf, scale=fourier_scale))
            embed_dim = 2 * nf
        else:
            embed_dim = nf
        if conditional:
            modules.append(default_linear(embed_dim, nf * 4))
            modules.append(default_linear(nf * 4, nf * 4))

        def attn(channels: int) -> nn.Module:
            return AttnBlock(channels, skip_rescale=skip_rescale, init_scale=init_scale)

        def resblock(in_ch: int, out_ch: int | None = None, up: bool = False, down: bool = False) -> nn.Module:
            if resblock_type == "ddpm":
                return ResnetBlockDDPM(
                    act,
                    in_ch,
                    out_ch,
                    temb_dim=nf * 4,
                    dropout=dropout,
                    skip_rescale=skip_rescale,
                    init_scale=init_scale,
                )
            return ResnetBlockBigGAN(
                act,
                in_ch,
                out_ch,
                temb_dim=nf * 4,
                up=up,
                down=down,
                dropout=dropout,
                fir=fir,
                fir_kernel=fir_kernel,
                skip_rescale=skip_rescale,
                init_scale=init_scale,
            )

        channels = in_channels
        input_pyramid_ch = channels
        modules.append(conv3x3(channels, nf))
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
                if resblock_type == "ddpm":
                    modules.append(Downsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, down=True))
                if progressive_input == "input_skip":
                    modules.append(Combine(input_pyramid_ch, in_ch, method=combine_method))
                    if combine_method == "cat":
                        in_ch *= 2
                elif progressive_input == "residual":
                    modules.append(Downsample(input_pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel))
                    input_pyramid_ch = in_ch
                hs_c.append(in_ch)

        in_ch = hs_c[-1]
        modules.append(resblock(in_ch))
        modules.append(attn(in_ch))
        modules.append(resblock(in_ch))

        pyramid_ch = 0
        for i_level in reversed(range(num_resolutions)):
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[i_level]
                modules.append(resblock(in_ch + hs_c.pop(), out_ch))
                in_ch = out_ch
            if self.level_has_attention[i_level]:
                modules.append(attn(in_ch))
            if progressive != "none":
                if i_level == num_resolutions - 1:
                    modules.append(group_norm(in_ch))
                    if progressive == "output_skip":
                        modules.append(conv3x3(in_ch, channels, init_scale=init_scale))
                        pyramid_ch = channels
                    else:
                        modules.append(conv3x3(in_ch, in_ch, bias=True))
                        pyramid_ch = in_ch
                elif progressive == "output_skip":
                    modules.append(group_norm(in_ch))
                    modules.append(conv3x3(in_ch, channels, bias=True, init_scale=init_scale))
                    pyramid_ch = channels
                else:
                    modules.append(Upsample(pyramid_ch, in_ch, with_conv=True, fir=fir, fir_kernel=fir_kernel))
                    pyramid_ch = in_ch
            if i_level != 0:
                if resblock_type == "ddpm":
                    modules.append(Upsample(in_ch, with_conv=resamp_with_conv, fir=fir, fir_kernel=fir_kernel))
                else:
                    modules.append(resblock(in_ch, up=True))

        if progressive != "output_skip":
            modules.append(group_norm(in_ch))
            modules.append(conv3x3(in_ch, channels, init_scale=init_scale))
        self.all_modules = nn.ModuleList(modules)

    @classmethod
    def from_config(cls, config: Any) -> NCSNpp:
        """Build from a score_sde configuration with its field names (``model.nf``, ``data.image_size``, ...).

        Args:
            config: flat dotted mapping (as in ``tests/data/parity/ncsnpp_tiny.pt``), nested mapping or
                ``ml_collections.ConfigDict``. Uses ``data.{num_channels, image_size, centered}`` and
                ``model.{nf, ch_mult, num_res_blocks, attn_resolutions, dropout, resamp_with_conv, conditional, fir,
                fir_kernel, skip_rescale, resblock_type, progressive, progressive_input, progressive_combine,
                embedding_type, fourier_scale, init_scale, scale_by_sigma, nonlinearity, sigma_min, sigma_max,
                num_scales}``; ``model.normalization`` must be ``GroupNorm`` and ``model.conv_size`` 3 when present.

        Raises:
            ValueError: a required field is missing or has an unsupported value.
        """
        flat = flatten_config(config)
        if int(config_value(flat, "model.conv_size", 3)) != 3:
            raise ValueError(f"model.conv_size must be 3, got {flat['model.conv_size']!r}.")
        return cls(**score_sde_kwargs(flat, "NCSNpp", "ncsnpp", _NCSNPP_FIELDS, {"model.fourier_scale": 16.0}))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Evaluate the score network.

        Args:
            x: noisy images ``(B, C, H, W)`` in image units (``[0, 1]`` data plus noise when ``centered=False``);
                H and W multiples of ``2**(len(ch_mult) - 1)``.
            sigma: with ``embedding_type='fourier'``: the VE noise std of each sample, shape ``(B,)`` or a scalar,
                in image units (TPDM: ``sigma(t) = 0.01 * 37800**t``). With ``'positional'``: the integer index of
                the noise level in ``self.sigmas`` (descending), shape ``(B,)``.

        Returns:
            ``(B, C, H, W)``: with ``scale_by_sigma`` the score ``grad_x log p_sigma(x)`` (network output divided by
            sigma), else the raw network output.
        """
        sigma = self.check_input(x, sigma, "sigma")
        if self.embedding_type == "fourier":
            sigma = sigma.to(dtype=x.dtype)
        modules = iter(self.all_modules)
        if self.embedding_type == "fourier":
            used_sigmas = sigma
            temb = next(modules)(torch.log(sigma))
        else:
            used_sigmas = self.sigmas[sigma.long()]
            temb = sinusoidal_embedding(sigma, self.nf).to(dtype=x.dtype)
        if self.conditional:
            temb = next(modules)(temb)
            temb = next(modules)(self.act(temb))
        else:
            temb = None

        if not self.centered:
            x = 2 * x - 1.0

        input_pyramid = x if self.progressive_input != "none" else None
        hs = [next(modules)(x)]
        for i_level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                h = next(modules)(hs[-1], temb)
                if self.level_has_attention[i_level]:
                    h = next(modules)(h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                if self.resblock_type == "ddpm":
                    h = next(modules)(hs[-1])
                else:
                    h = next(modules)(hs[-1], temb)
                if self.progressive_input == "input_skip":
                    input_pyramid = self._pyramid_downsample(input_pyramid)
                    h = next(modules)(input_pyramid, h)
                elif self.progressive_input == "residual":
                    input_pyramid = next(modules)(input_pyramid)
                    input_pyramid = self._merge(input_pyramid, h)
                    h = input_pyramid
                hs.append(h)

        h = hs[-1]
        h = next(modules)(h, temb)
        h = next(modules)(h)
        h = next(modules)(h, temb)

        pyramid = None
        for i_level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = next(modules)(torch.cat([h, hs.pop()], dim=1), temb)
            if self.level_has_attention[i_level]:
                h = next(modules)(h)
            if self.progressive != "none":
                if i_level == self.num_resolutions - 1:
                    pyramid = self._norm_act_conv(modules, h)
                elif self.progressive == "output_skip":
                    pyramid = self._pyramid_upsample(pyramid) + self._norm_act_conv(modules, h)
                else:
                    pyramid = self._merge(next(modules)(pyramid), h)
                    h = pyramid
            if i_level != 0:
                h = next(modules)(h) if self.resblock_type == "ddpm" else next(modules)(h, temb)

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self._norm_act_conv(modules, h)
        if next(modules, None) is not None:
            raise RuntimeError("NCSNpp.forward did not use every module; construction and forward disagree.")

        return self.divide_by_sigma(h, used_sigmas) if self.scale_by_sigma else h

    def _norm_act_conv(self, modules: Iterator[nn.Module], h: torch.Tensor) -> torch.Tensor:
        norm, conv = next(modules), next(modules)
        return conv(norm_act(norm, self.act, h))

    def _merge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return rescaled_sum(a, b, self.skip_rescale)

    def _pyramid_downsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return downsample_2d(x, self.fir_kernel, factor=2)
        return torch.nn.functional.avg_pool2d(x, 2, stride=2)

    def _pyramid_upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir:
            return upsample_2d(x, self.fir_kernel, factor=2)
        return torch.nn.functional.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2), mode="nearest")


def ncsnpp_from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any], config: Any, use_ema: bool = True
) -> NCSNpp:
    """Build :class:`NCSNpp` from a score_sde/TPDM config and load an official checkpoint (``from_official`` kind
    ``"score_sde_ncsnpp"``).

    TPDM samples with the EMA weights (``ema.copy_to`` after restoring), hence ``use_ema=True`` by default.

    Args:
        checkpoint: a score_sde training checkpoint (path or dict) or a bare state dict; see
            :func:`medgen.networks.score_sde_layers.load_score_sde_checkpoint`.
        config: the score_sde config (flat dotted, nested or ``ConfigDict``); see :meth:`NCSNpp.from_config`.
        use_ema: use the EMA ``shadow_params`` of a training checkpoint.

    Returns:
        the loaded network in eval mode.
    """
    network = build_uninitialized(lambda: NCSNpp.from_config(config))
    return load_score_sde_checkpoint(network, checkpoint, use_ema).eval()
