"""Several posterior samples of a reconstruction inferer: their mean and per-voxel standard deviation.

None of the papers ship an uncertainty; a diffusion sampler with data consistency draws (approximately) from the
posterior, so the spread of a few samples drawn with different seeds is a per-voxel uncertainty.
:class:`PosteriorSampler` wraps any :class:`~medgen.inferers.base.SamplingInferer` and is itself a MONAI inferer,
so a bundle's evaluator runs it in place of the inferer::

    sampler = PosteriorSampler(PerpendicularSliceInferer("zsr", factor=4, seed=0), num_samples=4)
    result = sampler(low_resolution, network)      # {"mean": (B, 1, X, Y, Z), "std": (B, 1, X, Y, Z)}
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from medgen.checks import check_int
from medgen.inferers.base import SamplingInferer

__all__ = ["PosteriorSampler", "posterior_mean_std"]


def posterior_mean_std(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and the per-voxel standard deviation (``N - 1`` in the denominator) of samples ``(N, ...)``.

    For complex samples the std is ``sqrt(sum |x_n - mean|^2 / (N - 1))`` (real).

    Raises:
        ValueError: fewer than 2 samples.
    """
    if samples.shape[0] < 2:
        raise ValueError(f"a standard deviation needs at least 2 samples, got {samples.shape[0]}.")
    mean = samples.mean(dim=0)
    variance = (samples - mean).abs().square().sum(dim=0) / (samples.shape[0] - 1)
    return mean, variance.sqrt()


class PosteriorSampler(Inferer):
    """Run ``inferer`` ``num_samples`` times (seeds ``seed, seed + 1, ...``): the posterior mean and the per-voxel std.

    Sample ``k`` is the wrapped inferer's call with ``seed + k`` (``None`` stays ``None``: draws from the global RNG)
    and, when it checkpoints, ``checkpoint_dir / f"sample{k}"`` for ``k >= 1`` (sample 0 keeps the inferer's own
    folder, so ``num_samples=1`` is exactly the wrapped inferer). The samples run one after another: the peak memory
    is one sample's plus the finished samples (``num_samples`` outputs).

    Args:
        inferer: the reconstruction inferer.
        num_samples: number of samples, ``>= 1``.

    Returns (of a call):
        ``{"mean": ..., "std": ...}``: MetaTensors with the wrapped inferer's output meta; ``std`` is ``None`` for one
        sample; complex outputs give a complex mean and a real std.

    Raises:
        TypeError: ``inferer`` is not a :class:`SamplingInferer`.
        ValueError: ``num_samples < 1``.
    """

    def __init__(self, inferer: SamplingInferer, num_samples: int = 1) -> None:
        super().__init__()
        if not isinstance(inferer, SamplingInferer):
            raise TypeError(f"inferer must be a medgen SamplingInferer, got {type(inferer).__name__}.")
        check_int(num_samples, "num_samples", 1)
        self.inferer = inferer
        self.num_samples = num_samples

    def sample_inferer(self, k: int) -> SamplingInferer:
        """The wrapped inferer for sample ``k`` (a shallow copy with its seed and checkpoint folder; ``k = 0``: itself)."""
        if k == 0:
            return self.inferer
        inferer = copy.copy(self.inferer)
        inferer.seed = None if self.inferer.seed is None else self.inferer.seed + k
        if self.inferer.checkpoint_dir is not None:
            inferer.checkpoint_dir = os.fspath(Path(self.inferer.checkpoint_dir) / f"sample{k}")
        return inferer

    def __call__(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> dict[str, MetaTensor | None]:
        first = self.inferer(inputs, network, *args, **kwargs)
        if self.num_samples == 1:
            return {"mean": first, "std": None}
        samples = [first.as_tensor() if isinstance(first, MetaTensor) else first]
        for k in range(1, self.num_samples):
            result = self.sample_inferer(k)(inputs, network, *args, **kwargs)
            samples.append(result.as_tensor() if isinstance(result, MetaTensor) else result)
        mean, std = posterior_mean_std(torch.stack(samples))
        return {"mean": SamplingInferer.wrap_output(mean, first), "std": SamplingInferer.wrap_output(std, first)}
