from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate

from medgen.inferers.base import SamplingInferer


def test_wrap_output_keeps_affine_meta_and_batch_flag():
    items = [
        {"image": MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.diag(torch.tensor([s, 2.0, 3.0, 1.0])))}
        for s in (1.0, 5.0)
    ]
    batch = list_data_collate(items)["image"]
    assert batch.is_batch
    out = SamplingInferer.wrap_output(torch.ones(2, 1, 4, 4, 4), batch)
    assert isinstance(out, MetaTensor) and out.is_batch
    first, second = decollate_batch(out)
    assert first.affine[0, 0] == 1.0 and second.affine[0, 0] == 5.0
    assert torch.equal(first.as_tensor(), torch.ones(1, 4, 4, 4))


def test_wrap_output_plain_tensor_gets_identity_meta():
    out = SamplingInferer.wrap_output(torch.ones(1, 1, 2, 2, 2), None)
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine, torch.eye(4, dtype=out.affine.dtype))


def test_sampling_loop_fingerprint_separates_configs(tmp_path):
    class Scaled(SamplingInferer):
        def __init__(self, scale, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def config(self):
            return {**super().config(), "scale": self.scale}

        def __call__(self, inputs, network=None):
            g = self.generator(inputs.device)
            loop = self.sampling_loop(3, inputs.shape)

            def step(i, state):
                noise = torch.randn(state["x"].shape, generator=g)
                return {"x": self.scale * state["x"] + noise}

            return self.wrap_output(loop.run({"x": inputs.clone()}, step, generator=g)["x"], inputs)

    x = torch.zeros(1, 1, 4, 4)
    first = Scaled(0.5, seed=3, progress=False, checkpoint_dir=tmp_path)(x)
    again = Scaled(0.5, seed=3, progress=False, checkpoint_dir=tmp_path)(x)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="different run"):
        Scaled(0.7, seed=3, progress=False, checkpoint_dir=tmp_path)(x)


def test_bad_arguments():
    class Identity(SamplingInferer):
        def __call__(self, inputs, network=None):
            return self.wrap_output(inputs, inputs)

    with pytest.raises(TypeError, match="seed must be an int"):
        Identity(seed=1.5)
    with pytest.raises(ValueError, match="requires checkpoint_dir"):
        Identity(checkpoint_every=5)
