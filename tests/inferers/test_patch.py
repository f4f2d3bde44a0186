"""Tests for medgen.inferers.patch: PaDIS patch denoiser parity, overlap mode, DPS/Langevin/PC solvers, resume, meta."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

import medgen.inferers.patch as patch_module
from medgen.diffusion.loop import CHECKPOINT_NAME
from medgen.diffusion.priors import PatchPrior
from medgen.inferers.patch import PatchDiffusionInferer
from medgen.networks.convert import from_official
from medgen.networks.songunet import canvas_position_channels
from medgen.physics.blur import Blur, Downsample
from medgen.physics.ct import ParallelBeamCT
from medgen.transforms.sinogram import GEOMETRY_KEY
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example


@pytest.fixture(scope="module")
def tiny_net():
    d = load_parity("padis_songunet_tiny")
    return from_official("padis_edm", d["state_dict"], d["config"])


def _standin(x, sigma, pos):
    # the analytic stand-in recorded in padis_patch_positions.pt
    return 0.5 * x + 0.1 * pos[:, 0:1] - 0.2 * pos[:, 1:2]


def _gaussian_prior(x, sigma, pos, mean=0.5, var=0.1):
    # exact MMSE denoiser of the prior N(mean, var I): a well-behaved analytic "network" for convergence tests
    return (var * x + sigma**2 * mean) / (var + sigma**2)


def _phantom(batch=1):
    img = torch.zeros(batch, 1, 16, 16)
    img[..., 3:12, 4:11] = 0.7
    img[..., 6:9, 6:9] = 0.3
    return img


def _ct():
    return ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32)


def _inferer(op, **kwargs):
    settings = dict(patch_size=8, pad=8, num_steps=3, inner_iterations=2, sigma_min=0.01, sigma_max=1.0, seed=0)
    settings.update(kwargs)
    return PatchDiffusionInferer(op, progress=False, **settings)


# ------------------------------------------------------------------------------------------------ patch denoiser
def test_patch_geometry_matches_official():
    d = load_parity("padis_patch_positions")
    denoiser = PatchPrior(_standin, d["psize"], d["pad"])
    assert denoiser.canvas_size(d["image_size"]) == d["resolution"]
    assert denoiser.patch_starts(d["image_size"]) == d["spaced"].tolist()
    assert denoiser.patch_indices(d["offset_ab"], d["image_size"]) == d["indices"].tolist()
    assert torch.equal(canvas_position_channels(d["resolution"]), d["latents_pos"])
    # PaDIS' full-size setting: 5 patches of 56 over a 304 canvas
    assert PatchPrior(_standin, 56, 24).patch_starts(256) == [0, 56, 112, 168, 224]


def test_denoised_from_patches_parity_tiny_net(tiny_net):
    d = load_parity("padis_patch_positions")
    denoiser = PatchPrior(tiny_net, d["psize"], d["pad"])
    torch.manual_seed(9)  # as the recorded call; with t_goal=0 the official border draw does not change values
    with torch.no_grad():
        out = denoiser.denoise(d["x"], d["t_hat"], offsets=torch.tensor(d["offset_ab"]))
    scale = d["D_net"].abs().max().item()
    assert out.shape == d["D_net"].shape and out.dtype == torch.float32
    assert (out - d["D_net"]).abs().max().item() <= 1e-5 * scale
    pad = d["pad"]
    assert out[..., :pad, :].abs().max() == 0 and out[..., -pad:, :].abs().max() == 0
    assert out[..., :pad].abs().max() == 0 and out[..., -pad:].abs().max() == 0


def test_denoised_from_patches_parity_standin():
    d = load_parity("padis_patch_positions")
    denoiser = PatchPrior(_standin, d["psize"], d["pad"])
    out = denoiser.denoise(d["x"], d["t_hat"], offsets=torch.tensor([d["offset_ab"]]))
    assert torch.equal(out, d["D_standin"])


def test_random_offsets_drawn_from_generator_and_cover_image():
    d = load_parity("padis_patch_positions")
    x = d["x"].expand(3, 1, 32, 32).contiguous()
    denoiser = PatchPrior(_standin, 8, 8)
    offsets = denoiser.draw_offsets(500, torch.Generator().manual_seed(1))
    assert offsets.min() == 0 and offsets.max() == 7  # randint(0, pad - 1) inclusive
    expected = d["D_standin"].expand(3, 1, 32, 32)
    for seed in range(4):  # positions are global: a pointwise stand-in gives the same image for every offset
        out = denoiser.denoise(x, 0.7, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(out, expected, atol=1e-6)
    a = denoiser.denoise(x, 0.7, generator=torch.Generator().manual_seed(3))
    b = denoiser.denoise(x, 0.7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_random_mode_uses_one_batched_call_and_per_item_offsets():
    calls = []

    def network(patches, sigma, pos):
        calls.append((patches.shape, pos.shape))
        return patches + pos[:, :1]

    denoiser = PatchPrior(network, 8, 8)
    x = torch.randn(2, 1, 32, 32)
    out = denoiser.denoise(x, 0.5, offsets=torch.tensor([[0, 7], [3, 1]]))
    assert calls == [(torch.Size([18, 1, 8, 8]), torch.Size([18, 2, 8, 8]))]
    # output = x + x_pos in the image area, whatever the offset
    pos = canvas_position_channels(32)[:, :1]
    assert torch.allclose(out[..., 8:24, 8:24], (x + pos)[..., 8:24, 8:24], atol=1e-6)
    chunked = PatchPrior(network, 8, 8, max_batch=4).denoise(x, 0.5, offsets=torch.tensor([[0, 7], [3, 1]]))
    assert len(calls) == 1 + 5 and torch.equal(chunked, out)


def _context_denoiser(patches, sigma, pos):
    # depends on the whole patch (its mean), so overlapping patches disagree and the averaging matters
    return 0.5 * patches + patches.mean(dim=(2, 3), keepdim=True) + 0.1 * pos[:, 0:1] - 0.05 * pos[:, 1:2]


def test_overlap_mode_matches_direct_computation():
    pad, ps, overlap, w = 8, 8, 2, 16
    n = w + 2 * pad
    x = torch.randn(2, 1, n, n, generator=torch.Generator().manual_seed(0))
    denoiser = PatchPrior(_context_denoiser, ps, pad, mode="overlap", overlap=overlap)
    out = denoiser.denoise(x, 0.3)
    starts = [pad, pad + 6, pad + 12]  # stride 6 until the image is covered (official while loop)
    assert denoiser.patch_starts(w) == starts
    pos = canvas_position_channels(n)
    expected = torch.zeros_like(x)
    for b in range(2):
        total, count = torch.zeros(n, n), torch.zeros(n, n)
        for r in starts:
            for c in starts:
                patch = x[b : b + 1, :, r : r + ps, c : c + ps]
                value = _context_denoiser(patch, 0.3, pos[:, :, r : r + ps, c : c + ps])[0, 0]
                total[r : r + ps, c : c + ps] += value
                count[r : r + ps, c : c + ps] += 1
        expected[b, 0, pad : n - pad, pad : n - pad] = (total / count)[pad : n - pad, pad : n - pad]
    assert torch.allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match="offsets"):
        denoiser.denoise(x, 0.3, offsets=torch.tensor([1, 1]))


def test_denoiser_rejects_bad_sizes():
    with pytest.raises(ValueError, match="use pad=8"):
        PatchPrior(_standin, 8, 4).denoise(torch.zeros(1, 1, 24, 24), 0.5)
    with pytest.raises(ValueError, match="square"):
        PatchPrior(_standin, 8, 8).denoise(torch.zeros(1, 1, 32, 30), 0.5)
    with pytest.raises(ValueError, match=r"offsets must lie in \[0, pad - 1 = 7\]"):
        PatchPrior(_standin, 8, 8).denoise(torch.zeros(1, 1, 32, 32), 0.5, offsets=torch.tensor([8, 0]))
    with pytest.raises(ValueError, match="overlap"):
        PatchPrior(_standin, 8, 8, mode="overlap", overlap=8)
    with pytest.raises(ValueError, match="mode"):
        PatchPrior(_standin, 8, 8, mode="tile")
    with pytest.raises(TypeError, match="network"):
        PatchPrior("net", 8, 8)


# ------------------------------------------------------------------------------------------------------ solvers
def test_dps_sparse_view_ct_shape_determinism(tiny_net):
    op = _ct()
    y = op(_phantom())
    first = _inferer(op)(y, tiny_net)
    assert isinstance(first, MetaTensor) and first.shape == (1, 1, 16, 16)
    assert first.min() >= 0 and first.max() <= 1 and torch.isfinite(first).all()
    again = _inferer(op)(y, tiny_net)
    assert torch.equal(first.as_tensor(), again.as_tensor())
    other = _inferer(op, seed=1)(y, tiny_net)
    assert not torch.equal(first.as_tensor(), other.as_tensor())
    # MONAI evaluators call inferers under no_grad / inference_mode: DPS still differentiates through the network
    with torch.inference_mode():
        inside = _inferer(op)(y, tiny_net)
    assert torch.equal(first.as_tensor(), inside.as_tensor())


class _Interrupt(RuntimeError):
    pass


def test_dps_resume_equals_uninterrupted_run(tiny_net, tmp_path):
    op = _ct()
    y = op(_phantom())
    reference = _inferer(op)(y, tiny_net)
    calls = {"n": 0}

    def failing(patches, sigma, pos):
        calls["n"] += 1
        if calls["n"] == 4:  # second inner iteration of the second noise level
            raise _Interrupt("stop")
        return tiny_net(patches, sigma, pos)

    with pytest.raises(_Interrupt):
        _inferer(op, checkpoint_dir=tmp_path, checkpoint_every=1)(y, failing)
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["step"] == 1
    resumed = _inferer(op, checkpoint_dir=tmp_path, checkpoint_every=1)(y, tiny_net)
    assert torch.equal(resumed.as_tensor(), reference.as_tensor())
    with pytest.raises(ValueError, match="different run"):
        _inferer(op, checkpoint_dir=tmp_path, checkpoint_every=1, zeta=0.5)(y, tiny_net)


def _first_noise_residual(op, y, image_shape, pad=8):
    # init="noise": x = sigma_max * (the first draw of the seeded generator) on the whole canvas (sigma_max = 1 here)
    side = image_shape[-1] + 2 * pad
    noise = torch.randn(image_shape[0], image_shape[1], side, side, generator=torch.Generator().manual_seed(0))
    start = noise[..., pad:-pad, pad:-pad]
    return torch.linalg.vector_norm(op(start) - y).item(), start


@pytest.mark.parametrize(
    "op, expected_ratio",
    [(Blur.gaussian(5, 1.0), 0.45), (Downsample(2), 0.35)],
    ids=["deblur", "super_resolution"],
)
def test_dps_deblur_and_super_resolution_reduce_residual(op, expected_ratio):
    truth = _phantom()
    y = op(truth)
    inferer = _inferer(op, num_steps=6, inner_iterations=4, zeta=1.0, init="noise")
    out = inferer(y, _gaussian_prior).as_tensor()
    initial, start = _first_noise_residual(op, y, truth.shape)
    final = torch.linalg.vector_norm(op(out) - y).item()
    # measured 0.437 (deblur) and 0.340 (super-resolution) with this seed
    assert final < expected_ratio * initial
    assert torch.linalg.vector_norm(out - truth) < torch.linalg.vector_norm(start - truth)


def test_pseudo_inverse_init_is_the_clamped_padded_fbp(tiny_net):
    op = _ct()
    y = op(_phantom())
    seen = {}

    class Capture(PatchPrior):
        def denoise(self, x, sigma, *, generator=None, offsets=None):
            seen.setdefault("x", x.detach().clone())
            seen.setdefault("sigma", sigma)
            return super().denoise(x, sigma, generator=generator, offsets=offsets)

    _inferer(op, num_steps=2, inner_iterations=1)(y, Capture(tiny_net, 8, 8))
    fbp = op.fbp(y).clamp(0, 1)
    assert torch.equal(seen["x"], torch.nn.functional.pad(fbp, (8,) * 4))
    assert seen["sigma"] == pytest.approx(1.0)


def test_dps_update_formula_with_analytic_denoiser():
    # two levels, one inner iteration each: x <- x - zeta grad ||y - A D_c|| + alpha/2 score (+ sqrt(alpha) z)
    op, zeta = Downsample(2), 0.7
    y = op(_phantom())
    inferer = _inferer(op, num_steps=2, inner_iterations=1, zeta=zeta, clamp=None)
    out = inferer(y, _standin).as_tensor()

    generator = torch.Generator().manual_seed(0)
    pos = canvas_position_channels(32)
    x = torch.nn.functional.pad(op.pseudo_inverse(y), (8,) * 4)
    for i, sigma in enumerate(inferer.settings.sigmas()[:2]):
        torch.randint(0, 8, (1, 2), generator=generator)  # the patch offset (irrelevant for a pointwise denoiser)
        denoised = torch.nn.functional.pad((0.5 * x + 0.1 * pos[:, :1] - 0.2 * pos[:, 1:])[..., 8:24, 8:24], (8,) * 4)
        r = y - op(denoised[..., 8:24, 8:24])
        grad = torch.nn.functional.pad(-0.5 * op.adjoint(r) / torch.linalg.vector_norm(r), (8,) * 4)  # un-squared
        alpha = sigma**2 / 2
        x = x - zeta * grad + alpha / 2 * (denoised - x) / sigma**2
        if i == 0:
            x = x + alpha**0.5 * torch.randn(x.shape, generator=generator)
    assert torch.allclose(out, x[..., 8:24, 8:24], atol=1e-5)


@pytest.mark.parametrize("solver, extra", [("langevin", {}), ("langevin", {"ddnm": True}), ("pc", {})])
def test_langevin_and_pc_reduce_residual(solver, extra):
    op = Downsample(2)
    truth = _phantom()
    y = op(truth)
    out = _inferer(op, num_steps=6, inner_iterations=4, solver=solver, **extra)(y, _gaussian_prior).as_tensor()
    again = _inferer(op, num_steps=6, inner_iterations=4, solver=solver, **extra)(y, _gaussian_prior).as_tensor()
    assert torch.equal(out, again) and out.shape == truth.shape
    initial, _ = _first_noise_residual(op, y, truth.shape)
    final = torch.linalg.vector_norm(op(out) - y).item()
    assert final < 0.5 * initial


def _sigmas_of_calls(inferer, op, net):
    """The noise levels ``inferer`` calls ``net`` at, in order, reconstructing the phantom's measurement."""
    sigmas = []

    def recording(patches, sigma, pos):
        sigmas.append(sigma)
        return net(patches, sigma, pos)

    inferer(op(_phantom()), recording)
    return sigmas


