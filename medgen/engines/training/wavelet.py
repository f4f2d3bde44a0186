"""Training losses in the form the engine calls them: ``loss(network, images, generator) -> scalar``.

Each class draws the training timesteps and noise from the generator it is given (see
:class:`medgen.engines.training.step.DiffusionTrainingStep`) and delegates the math to :mod:`medgen.diffusion.losses`.
"""

from __future__ import annotations

import torch
from torch import nn

from medgen.diffusion.gaussian import GaussianDiffusion, wdm_diffusion
from medgen.diffusion.losses import wavelet_diffusion_loss
from medgen.transforms.wavelet import haar_dwt3d

__all__ = ["WaveletDiffusionTrainingLoss"]


class WaveletDiffusionTrainingLoss:
    """WDM's training loss (:func:`~medgen.diffusion.losses.wavelet_diffusion_loss`) with ``t ~ U{0, ..., T-1}``.

    Per call: ``t`` is drawn first (one integer timestep per batch item, uniform as WDM's ``UniformSampler``), then
    the image-space noise; the loss is the mean over the 8 subbands of the per-subband MSE between the network's
    ``x0`` prediction and the Haar coefficients of the images (LLL divided by ``lll_scale``).

    cWDM (``image_channels`` set): a training batch packs the target and its conditions along the channels,
    ``[target (image_channels) | conditions (n_cond)]``; the loss is computed on the target only and the network sees
    the clean conditions' coefficients concatenated to the noisy target coefficients at every call,
    ``network(cat([x_t, DWT(conditions)], 1), t)`` (cWDM's channel concatenation in the wavelet domain, as
    :class:`~medgen.inferers.wavelet.WaveletDiffusionInferer` with ``conditional=True`` samples).

    Args:
        diffusion: an ``x0``-predicting process (default: :func:`~medgen.diffusion.gaussian.wdm_diffusion`, 1000
            linear steps).
        lll_scale: WDM's LLL divisor (3).
        image_channels: channels of the generated image at the front of each batch, the rest being conditions
            (cWDM: 1); ``None``: every channel is generated (WDM).

    Raises:
        TypeError: ``diffusion`` is not a GaussianDiffusion.
        ValueError: ``diffusion`` does not predict ``x0``, ``lll_scale <= 0`` or ``image_channels < 1``.
    """

    def __init__(
        self, diffusion: GaussianDiffusion | None = None, lll_scale: float = 3.0, image_channels: int | None = None
    ) -> None:
        if diffusion is None:
            diffusion = wdm_diffusion()
        if not isinstance(diffusion, GaussianDiffusion):
            raise TypeError(f"diffusion must be a GaussianDiffusion or None, got {type(diffusion).__name__}.")
        if diffusion.model_mean_type != "start_x":
            raise ValueError(f"WDM's loss needs an x0-predicting diffusion, got {diffusion.model_mean_type!r}.")
        if isinstance(lll_scale, bool) or not isinstance(lll_scale, (int, float)) or not lll_scale > 0:
            raise ValueError(f"lll_scale must be a number > 0, got {lll_scale!r}.")
        if image_channels is not None and (
            isinstance(image_channels, bool) or not isinstance(image_channels, int) or image_channels < 1
        ):
            raise ValueError(f"image_channels must be None or an int >= 1, got {image_channels!r}.")
        self.diffusion = diffusion
        self.lll_scale = float(lll_scale)
        self.image_channels = image_channels

    def __call__(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Args:
            network: ``network(x_t, t)`` on ``(B, 8 C [+ 8 n_cond], D/2, H/2, W/2)`` coefficients with integer
                timesteps ``(B,)``, predicting the clean coefficients of the ``C`` image channels.
            images: image batch ``(B, C [+ n_cond], D, H, W)`` in the data range (WDM ``[-1, 1]``, cWDM ``[0, 1]``),
                even sizes; with ``image_channels`` the conditions follow the target channels.
            generator: random generator on ``images``' device (timesteps, then noise).

        Returns:
            the scalar loss.

        Raises:
            ValueError: ``images`` is not a 5D batch with even spatial sizes, or has no condition channel after
                ``image_channels``.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 5 or any(s % 2 for s in images.shape[2:]):
            raise ValueError(
                "images must be a (B, C, D, H, W) tensor with even D, H, W, got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}."
            )
        model = network
        if self.image_channels is not None:
            if images.shape[1] <= self.image_channels:
                raise ValueError(
                    f"images must pack {self.image_channels} target channel(s) followed by at least one condition, "
                    f"got {images.shape[1]} channel(s)."
                )
            condition_coeffs = haar_dwt3d(images[:, self.image_channels :], lll_scale=self.lll_scale)
            images = images[:, : self.image_channels]

            def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return network(torch.cat([x_t, condition_coeffs], dim=1), t)

        t = torch.randint(
            0, self.diffusion.num_timesteps, (images.shape[0],), generator=generator, device=images.device
        )
        return wavelet_diffusion_loss(
            self.diffusion, model, images, t, lll_scale=self.lll_scale, generator=generator
        )["loss"]
