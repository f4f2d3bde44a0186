"""Training the CTCA semantic diffusion models (SDM) with MONAI engines: packed inputs and the hybrid loss with label
dropout.

:class:`~medgen.engines.training.step.DiffusionTrainingStep` hands the loss ONE tensor per batch (the ``"image"``
entry).
An SDM also needs its label map and, for the high-res slab model, the slab's z-position and low-res reference, so a
training item packs them as channels of that tensor (:func:`pack_semantic_input`)::

    [image (C) | label index (1) | z-position (1, slab model) | reference (R, slab model)]     all of size S

and :class:`SemanticDiffusionTrainingLoss` splits them again, one-hot encodes the labels and trains the network with
guided-diffusion's hybrid loss (``MSE(eps) + VLB``, learned-range variance) and SDM's classifier-free-guidance label
dropout.

**The reference is packed at the slab's size.** The official reference is smaller than the slab (e.g. ``(2, 64, 64,
24)`` for a ``128 x 128 x 16`` slab); every SPADE norm resizes it to its feature map with nearest interpolation. The
packed reference is that nearest resize to the slab size, done once: because the CTCA U-Net never resamples z and
halves the in-plane axes, resizing the packed copy to any feature map picks exactly the voxels the official resize
of the original picks, so the network output is the same (tested).

:func:`semantic_slab_items` cuts a high-res training volume into packed slabs (official ``nifti_hr`` dataset: slab
files ``_{k:04d}``, :func:`~medgen.networks.sdm_unet.slab_z_position_channel`,
:func:`~medgen.networks.sdm_unet.reference_for_slab` from a low-res version of the same volume, the official
``cta_reference``); :func:`downsample_image_and_labels` makes that low-res version (and the low-res model's training
pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Resize, ScaleIntensity
from monai.utils import convert_to_tensor
from torch import nn

from medgen.diffusion.gaussian import GaussianDiffusion, sdm_diffusion
from medgen.diffusion.losses import hybrid_loss
from medgen.networks.sdm_unet import (
    one_hot_labels,
    reference_for_slab,
    sdm_conditioning,
    slab_z_position_channel,
)

__all__ = [
    "SemanticDiffusionTrainingLoss",
    "downsample_image_and_labels",
    "pack_semantic_input",
    "semantic_slab_items",
]


def _channel_first(x: Any, name: str, ndim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) and not hasattr(x, "__array__"):
        raise TypeError(f"{name} must be a tensor or array, got {type(x).__name__}.")
    tensor = convert_to_tensor(x, track_meta=False)
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name} must be channel-first with {ndim - 1} spatial axes, got shape {tuple(tensor.shape)}.")
    return tensor


def pack_semantic_input(
    image: Any,
    label: Any,
    position: Any | None = None,
    reference: Any | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pack one training item of a semantic diffusion model into one channel-first tensor.

    Args:
        image: ``(C, *S)`` image in ``[-1, 1]``.
        label: ``(1, *S)`` integer class indices (stored as floats in the pack).
        position: ``(1, *S)`` z-position channel of a slab (:func:`~medgen.networks.sdm_unet.slab_z_position_channel`)
            or ``None``.
        reference: ``(R, *s)`` reference of a slab (:func:`~medgen.networks.sdm_unet.reference_for_slab`, any spatial
            size ``s``; resized to ``S`` with nearest interpolation, see the module docstring) or ``None``.
        dtype: floating dtype of the result.

    Returns:
        ``(C + 1 [+ 1] [+ R], *S)``: image, label, position, reference along the channels.

    Raises:
        TypeError, ValueError: inputs that are not channel-first tensors of matching spatial size.
    """
    image = _channel_first(image, "image")
    if image.ndim < 2:
        raise ValueError(f"image must be channel-first (C, *S), got shape {tuple(image.shape)}.")
    spatial = tuple(image.shape[1:])
    parts = [image.to(dtype)]
    for name, value in (("label", label), ("position", position)):
        if value is None:
            if name == "label":
                raise ValueError("label must be given.")
            continue
        value = _channel_first(value, name)
        if tuple(value.shape) != (1, *spatial):
            raise ValueError(f"{name} must have shape {(1, *spatial)}, got {tuple(value.shape)}.")
        parts.append(value.to(device=image.device, dtype=dtype))
    if reference is not None:
        reference = _channel_first(reference, "reference", image.ndim).to(device=image.device, dtype=dtype)
        parts.append(F.interpolate(reference[None], size=spatial, mode="nearest")[0])
    return torch.cat(parts)


