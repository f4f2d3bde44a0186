from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate

from medgen.diffusion.gaussian import GaussianDiffusion, respace_diffusion, space_timesteps
from medgen.diffusion.schedules import linear_beta_schedule
from medgen.inferers.base import DiffusionSamplingInferer, SamplingInferer


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

        def sample(self, inputs, network=None):
            g = self.generator(inputs.device)
            loop = self.sampling_loop(3, inputs.shape)

            def step(i, state):
                noise = torch.randn(state["x"].shape, generator=g)
                return {"x": self.scale * state["x"] + noise}

            return self.wrap_output(loop.run({"x": inputs.clone()}, step, generator=g)["x"], inputs)

    x = torch.zeros(1, 1, 4, 4)
    first = Scaled(0.5, seed=3, progress=False, checkpoint_dir=tmp_path)(x, None)
    again = Scaled(0.5, seed=3, progress=False, checkpoint_dir=tmp_path)(x, None)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="different run"):
        Scaled(0.7, seed=3, progress=False, checkpoint_dir=tmp_path)(x, None)


def test_bad_arguments():
    class Identity(SamplingInferer):
        def sample(self, inputs, network=None):
            return self.wrap_output(inputs, inputs)

    with pytest.raises(TypeError, match="seed must be an int"):
        Identity(seed=1.5)
    with pytest.raises(ValueError, match="requires checkpoint_dir"):
        Identity(checkpoint_every=5)


def test_extra_tensors_are_digested_into_the_fingerprint(tmp_path):
    """Another measurement of the same shape never resumes a run (the loop fingerprint holds a content digest)."""

    class Shifted(SamplingInferer):
        def sample(self, inputs, network=None):
            loop = self.sampling_loop(2, inputs.shape, extra={"measurement": inputs, "mask": None})
            return self.wrap_output(loop.run({"x": inputs.clone()}, lambda i, s: {"x": s["x"] + 1})["x"], inputs)

    x = torch.zeros(1, 1, 2, 2)
    assert torch.equal(Shifted(progress=False, checkpoint_dir=tmp_path)(x, None), x + 2)
    with pytest.raises(ValueError, match="different run"):
        Shifted(progress=False, checkpoint_dir=tmp_path)(x + 0.5, None)


def test_respace_diffusion_and_diffusion_inferer():
    base = GaussianDiffusion(linear_beta_schedule(100), "epsilon", "fixed_small")
    assert respace_diffusion(base, None).num_timesteps == 100
    assert respace_diffusion(base, 10).timestep_map.tolist() == space_timesteps(100, [10])
    assert respace_diffusion(base, "ddim5").timestep_map.tolist() == list(range(0, 100, 20))
    with pytest.raises(ValueError, match=r"timestep_respacing must be in \[1, 100\], got 0"):
        respace_diffusion(base, 0)
    with pytest.raises(TypeError, match="timestep_respacing"):
        respace_diffusion(base, 2.5)

    class Sampler(DiffusionSamplingInferer):
        def sample(self, inputs, network, *args, **kwargs):
            return inputs

    with pytest.raises(TypeError, match="diffusion must be a GaussianDiffusion"):
        Sampler("linear")
    with pytest.raises(ValueError, match="sampler"):
        Sampler(base, sampler="euler")
    with pytest.raises(ValueError, match="only applies to sampler='ddim'"):
        Sampler(base, eta=0.5)
    inferer = Sampler(base, "ddim10", sampler="ddim", seed=0, progress=False)
    assert inferer.config()["diffusion"]["timestep_map"] == list(range(0, 100, 10))
    x0 = torch.randn(1, 1, 4, 4)
    eps = torch.randn_like(x0)
    t = torch.tensor([9])
    x_t = inferer.diffusion.q_sample(x0, t, eps)
    out = inferer.step(lambda x, s: eps, x_t, t)["sample"]
    abar_prev = base.alphas_cumprod[80].float()
    torch.testing.assert_close(out, abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps)




def test_every_inferer_takes_and_validates_the_precision_settings():
    from medgen.inferers import (
        HighFrequencySpaceInferer,
        PatchDiffusionInferer,
        PerpendicularSliceInferer,
        SemanticDiffusionInferer,
        SlabPatchInferer,
        WaveletDiffusionInferer,
    )
    from medgen.physics.mask import Inpainting

    makers = [
        lambda **kw: PerpendicularSliceInferer(progress=False, **kw),
        lambda **kw: WaveletDiffusionInferer(progress=False, **kw),
        lambda **kw: PatchDiffusionInferer(Inpainting(torch.ones(8, 8)), 8, 4, progress=False, **kw),
        lambda **kw: HighFrequencySpaceInferer(torch.ones(8, 8), progress=False, **kw),
        lambda **kw: SemanticDiffusionInferer(progress=False, **kw),
        lambda **kw: SlabPatchInferer(progress=False, **kw),
    ]
    for make in makers:
        assert make(autocast_dtype="bfloat16", compile_network="reduce-overhead").precision.active
        with pytest.raises(ValueError, match="autocast_dtype must be None"):
            make(autocast_dtype=torch.float32)
        with pytest.raises(ValueError, match="compile_network must be"):
            make(compile_network="yes")


def test_bfloat16_sampling_stays_close_to_float32_and_is_fingerprinted(device):
    """TPDM with a bf16-autocast NCSN++: the same draws, the network's rounding only (the state stays float32)."""
    from medgen.diffusion.priors import ScorePrior
    from medgen.inferers.perpendicular import PerpendicularSliceInferer
    from medgen.networks.ncsnpp import NCSNpp

    torch.manual_seed(0)
    network = NCSNpp(image_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), init_scale=1.0)
    network = network.eval().to(device)
    settings = {"task": "uncond", "steps": 3, "batch_size": 8, "seed": 0, "progress": False}
    reference = PerpendicularSliceInferer(**settings)((8, 8, 8), network, device=device)
    inferer = PerpendicularSliceInferer(autocast_dtype=torch.bfloat16, **settings)
    out = inferer((8, 8, 8), network, device=device)
    assert out.dtype == torch.float32 and out.device.type == device.type
    # 3 steps from sigma 378: the state is noise of scale ~400 and the bf16 scores (2e-2 relative, see
    # tests/networks/test_precision.py) move it by step * score, far less than that scale
    error = float((out - reference).abs().max() / reference.abs().max())
    assert 0 < error <= 2e-2
    assert inferer.config()["precision"] == {"autocast_dtype": "bfloat16", "compile_network": False}
    assert "precision" not in PerpendicularSliceInferer(**settings).config()
    with pytest.raises(TypeError, match="build the prior on"):
        inferer((8, 8, 8), ScorePrior(network))
