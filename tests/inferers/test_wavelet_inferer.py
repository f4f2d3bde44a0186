from __future__ import annotations

import doctest

import pytest
import torch
from monai.data import MetaTensor

import medgen.inferers.wavelet as wavelet_module
from medgen.diffusion.gaussian import GaussianDiffusion
from medgen.diffusion.losses import wavelet_diffusion_loss
from medgen.diffusion.schedules import linear_beta_schedule
from medgen.inferers.wavelet import WaveletDiffusionInferer, repaint_schedule, wdm_diffusion
from medgen.networks.convert import from_official
from medgen.networks.guided_unet import GuidedUNet
from medgen.transforms.wavelet import haar_dwt3d, haar_idwt3d
from tests.conftest import load_parity

# README tolerance: 1e-5 relative to the output scale (the tiny U-Net outputs are O(1): max |out| 2.1-2.8)
TOL = 1e-5


@pytest.fixture(scope="module")
def step_parity():
    return load_parity("wdm_diffusion_step")


@pytest.fixture(scope="module")
def tiny_net():
    d = load_parity("wdm_unet_tiny")
    return from_official("guided_unet", d["state_dict"], d["config"])


def _tiny_cwdm() -> GuidedUNet:
    net = GuidedUNet(spatial_dims=3, in_channels=32, out_channels=8, model_channels=8, channel_mult=(1, 2),
                     num_res_blocks=1, additive_skips=False, bottleneck_attention=False, num_groups=4)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # give the zero-initialised convs / norm biases values so the output depends on the input
        for p in net.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
    return net.eval()


class _Counting(torch.nn.Module):
    """Wraps a network, counts calls, records inputs, and can raise at call ``fail_at`` (0-based)."""

    def __init__(self, net: torch.nn.Module, fail_at: int | None = None) -> None:
        super().__init__()
        self.net, self.fail_at, self.calls, self.inputs = net, fail_at, 0, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt(f"interrupted at network call {self.calls}")
        self.calls += 1
        self.inputs.append((x.clone(), t.clone()))
        return self.net(x, t)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("clip", [True, False])
def test_p_sample_parity_with_real_tiny_unet(step_parity, tiny_net, clip):
    p = step_parity["p_sample"]
    inferer = WaveletDiffusionInferer(clip_denoised=clip, progress=False)
    assert torch.equal(inferer.diffusion.betas, step_parity["betas"])
    assert torch.equal(inferer.diffusion.alphas_cumprod, step_parity["alphas_cumprod"])
    with torch.no_grad():  # official: seed 5 set before p_sample; the noise is drawn after the network call
        out = inferer.reverse_step(tiny_net, p["x_t"], p["t"], generator=torch.Generator().manual_seed(5))
    suffix = "clip" if clip else "noclip"
    assert (out["pred_xstart"] - p[f"pred_xstart_{suffix}"]).abs().max().item() <= TOL
    assert (out["sample"] - p[f"sample_{suffix}"]).abs().max().item() <= TOL
    if clip:  # the clipped prediction is an image in [-1, 1]
        image = haar_idwt3d(out["pred_xstart"], lll_scale=3.0)
        assert image.abs().max().item() <= 1 + 1e-6


def test_training_loss_parity_with_real_tiny_unet(step_parity, tiny_net):
    tr = step_parity["train"]
    with torch.no_grad():
        out = wavelet_diffusion_loss(wdm_diffusion(), tiny_net, tr["x_start"], tr["t"],
                                     generator=torch.Generator().manual_seed(7))
    assert (out["target"] - tr["x_start_dwt"]).abs().max().item() <= TOL
    assert (out["x_t"] - tr["x_t"]).abs().max().item() <= TOL
    assert (out["model_output"] - tr["model_output"]).abs().max().item() <= TOL
    assert (out["mse_wav"] - tr["mse_wav_per_channel"]).abs().max().item() <= TOL
    assert abs(out["loss"].item() - tr["loss"].item()) <= TOL
    idwt = haar_idwt3d(out["model_output"], lll_scale=3.0)
    assert (idwt - tr["model_output_idwt"]).abs().max().item() <= TOL


