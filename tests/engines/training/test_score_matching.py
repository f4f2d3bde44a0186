"""medgen.engines.score_matching: the engine's score-matching loss against score_matching_loss and analytic cases."""

from __future__ import annotations

import pytest
import torch

from medgen.diffusion.losses import score_matching_loss
from medgen.diffusion.sde import VESDE
from medgen.engines.training.score_matching import ScoreMatchingTrainingLoss


class PointMassScore(torch.nn.Module):
    """The exact score of N(a, sigma^2 I), the VE marginal of the point mass at ``a``; records its sigma inputs."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a
        self.sigmas: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.sigmas.append(sigma)
        return -(x - self.a) / sigma.reshape(-1, 1, 1, 1) ** 2


def test_exact_score_of_a_point_mass_has_zero_loss_and_gets_the_marginal_std():
    sde = VESDE(0.01, 15.0, 2000)
    a = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)).expand(4, 1, 8, 8)
    network = PointMassScore(a)
    loss = ScoreMatchingTrainingLoss(sde)(network, a, torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(0.0, abs=1e-8)
    t = torch.rand(4, generator=torch.Generator().manual_seed(1)) * (1 - 1e-5) + 1e-5  # drawn first
    torch.testing.assert_close(network.sigmas[0], sde.sigma(t))


@pytest.mark.parametrize("reduce_mean", [False, True])
def test_matches_score_matching_loss_and_the_zero_network_value(reduce_mean: bool):
    sde = VESDE(0.01, 15.0, 2000)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))

    def zero(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    engine = ScoreMatchingTrainingLoss(sde, reduce_mean=reduce_mean)(zero, images, torch.Generator().manual_seed(3))
    direct = score_matching_loss(sde, lambda x, t: zero(x, sde.sigma(t)), images,
                                 generator=torch.Generator().manual_seed(3), reduce_mean=reduce_mean)
    torch.testing.assert_close(engine, direct)
    # zero score: per item 0.5 * sum(z^2) (score_sde's sum) or mean(z^2), with z drawn after t
    generator = torch.Generator().manual_seed(3)
    torch.rand(3, generator=generator)
    z = torch.randn(images.shape, generator=generator)
    expected = z.square().flatten(1).mean(1) if reduce_mean else 0.5 * z.square().flatten(1).sum(1)
    torch.testing.assert_close(engine, expected.mean())


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="sde"):
        ScoreMatchingTrainingLoss("vesde")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        ScoreMatchingTrainingLoss(VESDE(), eps=0.0)
    with pytest.raises(ValueError, match="images"):
        ScoreMatchingTrainingLoss(VESDE())(torch.nn.Identity(), torch.zeros(4, 4), None)
    with pytest.raises(ValueError, match="images"):
        ScoreMatchingTrainingLoss(VESDE())(torch.nn.Identity(), torch.zeros(1, 1, 4, 4, dtype=torch.long), None)
