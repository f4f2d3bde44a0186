"""Denoising score matching in the form the engine calls it: ``loss(network, images, generator) -> scalar``.

:class:`ScoreMatchingTrainingLoss` is the training loss of score_sde's continuous SDEs (TPDM's NCSN++ score models)
for :class:`medgen.engines.training.step.DiffusionTrainingStep`; the math is :func:`medgen.diffusion.losses.
score_matching_loss`.

Example (see ``bundles/tpdm_brain_mri/configs/train.json`` for the bundle version)::

    sde = VESDE(sigma_min=0.01, sigma_max=15.0, N=2000)
    trainer = SupervisedTrainer(..., network=NCSNpp(image_size=32, nf=16, ch_mult=(1, 2, 2), num_res_blocks=1),
                                loss_function=ScoreMatchingTrainingLoss(sde), iteration_update=DiffusionTrainingStep(0))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medgen.diffusion.losses import score_matching_loss
from medgen.diffusion.sde import SDE

__all__ = ["ScoreMatchingTrainingLoss"]


class ScoreMatchingTrainingLoss:
    """score_sde's continuous denoising score-matching loss with the network called on the marginal std.

    Per call: ``t ~ U(eps, 1)`` (one per batch item, drawn first from the generator), then ``z ~ N(0, I)``;
    ``x_t = mean(x0, t) + std(t) z`` and the loss is ``|| std(t) * network(x_t, std(t)) + z ||^2`` per item (half
    the sum over pixels with ``reduce_mean=False``, as score_sde and TPDM train; the mean over pixels otherwise),
    averaged over the batch. The network receives the marginal standard deviation ``std(t)`` ``(B,)`` in data units
    as its noise input and returns the score: score_sde's convention for continuous VE training (``sigma(t)``, with
    NCSN++'s ``scale_by_sigma``) and HFS-SDE's.

    Args:
        sde: the forward SDE (TPDM: :class:`~medgen.diffusion.sde.VESDE` ``(0.01, sigma_max)``).
        eps: smallest training time (score_sde: ``1e-5``).
        reduce_mean: average the squared error over pixels (``False``: half the sum, score_sde's default).
        likelihood_weighting: Song et al. (2021b)'s likelihood weighting ``g(t)^2`` instead of ``std(t)^2``.

    Raises:
        TypeError: ``sde`` is not an :class:`~medgen.diffusion.sde.SDE`.
        ValueError: ``eps`` outside ``(0, 1)``.
    """

    def __init__(
        self, sde: SDE, eps: float = 1e-5, reduce_mean: bool = False, likelihood_weighting: bool = False
    ) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be a medgen.diffusion.sde.SDE, got {type(sde).__name__}.")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < eps < 1.0 or math.isnan(eps):
            raise ValueError(f"eps must be a number in (0, 1), got {eps!r}.")
        self.sde = sde
        self.eps = float(eps)
        self.reduce_mean = bool(reduce_mean)
        self.likelihood_weighting = bool(likelihood_weighting)

    def __call__(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Args:
            network: ``network(x_t, std)`` on noisy images ``(B, C, *spatial)`` with noise std ``(B,)``, returning
                the score, shaped like ``x_t``.
            images: clean batch ``(B, C, *spatial)`` (TPDM: slices in ``[0, 1]``).
            generator: random generator on ``images``' device (times, then noise).

        Returns:
            the scalar loss.

        Raises:
            ValueError: ``images`` is not a floating-point batch with at least one spatial axis.
        """
        if not isinstance(images, torch.Tensor) or images.ndim < 3 or not images.is_floating_point():
            raise ValueError(
                "images must be a floating-point (B, C, *spatial) tensor, got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
                f"{' ' + str(images.dtype) if isinstance(images, torch.Tensor) else ''}."
            )
        sde = self.sde

        def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return network(x, sde.marginal_prob(x, t)[1])

        return score_matching_loss(
            sde,
            score_fn,
            images,
            eps=self.eps,
            generator=generator,
            reduce_mean=self.reduce_mean,
            likelihood_weighting=self.likelihood_weighting,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sde={type(self.sde).__name__}, eps={self.eps}, reduce_mean={self.reduce_mean}, "
            f"likelihood_weighting={self.likelihood_weighting})"
        )