def test_full_run_follows_official_rng_order(tiny_net):
    """The official script: manual_seed(seed); img = randn(B, 8, S/2, S/2, S/2); p_sample_loop (network first, then
    randn_like per step, clipping through IDWT -> clamp -> DWT); IDWT(LLL * 3); (x + 1) / 2."""
    inferer = WaveletDiffusionInferer(timestep_respacing=4, rescale_output=True, seed=3, progress=False)
    with torch.no_grad():
        out = inferer((2, 1, 16, 16, 16), tiny_net)
        diffusion = GaussianDiffusion(linear_beta_schedule(1000), "start_x", "fixed_large").respace([0, 333, 666, 999])

        def clip(c):
            return haar_dwt3d(haar_idwt3d(c, lll_scale=3.0).clamp(-1, 1), lll_scale=3.0)

        torch.manual_seed(3)
        x = torch.randn(2, 8, 8, 8, 8)
        for i in reversed(range(4)):
            x = diffusion.p_sample(tiny_net, x, torch.full((2,), i), denoised_fn=clip)["sample"]
        expected = (haar_idwt3d(x, lll_scale=3.0) + 1) / 2
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, torch.eye(4, dtype=out.affine.dtype))
    assert (out.as_tensor() - expected).abs().max().item() <= 1e-6


# ---------------------------------------------------------------------------------------------------- sampling runs
def test_tiny_run_shape_seed_and_resume(tiny_net, tmp_path):
    inferer = WaveletDiffusionInferer(timestep_respacing=6, seed=0, progress=False)
    with torch.no_grad():
        first = inferer((2, 1, 16, 16, 16), tiny_net)
        second = inferer((2, 1, 16, 16, 16), tiny_net)
        other = WaveletDiffusionInferer(timestep_respacing=6, seed=1, progress=False)((2, 1, 16, 16, 16), tiny_net)
    assert first.shape == (2, 1, 16, 16, 16)
    assert torch.equal(first, second)
    assert (first - other).abs().mean().item() > 0.05

    resumable = WaveletDiffusionInferer(timestep_respacing=6, seed=0, progress=False,
                                        checkpoint_dir=tmp_path / "run", checkpoint_every=2)
    failing = _Counting(tiny_net, fail_at=5)
    with torch.no_grad():
        with pytest.raises(KeyboardInterrupt):
            resumable((2, 1, 16, 16, 16), failing)
        counting = _Counting(tiny_net)
        resumed = resumable((2, 1, 16, 16, 16), counting)
    assert counting.calls == 6 - 4  # resumed after the checkpoint of step 4
    assert torch.equal(resumed, first)


def test_odd_sizes_and_template_meta(tiny_net):
    affine = torch.diag(torch.tensor([1.5, 2.0, 0.5, 1.0], dtype=torch.float64))
    template = MetaTensor(torch.zeros(1, 1, 15, 16, 17), affine=affine)
    counting = _Counting(tiny_net)
    inferer = WaveletDiffusionInferer(timestep_respacing=3, seed=0, progress=False)
    explicit = WaveletDiffusionInferer(timestep_respacing=3, seed=0, progress=False, spatial_multiple=4)
    with torch.no_grad():
        out = inferer(template, tiny_net)
        assert torch.equal(explicit(template, counting), out)  # a wrapper hides the U-Net: give the multiple
    assert out.shape == (1, 1, 15, 16, 17)
    assert torch.equal(out.affine, affine)
    # 2 (DWT) x 2 (one downsampling of the tiny U-Net): the image is padded to (16, 16, 20) -> coefficients 8x8x10
    assert counting.inputs[0][0].shape == (1, 8, 8, 8, 10)
    assert inferer.view(tiny_net).multiple == (4, 4, 4)
    assert torch.isfinite(out).all() and out.abs().max().item() <= 1.0 + 1e-5


