"""WDM / cWDM sampling: a DDPM in the 3D Haar wavelet domain (Friedrich et al., MICCAI DGM 2024; cWDM 2024).

:class:`WaveletDiffusionInferer` runs a :class:`~medgen.diffusion.gaussian.GaussianDiffusion` on the eight Haar
subbands of the image, as the official ``scripts/generation_sample.py`` (WDM) and ``scripts/sample.py`` (cWDM) do.

Example (a randomly initialised tiny network, so the result is noise-like; load real weights with
``medgen.networks.convert.from_official("guided_unet", checkpoint, config)``)::

    >>> import torch
    >>> from medgen.networks.guided_unet import GuidedUNet
    >>> from medgen.inferers.wavelet import WaveletDiffusionInferer
    >>> net = GuidedUNet(spatial_dims=3, in_channels=8, out_channels=8, model_channels=16, channel_mult=(1, 2),
    ...                  num_res_blocks=1, num_groups=8, additive_skips=True, bottleneck_attention=False)
    >>> inferer = WaveletDiffusionInferer(timestep_respacing=5, seed=0, progress=False)
    >>> volume = inferer((1, 1, 15, 16, 17), net)   # a shape (or a template volume) in image space
    >>> tuple(volume.shape), volume.affine.tolist() == torch.eye(4).tolist()
    ((1, 1, 15, 16, 17), True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor

from medgen.checks import check_box, check_callable, check_int, check_number, check_volume, check_volume_shape
from medgen.diffusion.consistency import RePaint, StepContext
from medgen.diffusion.gaussian import wdm_diffusion
from medgen.diffusion.samplers import discrete_walk, repaint_schedule
from medgen.diffusion.views import WaveletView
from medgen.inferers.base import DiffusionSamplingInferer
from medgen.networks.checkpoint import check_network_attribute, network_device_dtype, unwrap_network

__all__ = ["WaveletDiffusionInferer", "WDMSettings", "WDM_OFFICIAL", "CWDM_OFFICIAL", "repaint_schedule", "wdm_diffusion"]


@dataclass(frozen=True)
class WDMSettings:
    """The settings of :class:`WaveletDiffusionInferer` besides the process.

    Attributes:
        clip_denoised: clip the predicted ``x0`` in image space at every step (official: True).
        clip_range: ``(low, high)`` image-space range of the data: ``(-1, 1)`` WDM, ``(0, 1)`` cWDM.
        lll_scale: WDM's divisor of the LLL subband (3).
        conditional: ``inputs`` are the condition volumes ``(B, n_cond, D, H, W)`` (cWDM, e.g. in a MONAI
            evaluator); otherwise ``inputs`` is a template / shape and a condition may be given as ``condition=``.
        image_channels: channels ``C`` of the generated volume when ``inputs`` are conditions (cWDM: 1).
        spatial_multiple: image-space multiple every padded size must have (one int or one per axis, even);
            ``None`` infers ``2 * network downsampling`` from the network.
        pad_value: constant used to pad conditions and the known image (``None``: ``clip_range[0]``, the background
            of WDM's and cWDM's data). Padded voxels count as known in inpainting.
        clamp_output: clamp the result to ``clip_range`` (cWDM post-processing).
        mask_condition_channel: set the result to ``clip_range[0]`` where this channel of the condition is 0 (cWDM:
            ``0``, "zero out all non-brain parts"); ``None`` disables it.
        rescale_output: map ``clip_range`` to ``[0, 1]``: ``(x + 1) / 2`` for WDM, as its sampling script saves.
        jump_length: RePaint's jump length (inpainting only).
        jump_n_sample: RePaint's number of passes per jump (``1``: no jumps).
    """

    clip_denoised: bool = True
    clip_range: tuple[float, float] = (-1.0, 1.0)
    lll_scale: float = 3.0
    conditional: bool = False
    image_channels: int = 1
    spatial_multiple: tuple[int, int, int] | None = None
    pad_value: float | None = None
    clamp_output: bool = False
    mask_condition_channel: int | None = None
    rescale_output: bool = False
    jump_length: int = 1
    jump_n_sample: int = 1

    def __post_init__(self) -> None:
        clip_range = check_box(self.clip_range, "clip_range", finite=True, allow_none=False)
        object.__setattr__(self, "clip_range", clip_range)
        check_number(self.lll_scale, "lll_scale", 0.0, open_low=True)
        check_int(self.image_channels, "image_channels", 1)
        check_int(self.mask_condition_channel, "mask_condition_channel", 0, allow_none=True)
        check_number(self.pad_value, "pad_value", allow_none=True)
        if self.spatial_multiple is not None:
            object.__setattr__(self, "spatial_multiple", WaveletView(self.spatial_multiple).multiple)
        repaint_schedule(2, self.jump_length, self.jump_n_sample)  # validates the jump counts

    @property
    def background(self) -> float:
        """The padding value: ``pad_value``, else ``clip_range[0]`` (the background of WDM's and cWDM's data)."""
        return self.clip_range[0] if self.pad_value is None else float(self.pad_value)


WDM_OFFICIAL = WDMSettings()
"""pfriedri/wdm-3d's sampler: image-space clipping to [-1, 1] (with ``rescale_output`` as its script saves)."""
CWDM_OFFICIAL = WDMSettings(clip_range=(0.0, 1.0), conditional=True, clamp_output=True, mask_condition_channel=0)
"""pfriedri/cwdm's sampler: data in [0, 1], conditions concatenated, output clamped and masked by the first condition."""


