"""medgen.inferers.posterior: several seeded samples of an inferer, their mean and per-voxel std."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from medgen.inferers import PosteriorSampler, posterior_mean_std
from medgen.inferers.base import SamplingInferer


class _NoisyCopy(SamplingInferer):
    """``inputs + N(0, 1)`` from the seeded generator; records the seeds and checkpoint folders it ran with."""

    calls: list = []

    def sample(self, inputs, network, *args, **kwargs):
        _NoisyCopy.calls.append((self.seed, self.checkpoint_dir, kwargs))
        noise = torch.randn(inputs.shape, generator=self.generator(inputs.device), dtype=inputs.dtype)
        return self.wrap_output(inputs + noise, inputs)


def test_mean_and_std_of_seeded_samples(tmp_path):
    _NoisyCopy.calls = []
    x = MetaTensor(torch.zeros(1, 1, 8, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0])))
    sampler = PosteriorSampler(_NoisyCopy(seed=5, progress=False, checkpoint_dir=tmp_path), num_samples=3)
    result = sampler(x, None, mask=1)
    samples = torch.stack([_NoisyCopy(seed=s, progress=False)(x, None).as_tensor() for s in (5, 6, 7)])
    torch.testing.assert_close(result["mean"].as_tensor(), samples.mean(0))
    torch.testing.assert_close(result["std"].as_tensor(), samples.std(0))  # N - 1 in the denominator
    assert torch.equal(result["std"].affine, x.affine) and isinstance(result["mean"], MetaTensor)
    assert [c[0] for c in _NoisyCopy.calls[:3]] == [5, 6, 7] and _NoisyCopy.calls[0][2] == {"mask": 1}
    assert _NoisyCopy.calls[0][1] == tmp_path and str(_NoisyCopy.calls[2][1]).endswith("sample2")
    assert sampler.inferer.seed == 5  # the wrapped inferer is not changed


def test_one_sample_is_the_inferer_and_complex_samples_give_a_real_std():
    x = torch.zeros(1, 1, 4, 4)
    one = PosteriorSampler(_NoisyCopy(seed=0, progress=False))(x, None)
    assert one["std"] is None and torch.equal(one["mean"], _NoisyCopy(seed=0, progress=False)(x, None))
    mean, std = posterior_mean_std(torch.tensor([[1 + 1j], [1 - 1j]]))
    assert mean.item() == 1 and std.dtype == torch.float32 and std.item() == pytest.approx(2**0.5)


def test_bad_arguments():
    with pytest.raises(TypeError, match="SamplingInferer"):
        PosteriorSampler(lambda x, net: x, 2)
    with pytest.raises(ValueError, match="num_samples"):
        PosteriorSampler(_NoisyCopy(), 0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        posterior_mean_std(torch.zeros(1, 3))
