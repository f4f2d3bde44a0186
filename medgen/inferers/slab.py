"""CTCA semantic diffusion sampling: label map -> CT angiography volume (low-res whole volume, high-res z-slabs).

The CTCA patched SDM (Manubolgia/semantic-diffusion-model, branches ``3d_sdm`` and ``3d_sdm_hr_sliceref``) generates
a volume in two stages:

1. :class:`SemanticDiffusionInferer`: a low-res model (64^3) samples the whole volume from its one-hot label map.
2. :class:`SlabPatchInferer`: a high-res model samples the 128^3 volume as z-slabs of 128x128x16, each conditioned on
   its labels, its z-position and the low-res volume cropped to the slab (the "reference"); the slabs are stitched
   along z.

Both run the official process (:func:`sdm_diffusion`, ``clip_denoised``) with the official classifier-free guidance
(:meth:`SemanticDiffusionInferer.guided`).

Example (randomly initialised tiny networks, so the result is noise-like; load real weights with
``medgen.networks.convert.from_official("sdm_unet", checkpoint, config)``)::

    >>> import torch
    >>> from medgen.networks.sdm_unet import SDMUNet
    >>> from medgen.inferers.slab import SemanticDiffusionInferer, SlabPatchInferer
    >>> tiny = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=3, learn_sigma=True,
    ...             num_groups=4, spade_hidden_channels=4)
    >>> labels_lr = torch.randint(0, 3, (1, 1, 8, 8, 8))
    >>> low_res = SemanticDiffusionInferer(timestep_respacing=3, seed=0, progress=False)(labels_lr, SDMUNet(**tiny))
    >>> hr_net = SDMUNet(**tiny, position_channel=True, reference_channels=2)
    >>> labels_hr = torch.randint(0, 3, (1, 1, 16, 16, 20))
    >>> inferer = SlabPatchInferer(slab_depth=8, overlap=4, timestep_respacing=3, seed=0, progress=False)
    >>> volume = inferer(labels_hr, hr_net, reference=low_res)
    >>> tuple(low_res.shape), tuple(volume.shape)
    ((1, 1, 8, 8, 8), (1, 1, 16, 16, 20))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor

from medgen.checks import check_callable, check_int, check_no_arguments, check_number
from medgen.diffusion.gaussian import sdm_diffusion
from medgen.diffusion.priors import GuidedNetwork
from medgen.diffusion.samplers import discrete_walk
from medgen.diffusion.views import SlabView, blend_weights, slab_layout
from medgen.inferers.base import DiffusionSamplingInferer
from medgen.networks.checkpoint import unwrap_network
from medgen.networks.sdm_unet import check_label_map, check_reference, one_hot_labels, sdm_conditioning
from medgen.networks.sdm_unet import slab_conditioning

__all__ = [
    "sdm_diffusion",
    "slab_layout",
    "blend_weights",
    "SDMSettings",
    "SlabSettings",
    "SemanticDiffusionInferer",
    "SlabPatchInferer",
]

# postprocess_hr.py: voxels above this value (in [-1, 1]) are set to ``threshold_level``
OFFICIAL_THRESHOLD = 0.999

Network = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SDMSettings:
    """The settings of :class:`SemanticDiffusionInferer` besides the process.

    Attributes:
        clip_denoised: clamp the ``x0`` prediction to ``[-1, 1]`` at every step (official True).
        guidance_scale: classifier-free guidance scale ``s`` (official ``--s``, README 1 = no guidance).
        guidance_drop_reference: the unconditional pass also zeroes the reference (``3d_sdm_hr_sliceref``: True).
        num_classes: classes of the label map, for a network without a ``num_classes`` attribute (an
            :class:`~medgen.networks.sdm_unet.SDMUNet` has one; when both are given they must agree).
        threshold_level: official post-processing: voxels ``> 0.999`` are set to this value (``None``: off; official
            ``--level`` 0.9).
        rescale_output: return ``(x + 1) / 2`` (as the official sampler saves) instead of ``[-1, 1]``.
        dtype: floating dtype of the sampling state and the conditioning (float32 as the official code).
    """

    clip_denoised: bool = True
    guidance_scale: float = 1.0
    guidance_drop_reference: bool = True
    num_classes: int | None = None
    threshold_level: float | None = None
    rescale_output: bool = False
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        check_number(self.guidance_scale, "guidance_scale", finite=True)
        check_int(self.num_classes, "num_classes", 1, allow_none=True)
        check_number(self.threshold_level, "threshold_level", allow_none=True)
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {self.dtype!r}.")


@dataclass(frozen=True)
class SlabSettings(SDMSettings):
    """The settings of :class:`SlabPatchInferer`: :class:`SDMSettings` and the slabs.

    Attributes:
        slab_depth, overlap, last_slab, blend: the :class:`~medgen.diffusion.views.SlabView` (official: 16 slices, no
            overlap).
        slab_batch_size: slabs per network call (``None``: all slabs of all volumes in one call); guidance passes are
            separate calls of the same size. Does not change the result beyond floating-point batch effects.
        position_normalizer: denominator of the z-position channel (``None``: the in-plane size ``H``, official
            ``image_size``).
        reference_margin: low-res slices added on each side of a slab's reference window (``None``: ``d // 8``,
            official 8 for d = 64).
        reference_pad_value: value of reference slices outside the low-res volume (-1024).
        pad_label: class of the padded slices with ``last_slab="pad"``.
    """

    slab_depth: int = 16
    overlap: int = 0
    last_slab: str = "pad"
    blend: str = "linear"
    slab_batch_size: int | None = None
    position_normalizer: int | None = None
    reference_margin: int | None = None
    reference_pad_value: float = -1024.0
    pad_label: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.view  # validates the slab geometry
        check_int(self.slab_batch_size, "slab_batch_size", 1, allow_none=True)
        check_int(self.position_normalizer, "position_normalizer", 1, allow_none=True)
        check_int(self.reference_margin, "reference_margin", 0, allow_none=True)
        check_number(self.reference_pad_value, "reference_pad_value")
        check_int(self.pad_label, "pad_label", 0)

    @property
    def view(self) -> SlabView:
        """The slab view."""
        return SlabView(self.slab_depth, self.overlap, self.last_slab, self.blend)


class SemanticDiffusionInferer(DiffusionSamplingInferer):
    """Sample a volume from its label map with a semantic diffusion model (the CTCA low-res stage, whole volume).

    Per step (official ``p_sample``): ``network(x_t, t, y)`` (see :meth:`sample`), guided when ``guidance_scale != 1``
    (:meth:`guided`), then the shared DDPM or DDIM step (:func:`~medgen.diffusion.samplers.discrete_step`, ``x0``
    clamped to ``[-1, 1]``, noise drawn after the network calls). The official post-processing is :meth:`postprocess`
    (off by default); the bundle ``sdm_ctca`` documents the differences (respacing and DDIM work here).

    Args:
        diffusion: the process; default :func:`sdm_diffusion`.
        timestep_respacing, sampler, eta: see :class:`~medgen.inferers.base.DiffusionSamplingInferer`.
        settings: fields of :class:`SDMSettings` and the keywords of :class:`~medgen.inferers.base.SamplingInferer`.

    Raises:
        ValueError, TypeError: invalid options.
    """

    settings_type: type[SDMSettings] = SDMSettings
    settings: SDMSettings
    default_diffusion = staticmethod(sdm_diffusion)

    # ------------------------------------------------------------------------------------------------ pieces
    def inputs(self, inputs: Any, network: Network, slab: Sequence[int] | None = None) -> tuple[torch.Tensor, Any]:
        """Validated label maps and the network's ``(num_classes, position_channel, reference_channels)``.

        Args:
            inputs: label maps ``(B, 1, H, W, D)``.
            network: the SDM network (its attributes say what it expects).
            slab: the spatial shape the network sees (default: the label map's).
        """
        check_callable(network, "network")
        conditioning = sdm_conditioning(network, self.settings.num_classes)
        labels = check_label_map(inputs, conditioning[0])
        shape = tuple(labels.shape[2:]) if slab is None else tuple(slab)
        multiple = getattr(unwrap_network(network), "input_multiple", None)
        if multiple is not None and any(s % m for s, m in zip(shape, multiple)):
            raise ValueError(f"the network's inputs {shape} must be divisible by {tuple(multiple)} (its resampling).")
        return labels, conditioning

    def guided(self, network: Network) -> GuidedNetwork:
        """The network with the official classifier-free guidance (a second pass with the label map, z-position and
        -- with ``guidance_drop_reference`` -- the reference zeroed, guidance on the noise channel only)."""
        return GuidedNetwork(network, self.settings.guidance_scale, (False, not self.settings.guidance_drop_reference))

    def reverse_step(
        self, model: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One step of the configured sampler with ``model(x, t) -> (N, 2C, ...)``; returns ``x_{t-1}``."""
        return self.step(model, x, t, generator, clip_denoised=self.settings.clip_denoised)["sample"]

    def postprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``threshold_level`` (values > 0.999 -> level), then ``rescale_output`` (``(x + 1) / 2``)."""
        if self.settings.threshold_level is not None:
            image = torch.where(image > OFFICIAL_THRESHOLD, torch.full_like(image, self.settings.threshold_level), image)
        if self.settings.rescale_output:
            image = (image + 1) / 2
        return image

    def _run(
        self,
        initial_shape: tuple[int, ...],
        model: Callable[..., torch.Tensor],
        device: torch.device,
        input_shape: Sequence[int],
        extra: dict[str, Any],
    ) -> torch.Tensor:
        """Draw ``randn(initial_shape)`` and run all reverse steps of ``model`` through the sampling loop."""
        generator = self.generator(device)
        state = {"x": torch.randn(initial_shape, generator=generator, device=device, dtype=self.settings.dtype)}
        num_steps, step = discrete_walk(self.diffusion, lambda x, t, _: self.reverse_step(model, x, t, generator))
        return self.sampling_loop(num_steps, input_shape, extra=extra).run(state, step, generator=generator)["x"]

    # ------------------------------------------------------------------------------------------------ call
    def sample(  # type: ignore[override]
        self, inputs: torch.Tensor, network: Network, *args: Any, **kwargs: Any
    ) -> MetaTensor:
        """Sample one volume per label map.

        Args:
            inputs: integer label maps ``(B, 1, H, W, D)`` (integer or integer-valued float tensor, e.g. a MetaTensor
                read from NIfTI), classes ``0 .. num_classes - 1``.
            network: ``network(x, t, y)`` with ``x`` ``(B, 1, H, W, D)`` noisy volumes, ``t`` ``(B,)`` integer
                timesteps, ``y`` ``(B, num_classes, H, W, D)`` one-hot label maps; returns ``(B, 2, H, W, D)``
                (noise, variance value), e.g. the low-res :class:`~medgen.networks.sdm_unet.SDMUNet`.

        Returns:
            ``(B, 1, H, W, D)`` MetaTensor in ``[-1, 1]`` (``[0, 1]`` with ``rescale_output``) with the label map's
            affine and meta.

        Raises:
            TypeError, ValueError: bad inputs, or a network that needs a z-position channel or a reference (use
                :class:`SlabPatchInferer`), before sampling starts.
        """
        check_no_arguments(args, kwargs)
        labels, (num_classes, position, reference_channels) = self.inputs(inputs, network)
        if position or reference_channels:
            raise ValueError(
                "the network expects a z-position channel and/or a reference volume (a high-res slab model); "
                "sample it with SlabPatchInferer."
            )
        y = one_hot_labels(labels, num_classes, dtype=self.settings.dtype)

        guided = self.guided(network)

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return guided(x, t, y)

        with torch.no_grad():
            image = self._run(tuple(labels.shape), model, labels.device, labels.shape, {"labels": labels})
            image = self.postprocess(image)
        return self.wrap_output(image, inputs)


class SlabPatchInferer(SemanticDiffusionInferer):
    """Sample a high-res volume as z-slabs conditioned on labels, z-position and a low-res reference (CTCA SDM HR).

    The volume ``(B, 1, H, W, D)`` is covered by slabs (:class:`~medgen.diffusion.views.SlabView`), each conditioned
    on ``y``, its one-hot labels (plus the z-position channel when the network has ``position_channel``), and on ``r``
    (when it has ``reference_channels``), the low-res volume cut to the slab (:func:`~medgen.networks.sdm_unet.
    slab_conditioning`). All slabs of all volumes are denoised together, stacked volume-major (row ``b * K + k``),
    ``slab_batch_size`` slabs per network call.

    - Non-overlapping slabs (``overlap=0``, ``last_slab="pad"``, official): the state is the slab stack
      ``(B K, 1, H, W, slab_depth)``, sampled like the official ``image_sample.py`` with the ``K`` slabs of a volume as
      its batch (with ``B = 1`` and a CPU ``seed`` the official draws), then concatenated along z. Seams show.
    - Overlap (``overlap > 0``, or ``last_slab="shift"``): the state is the whole volume; every step the slabs' network
      outputs are averaged into one volume with :func:`~medgen.diffusion.views.blend_weights` and one diffusion step is
      taken on it (MultiDiffusion, Bar-Tal et al. 2023, on z-slabs): one sample, no seams.
    - A depth not a multiple of the slab: ``"pad"`` pads the label map with ``pad_label`` (reference slices past the
      low-res volume get -1024, as the official margins) and crops; ``"shift"`` ends the last slab at ``D``.

    Args:
        diffusion, timestep_respacing, sampler, eta: see :class:`SemanticDiffusionInferer`.
        settings: fields of :class:`SlabSettings` and the keywords of :class:`~medgen.inferers.base.SamplingInferer`.

    Raises:
        ValueError, TypeError: invalid options.
    """

    settings_type = SlabSettings

    @property
    def view(self) -> SlabView:
        """The slab view of the settings."""
        return self.settings.view

    def slab_model(
        self, network: Network, y: torch.Tensor, r: torch.Tensor | None
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``model(slabs, t) -> outputs`` over the stacked slabs, ``slab_batch_size`` slabs per (guided) call."""
        chunk = self.settings.slab_batch_size or y.shape[0]
        guided = self.guided(network)

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            rows = [slice(i, i + chunk) for i in range(0, x.shape[0], chunk)]
            outputs = [guided(x[k], t[k], y[k]) if r is None else guided(x[k], t[k], y[k], r[k]) for k in rows]
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

        return model

    def blended_model(
        self, slab_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], starts: Sequence[int]
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``model(volume, t)``: the network outputs of all slabs of ``volume`` ``(B, C, H, W, D)`` averaged back into
        one volume (:meth:`~medgen.diffusion.views.SlabView.merge`), so overlapping slabs see identical inputs."""

        def model(volume: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = slab_model(self.view.cut(volume, starts), t.repeat_interleave(len(starts)))
            return self.view.merge(out, starts, volume.shape[-1])

        return model

    def sample(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Network,
        *args: Any,
        reference: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MetaTensor:
        """Sample high-res volumes slab by slab.

        Args:
            inputs: integer label maps ``(B, 1, H, W, D)``, any depth ``D``.
            network: ``network(x, t, y[, r])`` with ``x`` ``(N, 1, H, W, slab_depth)`` noisy slabs, ``t`` ``(N,)``
                integer timesteps, ``y`` ``(N, num_classes [+1], H, W, slab_depth)``, ``r`` ``(N, 2, h, w, n)``;
                returns ``(N, 2, H, W, slab_depth)`` (noise, variance value), e.g. the high-res
                :class:`~medgen.networks.sdm_unet.SDMUNet`.
            reference: ``(B, 1, h, w, d)`` (or ``(1, 1, h, w, d)`` for all) low-res volumes in any intensity unit (they
                are min-max normalised per slab); required iff the network has a reference branch.

        Returns:
            ``(B, 1, H, W, D)`` MetaTensor in ``[-1, 1]`` (``[0, 1]`` with ``rescale_output``) with the label map's
            affine and meta.

        Raises:
            TypeError, ValueError: bad inputs (classes, in-plane or slab size the network cannot take, a missing or
                unexpected reference), before sampling starts.
        """
        check_no_arguments(args, kwargs)
        slab = (*inputs.shape[2:4], self.settings.slab_depth) if isinstance(inputs, torch.Tensor) else None
        labels, (num_classes, position, reference_channels) = self.inputs(inputs, network, slab)
        batch, _, height, width, depth = labels.shape
        if self.settings.pad_label >= num_classes:
            raise ValueError(f"pad_label must be a class in [0, {num_classes}), got {self.settings.pad_label}.")
        ref = check_reference(reference, batch, reference_channels, labels.device, self.settings.dtype)
        starts, canvas, tiled = self.view.layout(depth)
        st = self.settings
        y, r = slab_conditioning(labels, ref, starts, st.slab_depth, canvas, num_classes, position,
                                 st.position_normalizer, st.reference_margin, st.reference_pad_value, st.pad_label,
                                 st.dtype)
        slab_model = self.slab_model(network, y, r)
        extra = {"labels": labels, "reference": ref, "starts": starts, "canvas": canvas}
        device, count, sd = labels.device, len(starts), self.settings.slab_depth
        with torch.no_grad():
            if tiled:
                slabs = self._run((batch * count, 1, height, width, sd), slab_model, device, labels.shape, extra)
                volume = slabs.reshape(batch, count, 1, height, width, sd).permute(0, 2, 3, 4, 1, 5)
                volume = volume.reshape(batch, 1, height, width, count * sd)
            else:
                model = self.blended_model(slab_model, starts)
                volume = self._run((batch, 1, height, width, canvas), model, device, labels.shape, extra)
            volume = self.postprocess(volume[..., :depth])
        return self.wrap_output(volume, inputs)