def downsample_image_and_labels(
    image: Any, label: Any, spatial_size: Sequence[int], image_range: tuple[float, float] | None = (-1.0, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """The low-res version of a training pair: the image area-averaged (and min-max rescaled), the labels nearest.

    The label map is resized with MONAI's nearest :class:`~monai.transforms.Resize`, as the bundle's inference does
    with its input label map, so the low-res model is trained on label maps made the way it is sampled from.

    Args:
        image: ``(C, *S)`` image (tensor, MetaTensor or array).
        label: ``(1, *S)`` integer label map.
        spatial_size: the low-res size ``s``.
        image_range: min-max rescale the low-res image to this range (the CTCA preprocessing normalises each volume
            to ``[-1, 1]``); ``None`` keeps the averaged values.

    Returns:
        ``(image (C, *s) float32, label (1, *s) same dtype as label)`` as plain tensors.
    """
    image = _channel_first(image, "image").float()
    label = _channel_first(label, "label")
    if tuple(label.shape[1:]) != tuple(image.shape[1:]) or label.shape[0] != 1:
        raise ValueError(f"label must have shape {(1, *image.shape[1:])}, got {tuple(label.shape)}.")
    small = Resize(spatial_size, mode="area")(image)
    if image_range is not None:
        small = ScaleIntensity(minv=image_range[0], maxv=image_range[1])(small)
    small_label = Resize(spatial_size, mode="nearest")(label.float()).round().to(label.dtype)
    return convert_to_tensor(small, track_meta=False), convert_to_tensor(small_label, track_meta=False)


def semantic_slab_items(
    image: Any,
    label: Any,
    low_res_image: Any | None,
    slab_depth: int = 16,
    position: bool = True,
    position_normalizer: int | None = None,
    reference_margin: int | None = None,
    reference_pad_value: float = -1024.0,
    key: str = "image",
) -> list[dict[str, torch.Tensor]]:
    """All z-slabs of one high-res training volume as packed items (the official ``nifti_hr`` dataset).

    Slab ``k`` covers slices ``[k slab_depth, (k + 1) slab_depth)`` and carries its image and labels, the z-position
    channel ``2 (z / position_normalizer - 0.5)`` and the reference :func:`~medgen.networks.sdm_unet.reference_for_slab`
    of ``low_res_image`` (official ``create_reference``: the low-res volume cut to the slab's extent plus
    ``reference_margin`` slices each side, slices outside filled with ``reference_pad_value``, min-max normalised).

    Args:
        image: ``(1, H, W, D)`` high-res image, ``D`` a multiple of ``slab_depth``.
        label: ``(1, H, W, D)`` label map.
        low_res_image: ``(1, h, w, d)`` low-res version of the volume, or ``None`` for a model without reference.
        slab_depth: slices per slab.
        position: add the z-position channel (official ``pos_emb``).
        position_normalizer: denominator of the z-position (``None``: ``H``, the official ``image_size``).
        reference_margin: low-res slices added each side (``None``: ``d // 8``).
        reference_pad_value: value of reference slices outside the low-res volume (official -1024, air in HU; use the
            value of air in the reference's units).
        key: dictionary key of the packed tensor.

    Returns:
        ``[{key: (C + 1 [+ 1] [+ 2], H, W, slab_depth)}, ...]`` for ``k = 0 .. D / slab_depth - 1``.

    Raises:
        ValueError: ``D`` not a multiple of ``slab_depth`` or mismatched shapes.
    """
    image = _channel_first(image, "image", 4)
    label = _channel_first(label, "label", 4)
    if tuple(label.shape) != (1, *image.shape[1:]):
        raise ValueError(f"label must have shape {(1, *image.shape[1:])}, got {tuple(label.shape)}.")
    if isinstance(slab_depth, bool) or not isinstance(slab_depth, int) or slab_depth < 1:
        raise ValueError(f"slab_depth must be an integer >= 1, got {slab_depth!r}.")
    height, width, depth = image.shape[1:]
    if depth % slab_depth:
        raise ValueError(f"the volume depth {depth} must be a multiple of slab_depth={slab_depth}.")
    normalizer = position_normalizer or height
    items = []
    for k in range(depth // slab_depth):
        window = slice(k * slab_depth, (k + 1) * slab_depth)
        z = None
        if position:
            z = slab_z_position_channel(k, slab_depth, normalizer, (height, width), device=image.device)
        ref = None
        if low_res_image is not None:
            ref = reference_for_slab(low_res_image, k, slab_depth, depth, reference_margin, reference_pad_value)
        items.append({key: pack_semantic_input(image[..., window], label[..., window], z, ref)})
    return items


class SemanticDiffusionTrainingLoss:
    """SDM's training loss for packed inputs: hybrid loss (``MSE(eps) + VLB``) with classifier-free label dropout.

    Per call, from the generator, in the official order (``train_util.preprocess_input`` then ``forward_backward``):

    1. with ``drop_rate > 0``: one ``rand`` per item; items with ``u <= drop_rate`` get their whole conditioning
       (one-hot labels, z-position channel AND reference, as the ``3d_sdm_hr_sliceref`` branch) set to zero, which
       teaches the unconditional model classifier-free guidance samples with;
    2. ``t ~ U{0, ..., T-1}`` (guided-diffusion's ``UniformSampler``);
    3. the noise, then :func:`~medgen.diffusion.losses.hybrid_loss` (``mse`` of the noise prediction plus, for a
       learned-range variance, the variational bound with the mean detached); the result is its batch mean.

    The network is called as ``network(x_t, t, y[, r])`` (the :class:`~medgen.networks.sdm_unet.SDMUNet` signature);
    the numbers of label, position and reference channels are read from its ``num_classes``, ``position_channel``
    and ``reference_channels`` attributes (``DataParallel``/``DDP`` are unwrapped).

    Args:
        diffusion: the process; default :func:`~medgen.diffusion.gaussian.sdm_diffusion` (1000 cosine steps, epsilon
            prediction, learned-range variance).
        drop_rate: probability of dropping an item's conditioning (official ``--drop_rate``; README fine-tuning 0.2).
        image_channels: channels ``C`` of the image at the front of the pack.

    Raises:
        TypeError: ``diffusion`` is not a GaussianDiffusion.
        ValueError: ``drop_rate`` outside ``[0, 1)`` or ``image_channels < 1``.
    """

    def __init__(
        self, diffusion: GaussianDiffusion | None = None, drop_rate: float = 0.0, image_channels: int = 1
    ) -> None:
        if diffusion is None:
            diffusion = sdm_diffusion()
        if not isinstance(diffusion, GaussianDiffusion):
            raise TypeError(f"diffusion must be a GaussianDiffusion or None, got {type(diffusion).__name__}.")
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}.")
        if isinstance(image_channels, bool) or not isinstance(image_channels, int) or image_channels < 1:
            raise ValueError(f"image_channels must be an integer >= 1, got {image_channels!r}.")
        self.diffusion = diffusion
        self.drop_rate = float(drop_rate)
        self.image_channels = image_channels

    def __call__(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Args:
            network: ``network(x_t, t, y[, r])`` returning ``(B, 2 C, *S)`` (noise, variance value).
            images: packed batch ``(B, C + 1 [+ 1] [+ R], *S)`` (:func:`pack_semantic_input`): image in ``[-1, 1]``,
                label index, z-position, reference.
            generator: random generator on ``images``' device (dropout mask, timesteps, noise).

        Returns:
            the scalar loss.

        Raises:
            ValueError: the pack does not have the channels the network needs.
        """
        num_classes, position, reference_channels = sdm_conditioning(network)
        c = self.image_channels
        expected = c + 1 + int(position) + reference_channels
        if not isinstance(images, torch.Tensor) or images.ndim < 3 or images.shape[1] != expected:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"images must be packed as (B, {expected}, *S) = image ({c}), label (1)"
                f"{', z-position (1)' if position else ''}"
                f"{f', reference ({reference_channels})' if reference_channels else ''}, got {got}."
            )
        image = images[:, :c]
        y = one_hot_labels(images[:, c : c + 1].round(), num_classes, dtype=image.dtype)
        if position:
            y = torch.cat([y, images[:, c + 1 : c + 2]], dim=1)
        r = images[:, c + 1 + int(position) :] if reference_channels else None
        batch = images.shape[0]
        if self.drop_rate > 0:
            keep = torch.rand(batch, generator=generator, device=images.device) > self.drop_rate
            mask = keep.to(image.dtype).reshape(batch, *([1] * (images.ndim - 1)))
            y = y * mask
            r = None if r is None else r * mask
        t = torch.randint(0, self.diffusion.num_timesteps, (batch,), generator=generator, device=images.device)
        kwargs = {"y": y} if r is None else {"y": y, "r": r}
        return hybrid_loss(self.diffusion, network, image, t, generator=generator, model_kwargs=kwargs)["loss"].mean()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(diffusion={self.diffusion.num_timesteps} steps, drop_rate={self.drop_rate}, "
            f"image_channels={self.image_channels})"
        )