def test_ddim_eta_zero_is_deterministic(tiny_net):
    x = torch.randn(1, 8, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5])
    ddim = WaveletDiffusionInferer(timestep_respacing=10, sampler="ddim", progress=False)
    stochastic = WaveletDiffusionInferer(timestep_respacing=10, sampler="ddim", eta=1.0, progress=False)
    with torch.no_grad():
        a = ddim.reverse_step(tiny_net, x, t, generator=torch.Generator().manual_seed(1))["sample"]
        b = ddim.reverse_step(tiny_net, x, t, generator=torch.Generator().manual_seed(2))["sample"]
        c = stochastic.reverse_step(tiny_net, x, t, generator=torch.Generator().manual_seed(1))["sample"]
        d = stochastic.reverse_step(tiny_net, x, t, generator=torch.Generator().manual_seed(2))["sample"]
        run1 = WaveletDiffusionInferer(timestep_respacing=5, sampler="ddim", seed=4, progress=False)(
            (1, 1, 16, 16, 16), tiny_net)
        run2 = WaveletDiffusionInferer(timestep_respacing=5, sampler="ddim", seed=4, progress=False)(
            (1, 1, 16, 16, 16), tiny_net)
    assert torch.equal(a, b)
    assert (c - d).abs().max().item() > 1e-3
    assert torch.equal(run1, run2) and run1.shape == (1, 1, 16, 16, 16)


def test_cwdm_conditioning():
    net = _tiny_cwdm()
    counting = _Counting(net)
    generator = torch.Generator().manual_seed(0)
    conditions = torch.rand(1, 3, 16, 16, 16, generator=generator)
    conditions[:, :, :3] = 0  # background slab, zero in every contrast (cWDM's brain mask comes from the first)
    inferer = WaveletDiffusionInferer(timestep_respacing=3, conditional=True, clip_range=(0.0, 1.0), clamp_output=True,
                                      mask_condition_channel=0, seed=0, progress=False)
    with torch.no_grad():
        out = inferer(MetaTensor(conditions, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))), counting)
        other = inferer(conditions.flip(-1), net)
    assert out.shape == (1, 1, 16, 16, 16)
    assert torch.equal(out.affine, torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=out.affine.dtype)))
    assert counting.calls == 3
    x, t = counting.inputs[0]
    assert x.shape == (1, 32, 8, 8, 8) and t.tolist() == [999]
    # every step sees the same clean condition coefficients [cond1 8ch, cond2 8ch, cond3 8ch] after the 8 noisy ones
    expected = haar_dwt3d(conditions, lll_scale=3.0)
    for x, _ in counting.inputs:
        assert (x[:, 8:] - expected).abs().max().item() <= 1e-6
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert (out[:, :, :3] == 0).all() and (out[:, :, 3:] > 0).float().mean().item() > 0.3
    assert (out - other).abs().mean().item() > 1e-3  # the condition changes the result
    # a shape as inputs and the condition as a keyword: the output carries the condition's affine
    explicit = WaveletDiffusionInferer(timestep_respacing=1, clip_range=(0.0, 1.0), seed=0, progress=False)
    with torch.no_grad():
        from_shape = explicit((1, 1, 16, 16, 16), net, condition=MetaTensor(conditions, affine=2 * torch.eye(4)))
    assert torch.equal(from_shape.affine, 2 * torch.eye(4, dtype=from_shape.affine.dtype))
    with pytest.raises(ValueError, match="in_channels must be 24"):
        inferer(conditions[:, :2], net)


