"""PaDIS's patch EDM training loss in the form the engine calls it: ``loss(network, images, generator) -> scalar``.

:class:`PatchEDMTrainingLoss` is ``Patch_EDMLoss`` of the official training loop (jasonhu4/PaDIS,
``training/training_loop.py`` + ``training/patch_loss.py``) for
:class:`~medgen.engines.training.step.DiffusionTrainingStep`:
per iteration ONE patch size is drawn from a list with fixed probabilities, the batch is multiplied by that size's
batch multiplier (more, smaller patches), one random patch with its positional channels is cut from every (already
zero-padded) image, and EDM's weighted denoising loss is taken on the patches
(:func:`medgen.diffusion.losses.patch_edm_loss`).

Example (see ``bundles/padis_ct/configs/train.json`` for the bundle version)::

    network = PatchEDMPrecond(img_resolution=96, model_channels=16, channel_mult=[1, 2, 2], num_blocks=1)
    loss = PatchEDMTrainingLoss(patch_sizes=(8, 16, 32), batch_multipliers=(4, 2, 1))
    trainer = SupervisedTrainer(..., network=network, loss_function=loss, iteration_update=DiffusionTrainingStep(0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medgen.diffusion.losses import patch_edm_loss

__all__ = ["PATCH_EDM_REDUCTIONS", "PatchEDMTrainingLoss", "padis_patch_probabilities"]

PATCH_EDM_REDUCTIONS = ("sum", "mean")


def padis_patch_probabilities(real_p: float = 0.5) -> tuple[float, float, float]:
    """PaDIS's probabilities of its three patch sizes (small, medium, large): ``(1 - p) 2/5, (1 - p) 3/5, p``.

    Official ``training_loop.py`` (``padding=True``): ``p_list = [(1 - real_p) * 2 / 5, (1 - real_p) * 3 / 5,
    real_p]`` for ``patch_list = [16, 32, 64]``; ``real_p`` (default 0.5) is the probability of the LARGEST patch.

    Raises:
        ValueError: ``real_p`` outside ``[0, 1]``.
    """
    if isinstance(real_p, bool) or not isinstance(real_p, (int, float)) or not 0.0 <= real_p <= 1.0:
        raise ValueError(f"real_p must be a number in [0, 1], got {real_p!r}.")
    return ((1.0 - real_p) * 2.0 / 5.0, (1.0 - real_p) * 3.0 / 5.0, float(real_p))


def _positive_ints(values: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of integers >= 1, got {values!r}.")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must hold integers >= 1, got {list(values)!r}.")
    return tuple(int(v) for v in values)


class PatchEDMTrainingLoss:
    """PaDIS's patch EDM loss with the patch size drawn per iteration (``Patch_EDMLoss`` + the official patch schedule).

    Per call, from ``generator`` in this order: the patch-size index ``k`` (one uniform draw compared with the
    cumulative ``probabilities``); then, for the batch repeated ``m = batch_multipliers[k]`` times (item ``b``'s
    copies are consecutive), one random top-left corner per patch (row, then column), the noise levels
    ``ln sigma ~ N(p_mean, p_std^2)`` and the noise (:func:`~medgen.diffusion.losses.patch_edm_loss`). The network
    sees ``D(patch + sigma n; sigma, x_pos)`` with positions normalised by the PADDED image size
    (:func:`~medgen.networks.songunet.patch_position_channels`): the images must already be zero-padded by the same
    ``pad`` the inference canvas uses (:class:`~medgen.inferers.patch.PatchDenoiser`), e.g. with MONAI's
    ``BorderPadd``, as PaDIS pads in its dataset.

    Reduction: ``"sum"`` (official): the weighted squared error summed over each patch's pixels, averaged over the
    ``B * m`` patches (PaDIS: ``loss.sum() / batch_gpu_total / batch_mul``), so a larger patch contributes a larger
    loss; ``"mean"``: the mean over all pixels of all patches.

    Differences from the official loop (deliberate): PaDIS concatenates ``m`` different data-loader batches per
    round; here the ``m`` patches of a round come from the ``B`` images of one batch (``m`` patches each, at
    independent random corners), so one trainer iteration is one optimiser step. The probabilities and multipliers
    are arguments (official: ``patch_list=[16, 32, 64]``, :func:`padis_patch_probabilities`, ``batch_mul`` 64, 32, 16
    for a 256^2 image, i.e. 4 : 2 : 1).

    Args:
        patch_sizes: candidate square patch sides in pixels (PaDIS: 16, 32, 64 on 256 + 2 * 64 padded images), each at
            most the padded image size.
        probabilities: probability of each patch size (summing to 1); ``None``: :func:`padis_patch_probabilities`
            for three sizes, uniform otherwise.
        batch_multipliers: patches cut per image for each size (``None``: 1 for every size).
        p_mean: mean of ``ln sigma`` (EDM: -1.2).
        p_std: standard deviation of ``ln sigma`` (EDM: 1.2).
        sigma_data: data standard deviation of the preconditioning weight (EDM/PaDIS: 0.5).
        reduction: ``"sum"`` or ``"mean"`` (see above).

    Raises:
        ValueError: bad sizes, probabilities, multipliers, noise parameters or reduction.
    """

    def __init__(
        self,
        patch_sizes: Sequence[int] = (16, 32, 64),
        probabilities: Sequence[float] | None = None,
        batch_multipliers: Sequence[int] | None = None,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_data: float = 0.5,
        reduction: str = "sum",
    ) -> None:
        self.patch_sizes = _positive_ints(patch_sizes, "patch_sizes")
        count = len(self.patch_sizes)
        if probabilities is None:
            probabilities = padis_patch_probabilities() if count == 3 else [1.0 / count] * count
        if isinstance(probabilities, (str, bytes)) or not isinstance(probabilities, Sequence):
            raise ValueError(f"probabilities must be a sequence of {count} numbers, got {probabilities!r}.")
        probs = [float(p) for p in probabilities]
        if len(probs) != count or any(not p >= 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(
                f"probabilities must be {count} non-negative numbers summing to 1 (one per patch size), got {probs!r}."
            )
        multipliers = [1] * count if batch_multipliers is None else batch_multipliers
        self.batch_multipliers = _positive_ints(multipliers, "batch_multipliers")
        if len(self.batch_multipliers) != count:
            raise ValueError(
                f"batch_multipliers must have one entry per patch size ({count}), got {list(self.batch_multipliers)}."
            )
        for name, value in (("p_mean", p_mean), ("p_std", p_std), ("sigma_data", sigma_data)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if not p_std > 0 or not sigma_data > 0:
            raise ValueError(f"p_std and sigma_data must be > 0, got {p_std!r} and {sigma_data!r}.")
        if reduction not in PATCH_EDM_REDUCTIONS:
            raise ValueError(f"reduction must be one of {PATCH_EDM_REDUCTIONS}, got {reduction!r}.")
        self.probabilities = tuple(probs)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)
        self.sigma_data = float(sigma_data)
        self.reduction = reduction

    def draw_patch_index(self, generator: torch.Generator | None, device: torch.device | str = "cpu") -> int:
        """Index into ``patch_sizes`` of this iteration (one uniform draw from ``generator`` on ``device``)."""
        u = float(torch.rand((), generator=generator, device=device))
        cumulative = 0.0
        for index, p in enumerate(self.probabilities):
            cumulative += p
            if u < cumulative:
                return index
        return max(i for i, p in enumerate(self.probabilities) if p > 0)  # u ~ 1 with rounded probabilities

    def __call__(self, network: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Args:
            network: ``network(x, sigma, x_pos=positions, class_labels=None)``, e.g. a
                :class:`~medgen.networks.songunet.PatchEDMPrecond`, sigma in image units ``(P, 1, 1, 1)``.
            images: zero-padded clean batch ``(B, C, H, W)`` (e.g. ``[0, 1]`` images padded by ``pad`` per side).
            generator: random generator on ``images``' device (patch size, corners, sigma, noise).

        Returns:
            the scalar loss (see ``reduction``).

        Raises:
            ValueError: ``images`` is not a floating-point 4D batch or is smaller than the largest patch.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                "images must be a floating-point (B, C, H, W) batch of padded images, got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}."
            )
        if max(self.patch_sizes) > min(images.shape[-2:]):
            raise ValueError(
                f"the largest patch ({max(self.patch_sizes)}) exceeds the padded images {tuple(images.shape[-2:])}."
            )
        index = self.draw_patch_index(generator, images.device)
        multiplier = self.batch_multipliers[index]
        batch = images.repeat_interleave(multiplier, dim=0) if multiplier > 1 else images
        loss = patch_edm_loss(
            network,
            batch,
            self.patch_sizes[index],
            p_mean=self.p_mean,
            p_std=self.p_std,
            sigma_data=self.sigma_data,
            generator=generator,
        )
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() / batch.shape[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_sizes={list(self.patch_sizes)}, probabilities={list(self.probabilities)}, "
            f"batch_multipliers={list(self.batch_multipliers)}, p_mean={self.p_mean}, p_std={self.p_std}, "
            f"sigma_data={self.sigma_data}, reduction={self.reduction!r})"
        )