class WaveletDiffusionInferer(DiffusionSamplingInferer):
    """Sample a 3D volume with a wavelet diffusion model (WDM), optionally conditioned (cWDM) or inpainting.

    The state is the Haar coefficients ``(B, 8 C, D'/2, H'/2, W'/2)`` of the padded image (:meth:`view`, a
    :class:`~medgen.diffusion.views.WaveletView`). Per step (official ``p_sample``):

    1. ``x0 = network(x_t [, condition coefficients], t)`` (see :meth:`sample`; the conditions at every step, as cWDM);
    2. with ``clip_denoised``: ``x0`` clipped to ``clip_range`` in IMAGE space (WDM ``[-1, 1]``, cWDM ``[0, 1]``):
       :meth:`~medgen.diffusion.views.WaveletView.clip` as the ``denoised_fn`` of ``discrete_step``;
    3. the shared DDPM step (:func:`~medgen.diffusion.samplers.discrete_step`, fixed-large variance, noise drawn
       after the network call) or DDIM.

    The result is ``IDWT(x_0)`` cropped back to the input size, then :meth:`postprocess`. The defaults are the
    official sampler. Beyond it: respacing and DDIM, any size (padding to ``spatial_multiple`` with ``pad_value``,
    cropped back), and 3D inpainting with a ``mask`` and a ``known`` volume (:class:`~medgen.diffusion.consistency.
    RePaint`, with ``jump_length``/``jump_n_sample`` RePaint's jumps). The bundle ``wdm_brain_mri`` documents each
    difference.

    Args:
        diffusion: the process; default :func:`wdm_diffusion` (1000 linear steps, ``x0``, fixed-large).
        timestep_respacing, sampler, eta: see :class:`~medgen.inferers.base.DiffusionSamplingInferer`.
        settings: fields of :class:`WDMSettings` and the keywords of :class:`~medgen.inferers.base.SamplingInferer`.

    Raises:
        ValueError: invalid options.
        TypeError: options of the wrong type.
    """

    settings_type = WDMSettings
    settings: WDMSettings
    default_diffusion = staticmethod(wdm_diffusion)

    @property
    def schedule(self) -> list[int]:
        """The levels an inpainting run visits (:func:`repaint_schedule` with ``jump_length``, ``jump_n_sample``)."""
        return repaint_schedule(self.diffusion.num_timesteps, self.settings.jump_length, self.settings.jump_n_sample)

    def view(self, network: Callable[..., Any]) -> WaveletView:
        """The wavelet view: padding to ``spatial_multiple``, or ``2 *`` the network's ``input_multiple`` (1 for a
        network without one), Haar with LLL / ``lll_scale``, padding value ``pad_value``."""
        settings = self.settings
        multiple = settings.spatial_multiple
        if multiple is None:
            network_multiple = getattr(unwrap_network(network), "input_multiple", (1, 1, 1))
            multiple = tuple(2 * m for m in network_multiple)
        return WaveletView(multiple, settings.lll_scale, settings.background)

    def reverse_step(
        self,
        network: Callable[..., torch.Tensor],
        x: torch.Tensor,
        t: torch.Tensor,
        condition_coeffs: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        network_args: Sequence[Any] = (),
        network_kwargs: dict[str, Any] | None = None,
        consistency: RePaint | None = None,
    ) -> dict[str, torch.Tensor]:
        """One reverse step in the wavelet domain (official ``p_sample`` for DDPM), clipping in image space.

        Args:
            network: ``network(x, t)`` predicting the clean coefficients ``(B, 8 C, d, h, w)`` from ``x`` = noisy
                coefficients (with the condition coefficients concatenated along channels).
            x: noisy coefficients ``x_t`` ``(B, 8 C, d, h, w)``.
            t: integer timesteps ``(B,)`` of the respaced process.
            condition_coeffs: clean condition coefficients ``(B, 8 n_cond, d, h, w)`` (cWDM) or ``None``.
            generator: random generator on ``x``'s device (drawn after the network call).
            network_args, network_kwargs: further network inputs.
            consistency: inpainting term applied before the step.

        Returns:
            dict with ``sample`` (``x_{t-1}``) and ``pred_xstart`` (the clipped ``x0``).
        """
        view = WaveletView(lll_scale=self.settings.lll_scale)
        low, high = self.settings.clip_range
        clip = (lambda c: view.clip(c, low, high)) if self.settings.clip_denoised else None
        kwargs = network_kwargs or {}

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # cWDM: the condition concatenated
            inputs = x if condition_coeffs is None else torch.cat([x, condition_coeffs], dim=1)
            return network(inputs, t, *network_args, **kwargs)

        return self.step(model, x, t, generator, consistency=consistency, denoised_fn=clip)

    # ------------------------------------------------------------------------------------------------ call
    def sample(  # type: ignore[override]
        self,
        inputs: torch.Tensor | Sequence[int],
        network: Callable[..., torch.Tensor],
        *args: Any,
        condition: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MetaTensor:
        """Generate volumes.

        Args:
            inputs: unconditional (``conditional=False``): a template volume or a shape ``(B, C, D, H, W)`` in image
                space (only its shape, device, dtype and meta are used; ``C = 1`` for WDM); any sizes, odd included.
                With ``conditional=True``: the condition volumes ``(B, n_cond, D, H, W)`` in the data range
                (cWDM: the three other MR contrasts in ``[0, 1]``, in the order the network was trained with).
            network: ``network(x, t, *args, **kwargs)`` with ``x`` = ``(B, 8 C [+ 8 n_cond], d, h, w)`` noisy (and
                condition) coefficients and ``t`` = ``(B,)`` integer timesteps of the original process; returns the
                predicted clean coefficients ``(B, 8 C, d, h, w)``.
            args: further positional network inputs.
            condition: condition volumes ``(B, n_cond, D, H, W)`` when ``inputs`` is a template/shape.
            known: inpainting: the known volume ``(B, C, D, H, W)`` in the data range (default: a template
                ``inputs`` when ``mask`` is given and ``conditional=False``).
            mask: inpainting: ``(B or 1, 1 or C, D, H, W)`` weights in ``[0, 1]``, 1 = keep ``known``, 0 = generate.
            kwargs: further keyword network inputs.

        Returns:
            the generated volume ``(B, C, D, H, W)`` as a MetaTensor with the affine/meta of ``inputs`` (or of the
            condition / known volume when ``inputs`` is a shape; identity affine when none is a MetaTensor).

        Raises:
            TypeError, ValueError: bad inputs, shapes or network channel counts (before sampling starts).
        """
        check_callable(network, "network")
        settings = self.settings
        if settings.conditional:
            if condition is None:
                condition = inputs  # type: ignore[assignment]
            condition_t = check_volume(condition, "condition" if condition is not inputs else "inputs")
            shape = (condition_t.shape[0], settings.image_channels, *condition_t.shape[2:])
        else:
            shape = check_volume_shape(inputs, "inputs")
            condition_t = None if condition is None else check_volume(condition, "condition")
        batch, channels, spatial = shape[0], shape[1], tuple(shape[2:])
        if condition_t is not None and (condition_t.shape[0] != batch or tuple(condition_t.shape[2:]) != spatial):
            raise ValueError(
                f"condition must have batch {batch} and spatial size {spatial} like the output, got shape "
                f"{tuple(condition_t.shape)}."
            )
        channel = settings.mask_condition_channel
        if condition_t is None and channel is not None:
            raise ValueError(f"mask_condition_channel={channel} needs a condition, got none.")
        if condition_t is not None and channel is not None and channel >= condition_t.shape[1]:
            raise ValueError(f"mask_condition_channel={channel} but the condition has {condition_t.shape[1]} channels.")
        known_t, mask_t = self._inpainting_inputs(inputs, known, mask, shape)

        reference = next((v for v in (inputs, condition_t, known_t) if isinstance(v, torch.Tensor)), None)
        device, dtype = network_device_dtype(network, reference)

        view = self.view(network)
        padded = view.padded(spatial)
        coeff_shape = (batch, 8 * channels, *(p // 2 for p in padded))
        n_cond = 0 if condition_t is None else condition_t.shape[1]
        expected_in, expected_out = 8 * (channels + n_cond), 8 * channels
        image = f" (8 subbands x {channels} image channel(s)"
        check_network_attribute(network, "in_channels", expected_in, image + (f" + 8 x {n_cond} condition channel(s))"
                                                                              if n_cond else ")"))
        check_network_attribute(network, "out_channels", expected_out, image + ")")

        def coefficients(volume: torch.Tensor) -> torch.Tensor:
            return view.from_image(volume.to(device=device, dtype=dtype))

        condition_coeffs = None if condition_t is None else coefficients(condition_t)
        inpaint = None
        if mask_t is not None and known_t is not None:
            padded_mask = view.pad(mask_t.to(device=device, dtype=dtype), value=1.0)
            inpaint = RePaint(padded_mask, coefficients(known_t), to_image=view.idwt, from_image=view.dwt)

        generator = self.generator(device)
        state = {"x": torch.randn(coeff_shape, generator=generator, device=device, dtype=dtype)}

        def reverse(x: torch.Tensor, t: torch.Tensor, target: int) -> torch.Tensor:
            x = self.reverse_step(network, x, t, condition_coeffs, generator, args, kwargs, inpaint)["sample"]
            if inpaint is not None and target == -1:
                (x,) = inpaint.apply(StepContext(x_in=x), x)  # the clean known image after the last step
            return x

        num_steps, step = discrete_walk(self.diffusion, reverse, None if inpaint is None else self.schedule, generator)
        loop = self.sampling_loop(
            num_steps,
            shape,
            extra={"padded_shape": list(padded), "dtype": str(dtype), "condition": condition_t, "known": known_t,
                   "mask": mask_t},
        )
        with torch.no_grad():
            coeffs = loop.run(state, step, generator=generator)["x"]
            image = self.postprocess(view.to_image(coeffs, spatial), condition_t)
        like = next((v for v in (inputs, condition, known) if isinstance(v, MetaTensor)), None)
        return self.wrap_output(image, like)

    def _inpainting_inputs(
        self, inputs: Any, known: Any, mask: Any, shape: Sequence[int]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validated ``(known, mask)`` of an inpainting call (``(None, None)`` otherwise)."""
        batch, channels, spatial = shape[0], shape[1], tuple(shape[2:])
        if mask is None:
            if known is not None:
                raise ValueError("known was given without a mask; pass mask (1 = known voxel) for inpainting.")
            if self.settings.jump_n_sample > 1:
                raise ValueError(
                    f"jump_n_sample={self.settings.jump_n_sample} (RePaint jumps) needs inpainting inputs, got no mask."
                )
            return None, None
        if isinstance(mask, torch.Tensor) and not (mask.is_floating_point() or mask.is_complex()):
            mask = mask.float()  # a bool or integer 0/1 mask
        mask_t = check_volume(mask, "mask")
        if known is None and isinstance(inputs, torch.Tensor) and not self.settings.conditional:
            known = inputs
        known_t = check_volume(known, "known")
        if tuple(known_t.shape) != tuple(shape):
            raise ValueError(f"known must have the output shape {tuple(shape)}, got {tuple(known_t.shape)}.")
        if mask_t.shape[0] not in (1, batch) or mask_t.shape[1] not in (1, channels) or (
            tuple(mask_t.shape[2:]) != spatial
        ):
            raise ValueError(
                f"mask must have shape ({batch} or 1, {channels} or 1, *{spatial}), got {tuple(mask_t.shape)}."
            )
        return known_t, mask_t  # RePaint checks the weights

    def postprocess(self, image: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """cWDM/WDM output steps: ``clamp_output``, then ``mask_condition_channel``, then ``rescale_output``.

        Args:
            image: generated volume ``(B, C, D, H, W)`` in the data range.
            condition: the condition volumes ``(B, n_cond, D, H, W)`` (for ``mask_condition_channel``).
        """
        settings = self.settings
        low, high = settings.clip_range
        if settings.clamp_output:
            image = image.clamp(low, high)
        if settings.mask_condition_channel is not None and condition is not None:
            channel = settings.mask_condition_channel
            image = image.masked_fill((condition[:, channel : channel + 1] == 0).to(image.device), low)
        if settings.rescale_output:
            image = (image - low) / (high - low)
        return image
