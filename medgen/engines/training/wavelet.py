"""Training losses in the form the engine calls them: ``loss(network, images, generator) -> scalar``.

Each class draws the training timesteps and noise from the generator it is given (see
:class:`medgen.engines.training.step.DiffusionTrainingStep`) and delegates the math to :mod:`medgen.diffusion.losses`.
"""

from __future__ import annotations

import torch
from torch import nn

from medgen.diffusion.gaussian import GaussianDiffusion, wdm_diffusion
from medgen.diffusion.losses import wavelet_diffusion_loss

__all__ = ["WaveletDiffusionTrainingLoss"]


class WaveletDiffusionTrainingLoss:
    """WDM's training loss (:func:`~medgen.diffusion.losses.wavelet_diffusion_loss`) with ``t ~ U{0, ..., T-1}``.

    Per call: ``t`` is drawn first (one integer timestep per batch item, uniform as WDM's ``UniformSampler``), then
    the image-space noise; the loss is the mean over the 8 subbands of the per-subband MSE between the network's
    ``x0`` prediction and the Haar coefficients of the images (LLL divided by ``lll_scale``).

    Args:
        diffusion: an ``x0``-predicting process (default: :func:`~medgen.diffusion.gaussian.wdm_diffusion`, 1000
            linear steps).
        lll_scale: WDM's LLL divisor (3).

    Raises:
        TypeError: ``diffusion`` is not a GaussianDiffusion.
        ValueError: ``diffusion`` does not predict ``x0`` or ``lll_scale <= 0``.
    """

    def __init__(self, diffusion: GaussianDiffusion | None = None, lll_scale: float = 3.0) -> None:
        if diffusion is None:
            diffusion = wdm_diffusion()
        if not isinstance(diffusion, GaussianDiffusion):
            raise TypeError(f"diffusion must be a GaussianDiffusion or None, got {type(diffusion).__name__}.")
        if diffusion.model_mean_type != "start_x":
            raise ValueError(f"WDM's loss needs an x0-predicting diffusion, got {diffusion.model_mean_type!r}.")
        if isinstance(lll_scale, bool) or not isinstance(lll_scale, (int, float)) or not lll_scale > 0:
            raise ValueError(f"lll_scale must be a number > 0, got {lll_scale!r}.")
        self.diffusion = diffusion
        self.lll_scale = float(lll_scale)

    def __call__(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Args:
            network: ``network(x_t, t)`` on ``(B, 8 C, D/2, H/2, W/2)`` coefficients with integer timesteps ``(B,)``,
                predicting the clean coefficients.
            images: image batch ``(B, C, D, H, W)`` in ``[-1, 1]`` (even sizes).
            generator: random generator on ``images``' device (timesteps, then noise).

        Returns:
            the scalar loss.

        Raises:
            ValueError: ``images`` is not a 5D batch with even spatial sizes.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 5 or any(s % 2 for s in images.shape[2:]):
            raise ValueError(
                "images must be a (B, C, D, H, W) tensor with even D, H, W, got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}."
            )
        t = torch.randint(
            0, self.diffusion.num_timesteps, (images.shape[0],), generator=generator, device=images.device
        )
        return wavelet_diffusion_loss(
            self.diffusion, network, images, t, lll_scale=self.lll_scale, generator=generator
        )["loss"]