def test_pc_runs_num_steps_minus_one_levels_with_two_calls_each(tiny_net):
    op = _ct()
    inferer = _inferer(op, num_steps=4, solver="pc")
    sigmas = _sigmas_of_calls(inferer, op, tiny_net)
    levels = inferer.settings.sigmas()
    assert sigmas == [levels[0], levels[0], levels[1], levels[1], levels[2], levels[2]]


def test_overlap_mode_inferer_runs(tiny_net):
    op = _ct()
    out = _inferer(op, patch_mode="overlap", overlap=2)(op(_phantom()), tiny_net)
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


def test_volume_slicewise_equals_batch_of_slices(tiny_net):
    op2d = _ct()
    volume = torch.stack([_phantom()[0], 0.5 * _phantom()[0]], dim=-1)[None]  # (1, 1, 16, 16, 2), slices last
    op3d = ParallelBeamCT.padis(image_size=16, views=6, num_detectors=32, slice_axis=-1)
    y = op3d(volume)
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0], dtype=torch.float64))
    out = _inferer(op3d, slice_axis=-1)(MetaTensor(y, affine=affine), tiny_net)
    assert out.shape == volume.shape and torch.equal(out.affine, affine)
    slices = volume.movedim(-1, 0)[:, 0]  # (2, 1, 16, 16): the same images in the same order
    per_slice = _inferer(op2d)(op2d(slices), tiny_net)
    assert torch.allclose(out.as_tensor()[0, :, :, :, 0], per_slice[0], atol=1e-6)
    assert torch.allclose(out.as_tensor()[0, :, :, :, 1], per_slice[1], atol=1e-6)