def test_inpainting_keeps_known_region(tiny_net):
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, 16),) * 3, indexing="ij")
    known = (0.8 * torch.cos(2 * z) * torch.sin(3 * y + x)).reshape(1, 1, 16, 16, 16)
    known = known.double()  # float64 data with a float32 network: sampling runs in the network's dtype
    mask = torch.zeros(known.shape, dtype=torch.bool)
    mask[..., :8, :, :] = True  # the first half along D is known
    counting = _Counting(tiny_net)
    inferer = WaveletDiffusionInferer(timestep_respacing=6, jump_length=2, jump_n_sample=2, seed=0, progress=False)
    with torch.no_grad():
        out = inferer(known, counting, mask=mask)
    assert out.dtype == torch.float32
    levels = repaint_schedule(6, 2, 2)
    assert counting.calls == sum(b < a for a, b in zip(levels[:-1], levels[1:])) == 10
    known_error = (out - known)[..., :8, :, :].abs().max().item()
    unknown_change = (out - known)[..., 8:, :, :].abs().mean().item()
    assert known_error <= 1e-5, known_error
    assert unknown_change > 0.1, unknown_change
    # the network sees the known region forward-noised to the current level, not the clean image
    first_x = haar_idwt3d(counting.inputs[0][0], lll_scale=3.0)
    assert (first_x - known)[..., :8, :, :].abs().mean().item() > 0.5


def test_repaint_schedule():
    assert repaint_schedule(4) == [3, 2, 1, 0, -1]
    levels = repaint_schedule(10, 2, 3)
    assert levels[0] == 9 and levels[-1] == -1
    assert all(abs(a - b) == 1 for a, b in zip(levels[:-1], levels[1:]))
    assert levels[:8] == [9, 8, 7, 6, 7, 8, 7, 6]
    with pytest.raises(ValueError, match="jump_length"):
        repaint_schedule(10, 0, 2)


def test_validation(tiny_net):
    inferer = WaveletDiffusionInferer(timestep_respacing=2, progress=False)
    with pytest.raises(TypeError, match="inputs"):
        inferer((1, 1, 16, 16), tiny_net)
    with pytest.raises(ValueError, match="inputs"):
        inferer(torch.zeros(1, 16, 16, 16), tiny_net)
    with pytest.raises(ValueError, match="known was given without a mask"):
        inferer((1, 1, 16, 16, 16), tiny_net, known=torch.zeros(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="mask must have shape"):
        inferer(torch.zeros(1, 1, 16, 16, 16), tiny_net, mask=torch.ones(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="weights in"):
        inferer(torch.zeros(1, 1, 16, 16, 16), tiny_net, mask=torch.full((1, 1, 16, 16, 16), 2.0))
    with pytest.raises(ValueError, match="in_channels must be 16"):
        inferer((1, 2, 16, 16, 16), tiny_net)
    with pytest.raises(ValueError, match="condition must have batch"):
        inferer((1, 1, 16, 16, 16), tiny_net, condition=torch.zeros(2, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="sampler"):
        WaveletDiffusionInferer(sampler="euler")
    with pytest.raises(ValueError, match="eta"):
        WaveletDiffusionInferer(eta=0.5)
    with pytest.raises(ValueError, match="clip_range"):
        WaveletDiffusionInferer(clip_range=(1, -1))
    with pytest.raises(ValueError, match="spatial_multiple"):
        WaveletDiffusionInferer(spatial_multiple=3)
    with pytest.raises(ValueError, match="timestep_respacing"):
        WaveletDiffusionInferer(timestep_respacing=2000)
    with pytest.raises(ValueError, match="jump_n_sample"):
        WaveletDiffusionInferer(jump_n_sample=2, progress=False)((1, 1, 16, 16, 16), tiny_net)
    with pytest.raises(ValueError, match="mask_condition_channel"):
        WaveletDiffusionInferer(mask_condition_channel=0, progress=False)((1, 1, 16, 16, 16), tiny_net)


def test_docstring_example_runs():
    result = doctest.testmod(wavelet_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0