# ---------------------------------------------------------------------------------------------------- meta, errors
def test_output_meta_for_sinogram_and_downsample_inputs():
    op = _ct()
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    y = MetaTensor(op(_phantom()), affine=affine, meta={GEOMETRY_KEY: op.geometry()})
    out = _inferer(op, num_steps=2, inner_iterations=1)(y, _standin)
    assert torch.equal(out.affine, affine) and GEOMETRY_KEY not in out.meta

    down = Downsample(2)
    low = torch.tensor([[2.0, 0, 0, 0.5], [0, 2.0, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    out = _inferer(down, num_steps=2, inner_iterations=1)(MetaTensor(down(_phantom()), affine=low), _standin)
    assert out.shape == (1, 1, 16, 16)
    assert torch.allclose(out.affine, torch.eye(4, dtype=torch.float64))  # block centres -> fine voxel centres


def test_invalid_arguments_are_rejected_before_sampling(tiny_net):
    op = _ct()
    y = op(_phantom())
    with pytest.raises(ValueError, match="not a measurement"):
        _inferer(op)(torch.zeros(1, 1, 30, 6), tiny_net)
    with pytest.raises(ValueError, match="do not fit"):
        _inferer(op, pad=4)(y, tiny_net)
    with pytest.raises(ValueError, match="num_steps"):
        _inferer(op, num_steps=1)
    with pytest.raises(ValueError, match="solver"):
        _inferer(op, solver="heun")
    with pytest.raises(ValueError, match="ddnm"):
        _inferer(op, ddnm=True)
    with pytest.raises(ValueError, match="sigma_min"):
        _inferer(op, sigma_min=2.0)
    with pytest.raises(TypeError, match="LinearOperator"):
        PatchDiffusionInferer(lambda x: x)
    with pytest.raises(ValueError, match="channels"):
        _inferer(Blur.gaussian(3, 1.0))(torch.zeros(1, 2, 16, 16), tiny_net)
    with pytest.raises(ValueError, match="square"):
        _inferer(Blur.gaussian(3, 1.0))(torch.zeros(1, 1, 16, 12), tiny_net)
    with pytest.raises(ValueError, match="per_image"):
        _inferer(Downsample(2, spatial_dims=3), slice_axis=2)(torch.zeros(1, 1, 4, 8, 8), tiny_net)
    with pytest.raises(TypeError, match="network"):
        _inferer(op)(y, "net")


def test_module_docstring_example_runs():
    image = run_docstring_example(patch_module.__doc__, "medgen.inferers.patch")["image"]
    assert isinstance(image, MetaTensor) and image.shape == (1, 1, 16, 16)
    assert image.min() >= 0 and image.max() <= 1


def test_warm_start_skips_levels_and_equals_the_cold_path_from_step_zero():
    """DPS, 3 levels x 2 inner iterations on 6-view CT of the 16^2 phantom with the Gaussian-prior denoiser: from
    step 0 the warm start is the cold path (FBP start); from level 2 only its 2 calls run; SIRT by name runs."""
    op = _ct()
    y = op(_phantom())
    calls = []

    def counting(x, sigma, pos):
        calls.append(1)
        return _gaussian_prior(x, sigma, pos)

    cold = _inferer(op)(y, _gaussian_prior)
    full = _inferer(op, warm_start=_phantom(), warm_start_step=0)(y, _gaussian_prior)
    assert torch.equal(full.as_tensor(), cold.as_tensor())
    sigmas = _inferer(op).settings.sigmas()
    warm = _inferer(op, warm_start=_phantom(), warm_start_sigma=sigmas[2])(y, counting)
    assert len(calls) == 2 and warm.shape == (1, 1, 16, 16) and 0 <= warm.min() and warm.max() <= 1
    named = _inferer(op, warm_start="sirt", warm_start_step=1, warm_start_settings={"max_iter": 50})(y, _gaussian_prior)
    assert torch.isfinite(named).all()
    with pytest.raises(ValueError, match="warm_start must be shaped like A\\^H y"):
        _inferer(op, warm_start=torch.zeros(1, 1, 8, 8), warm_start_step=1)(y, _gaussian_prior)


def test_ddim_solver_makes_one_call_per_level_and_reduces_the_residual(tiny_net):
    op = _ct()
    inferer = _inferer(op, num_steps=4, solver="ddim", inner_iterations=None)
    assert inferer.settings.inner_iterations == 1
    assert _sigmas_of_calls(inferer, op, tiny_net) == inferer.settings.sigmas()[:4]
    down = Downsample(2)
    truth = _phantom()
    y = down(truth)
    errors = {}
    for zeta in (0.0, 3.0):
        out = _inferer(down, num_steps=12, inner_iterations=1, solver="ddim", zeta=zeta)(y, _gaussian_prior).as_tensor()
        again = _inferer(down, num_steps=12, inner_iterations=1, solver="ddim", zeta=zeta)(y, _gaussian_prior)
        assert torch.equal(out, again.as_tensor())
        errors[zeta] = (torch.linalg.vector_norm(down(out) - y).item(), torch.linalg.vector_norm(out - truth).item())
    # the data term pulls the prior's samples to the measurement (measured: residual 3.17 -> 0.82, error 7.43 -> 3.47)
    assert errors[3.0][0] < 0.35 * errors[0.0][0] and errors[3.0][1] < 0.6 * errors[0.0][1]
    with pytest.raises(ValueError, match="inner_iterations=1"):
        _inferer(op, solver="ddim", inner_iterations=5)
    with pytest.raises(ValueError, match="eta"):
        _inferer(op, solver="ddim", inner_iterations=1, eta=2.0)


def test_ddim_with_cg_iterations_is_dds_without_network_gradients():
    grads = []

    def recording(patches, sigma, pos):
        grads.append(patches.requires_grad)
        return _gaussian_prior(patches, sigma, pos)

    down = Downsample(2)
    truth = _phantom()
    y = down(truth)
    errors = {}
    for cg in (0, 3):
        grads.clear()
        extra = {"zeta": 0.0} if cg == 0 else {"cg_iterations": cg}
        out = _inferer(down, num_steps=12, inner_iterations=1, solver="ddim", clamp=None, **extra)(y, recording)
        out = out.as_tensor()
        errors[cg] = torch.linalg.vector_norm(down(out) - y).item()
    assert len(grads) == 12 and not any(grads)  # DDS: one call per level, no graph through the network
    # Downsample's normal operator is a scaled identity on its range: one CG step is exact, and the last level outputs
    # the corrected estimate itself
    assert errors[3] < 1e-3 * errors[0], errors
    with pytest.raises(ValueError, match="cg_iterations"):
        _inferer(down, solver="dps", cg_iterations=2)
