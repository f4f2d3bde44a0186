from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from torch import nn

from medgen.diffusion.samplers import euler_maruyama_predictor, langevin_corrector, score_function
from medgen.diffusion.sde import HFSSDE, VESDE, VPSDE
from medgen.inferers.highfrequency import SDE_PRESETS, HighFrequencySpaceInferer
from medgen.physics.mri import channels_to_complex, complex_to_channels, fft2c
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example


@pytest.fixture(scope="module")
def hfs():
    return load_parity("hfs_sde")


@pytest.fixture(scope="module")
def tiny_net(hfs):
    from medgen.networks.convert import from_official

    return from_official("score_sde_ddpm", hfs["model_state_dict"], hfs["config"])


def _max_rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


# ------------------------------------------------------------------------------------------------------ parity
@torch.no_grad()
def test_parity_prior_and_pc_steps(hfs, tiny_net):
    """x_init, and one corrector + predictor step at t=1 and t=0.5 (seeds 21/22, 23/24), through the inferer."""
    cfg = hfs["config"]["sampling"]
    inferer = HighFrequencySpaceInferer(hfs["train_mask"], progress=False)
    st = inferer.settings
    assert (st.num_steps, st.snr, st.lam, st.corrector_lam) == (1000, cfg["snr"], cfg["mse"], cfg["corrector_mse"])
    measurement = inferer.measurement(hfs["atb"], hfs["atb_mask"], channels_to_complex(hfs["csm"]))
    sde = inferer.make_sde()
    score_fn = score_function(inferer.prior(tiny_net), sde)
    corrector_term, predictor_term = measurement.term(st.corrector_lam), measurement.term(st.lam)

    x_init = inferer.initial_sample(measurement, sde, torch.Generator().manual_seed(hfs["x_init"]["seed"]))
    assert _max_rel_err(x_init, hfs["x_init"]["value"]) <= 1e-5

    for key in ("pc_step_t1", "pc_step_t05"):
        r = hfs[key]
        t = torch.tensor([r["t"]])
        gen_c = torch.Generator().manual_seed(r["seed_corrector"])
        gen_p = torch.Generator().manual_seed(r["seed_predictor"])
        xc, xcm = langevin_corrector(r["x_in"], t, sde, score_fn, st.snr, guidance=corrector_term.guidance,
                                     generator=gen_c)
        xp, xpm = euler_maruyama_predictor(xc, t, sde, score_fn, guidance=predictor_term.guidance, generator=gen_p)
        for ours, name in (
            (xc, "x_after_corrector"),
            (xcm, "x_mean_after_corrector"),
            (xp, "x_after_predictor"),
            (xpm, "x_mean_after_predictor"),
        ):
            assert _max_rel_err(ours, r[name]) <= 1e-5, (key, name, _max_rel_err(ours, r[name]))


@torch.no_grad()
def test_parity_sampler_n5_through_call(hfs, tiny_net):
    """The official pc_sampler (accelerated_sampling, N=5, alpha table kept at 1000) through ``__call__``.

    10 network calls and 10 data-consistency gradients in float32 (the official code mixes complex128 masks in),
    so exact equality is not expected; measured max-abs-error 1.1e-4 on an output of scale 137 (8e-7 relative).
    """
    r = hfs["pc_sampler_N5"]
    assert r["nfe"] == 10
    affine = torch.diag(torch.tensor([0.5, 0.5, 3.0, 1.0], dtype=torch.float64))
    kspace = MetaTensor(hfs["atb"], affine=affine)
    maps = channels_to_complex(hfs["csm"])
    inferer = HighFrequencySpaceInferer(
        hfs["train_mask"], num_steps=5, table_size=1000, seed=r["seed"], output="channels", progress=False
    )
    recon = inferer(kspace, tiny_net, mask=hfs["atb_mask"], sensitivity_maps=maps)
    assert isinstance(recon, MetaTensor) and recon.shape == (1, 2, 32, 32) and recon.dtype == torch.float32
    assert torch.equal(recon.affine, affine)
    assert _max_rel_err(recon.as_tensor(), r["recon"]) <= 1e-5


def test_official_presets_and_accelerated_quirk(hfs):
    inferer = HighFrequencySpaceInferer(hfs["train_mask"], accelerated=True)
    st = inferer.settings
    assert (st.num_steps, st.snr, st.lam, st.corrector_lam, st.eps) == (
        100,
        0.32,
        2.5,
        0.1,
        1e-3,
    )
    sde = inferer.make_sde()
    assert isinstance(sde, HFSSDE) and sde.N == 100 and sde.alphas.numel() == 1000
    t = torch.tensor([0.5])
    # official quirk: alpha read at floor(0.5 * 99) = 49 of the 1000-long table (~1), not of a 100-long one
    assert sde.langevin_alpha(t).item() == pytest.approx(1 - (0.1 / 1000 + 49 * (19.9 / 1000) / 999), abs=1e-7)
    consistent = HighFrequencySpaceInferer(hfs["train_mask"], accelerated=True, table_size=None).make_sde()
    assert consistent.alphas.numel() == 100
    assert consistent.langevin_alpha(t).item() == pytest.approx(1 - (0.1 / 100 + 49 * (19.9 / 100) / 99), abs=1e-6)

    vp = HighFrequencySpaceInferer(sde="vp", accelerated=True)
    assert (vp.settings.num_steps, vp.settings.snr, vp.settings.lam, vp.settings.corrector_lam) == (100, 0.43, 2.5, 2.5)
    assert isinstance(vp.make_sde(), VPSDE)
    ve = HighFrequencySpaceInferer(sde="ve", accelerated=True)
    v = ve.settings
    assert (v.num_steps, v.snr, v.lam, v.corrector_lam, v.eps) == (300, 0.1, 5.0, 5.0, 1e-5)
    ve_sde = ve.make_sde()
    # official quirk: 1000 sigmas, indexed with floor(t * 299): at t = 1 the predictor uses sigmas[299], not sigma_max
    assert isinstance(ve_sde, VESDE) and ve_sde.N == 300 and ve_sde.discrete_sigmas.numel() == 1000
    _, G = ve_sde.discretize(torch.zeros(1, 2, 4, 4), torch.ones(1))
    s = ve_sde.discrete_sigmas
    torch.testing.assert_close(G, torch.sqrt(s[299] ** 2 - s[298] ** 2).reshape(1))
    assert SDE_PRESETS["ve"].num_steps == 1000


# ------------------------------------------------------------------------------------- analytic score networks
def _phantom_problem(num_coils: int, size: int = 32):
    """A complex elliptical phantom, smooth coil maps (sum |S|^2 = 1), 1-D equispaced mask with 8 ACS columns."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    body = ((xx**2 / 0.6 + yy**2 / 0.8) < 1).float() * (1 + 0.5 * (((xx - 0.2) ** 2 + (yy + 0.1) ** 2) < 0.1).float())
    image = (body * torch.exp(1j * 0.5 * xx)).to(torch.complex64)[None, None]
    mask = torch.zeros(size, size)
    mask[:, ::3] = 1
    mask[:, size // 2 - 4 : size // 2 + 4] = 1
    if num_coils == 1:
        maps = None
        kspace = fft2c(image)
    else:
        angles = [2 * math.pi * c / num_coils for c in range(num_coils)]
        distance2 = [(xx - 1.2 * math.cos(a)) ** 2 + (yy - 1.2 * math.sin(a)) ** 2 for a in angles]
        mag = torch.stack([torch.exp(-d2 / 1.5) for d2 in distance2])
        phase = torch.stack([0.3 * (c + 1) * xx for c in range(num_coils)])
        maps = ((mag / mag.pow(2).sum(0).sqrt()) * torch.exp(1j * phase)).to(torch.complex64)[None]
        kspace = fft2c(maps * image)
    scale = 1.5 * kspace.std()  # HFS-SDE's per-slice normalisation
    low = torch.zeros(size, size)
    low[:, size // 2 - 2 : size // 2 + 2] = 1
    return kspace * mask / scale, mask, maps, image / scale, low


class _GaussianOracle(nn.Module):
    """Exact score of p_t when the high frequencies of the data are N(P x0, s0^2): a perfect HFS prior."""

    def __init__(self, project, target: torch.Tensor, s0: float = 0.1) -> None:
        super().__init__()
        self.project, self.target, self.s0 = project, complex_to_channels(target), s0

    def forward(self, x, std):
        std = std.reshape(-1, 1, 1, 1)
        a2 = 1 - std**2
        return -(self.project(x) - a2.sqrt() * self.project(self.target)) / (a2 * self.s0**2 + std**2)


class _Recorder(nn.Module):
    """Gaussian score ``-x / (1 + v std^2)``; records the time labels and raises at call ``fail_at``."""

    def __init__(self, ve: bool = False, fail_at: int | None = None) -> None:
        super().__init__()
        self.ve, self.fail_at, self.labels = ve, fail_at, []

    def forward(self, x, std):
        if self.fail_at is not None and len(self.labels) == self.fail_at:
            raise RuntimeError("interrupted")
        self.labels.append(std.clone())
        return -x / (1 + std.reshape(-1, 1, 1, 1) ** 2) if self.ve else -x


@pytest.mark.parametrize("num_coils", [4, 1])
@torch.no_grad()
def test_reconstruction_reduces_data_residual(num_coils):
    """Official accelerated setting (N=100, snr 0.32): data residual and error fall well below the zero-filled ones.

    The network is the exact score of a Gaussian prior around the truth, so this checks the sampler and the
    multi-coil data consistency, not a learned prior. Measured (seeds 0-2): 4 coils, residual ||A x - y|| 1.25-1.27
    vs 2.29 zero-filled (A^H y) and 29.5-30.2 at x_T, error ||x - x_true|| 2.88-2.95 vs 6.38 zero-filled; 1 coil
    (zero-filled residual 0), residual 0.87-0.89 vs 28-29 at x_T, error 3.10-3.15 vs 3.50 zero-filled.
    """
    kspace, mask, maps, image, low = _phantom_problem(num_coils)
    inferer = HighFrequencySpaceInferer(low, accelerated=True, seed=0, progress=False, output="complex")
    measurement = inferer.measurement(kspace, mask, maps)
    sde = inferer.make_sde()
    x_T = inferer.initial_sample(measurement, sde, inferer.generator("cpu"))
    zero_filled = measurement.operator.adjoint(measurement.y)
    recon = inferer(kspace, _GaussianOracle(sde.project, image), mask=mask, sensitivity_maps=maps)
    assert recon.shape == (1, 1, 32, 32) and recon.is_complex()
    res_zf, res_start = measurement.residual_norm(zero_filled).item(), measurement.residual_norm(x_T).item()
    res = measurement.residual_norm(recon.as_tensor()).item()
    assert res < 0.06 * res_start, (res, res_start)
    if num_coils > 1:  # single coil: the zero-filled image fits the data exactly (A A^H y = y)
        assert res < 0.7 * res_zf, (res, res_zf)
    truth = complex_to_channels(image)
    err = torch.linalg.vector_norm(complex_to_channels(recon.as_tensor()) - truth).item()
    err_zf = torch.linalg.vector_norm(zero_filled - truth).item()
    err_start = torch.linalg.vector_norm(x_T - truth).item()
    assert err < (0.6 if num_coils > 1 else 0.95) * err_zf and err < 0.1 * err_start, (err, err_zf, err_start)


@torch.no_grad()
def test_determinism_output_layouts_and_resume(tmp_path):
    kspace, mask, maps, image, low = _phantom_problem(2)
    kwargs = dict(num_steps=6, seed=3, progress=False)

    def run(network, seed=3, output="complex", **extra):
        inferer = HighFrequencySpaceInferer(low, **{**kwargs, "seed": seed, "output": output, **extra})
        return inferer(kspace, network, mask=mask, sensitivity_maps=maps).as_tensor()

    reference = run(_Recorder())
    assert torch.equal(run(_Recorder()), reference)
    assert not torch.allclose(run(_Recorder(), seed=4), reference)
    assert torch.equal(channels_to_complex(run(_Recorder(), output="channels")), reference)
    assert torch.equal(run(_Recorder(), output="magnitude"), reference.abs())

    # interrupt at the 8th network call (predictor of step index 3); the checkpoint saved after 3 steps is resumed
    with pytest.raises(RuntimeError, match="interrupted"):
        run(_Recorder(fail_at=7), checkpoint_dir=tmp_path, checkpoint_every=1)
    second = _Recorder()
    resumed = run(second, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert len(second.labels) == 2 * (6 - 3)
    assert torch.equal(resumed, reference)
    with pytest.raises(ValueError, match="different run"):
        run(_Recorder(), seed=5, checkpoint_dir=tmp_path)


@torch.no_grad()
def test_batch_size_decouples_slices():
    """With batch_size=1 each slice has its own step sizes and DC scale (official per-slice sampling)."""
    kspace, mask, maps, image, low = _phantom_problem(2)
    volume = torch.cat([kspace, 3 * kspace])
    other = torch.cat([kspace, 0.5 * kspace])

    def run(data, batch_size):
        inferer = HighFrequencySpaceInferer(low, num_steps=4, seed=0, progress=False, batch_size=batch_size)
        return inferer(data, _Recorder(), mask=mask, sensitivity_maps=maps.expand(2, -1, -1, -1)).as_tensor()

    separate = run(volume, 1)
    assert separate.shape == (2, 1, 32, 32)
    assert torch.equal(run(other, 1)[0], separate[0])  # slice 0 does not see slice 1
    assert not torch.allclose(run(other, None)[0], run(volume, None)[0])  # one minibatch: coupled norms


@pytest.mark.parametrize("sde", ["vp", "ve"])
@torch.no_grad()
def test_vp_ve_baselines(sde):
    kspace, mask, maps, image, _ = _phantom_problem(2)
    network = _Recorder(ve=sde == "ve")
    inferer = HighFrequencySpaceInferer(sde=sde, num_steps=4, seed=0, progress=False, output="channels")
    recon = inferer(kspace, network, mask=mask, sensitivity_maps=maps)
    assert recon.shape == (1, 2, 32, 32) and bool(torch.isfinite(recon).all())
    labels = torch.cat(network.labels)
    assert labels.numel() == 8  # corrector + predictor per step
    t = torch.linspace(1, inferer.settings.eps, 4).repeat_interleave(2)
    if sde == "ve":  # VE network input: sigma(t) = 0.01 * 34800^t
        torch.testing.assert_close(labels, 0.01 * (348 / 0.01) ** t)
    else:  # VP network input: the marginal std
        torch.testing.assert_close(labels, torch.sqrt(1 - torch.exp(-0.5 * t**2 * 19.9 - 0.1 * t)))
    # the start is the unconditional prior: the sampler output is far from it but consistent in scale
    measurement = inferer.measurement(kspace, mask, maps)
    start = inferer.initial_sample(measurement, inferer.make_sde(), inferer.generator("cpu"))
    assert start.std().item() == pytest.approx(348.0 if sde == "ve" else 1.0, rel=0.1)


def test_docstring_example_runs():
    recon = run_docstring_example(HighFrequencySpaceInferer.__doc__, "HighFrequencySpaceInferer")["recon"]
    assert isinstance(recon, MetaTensor) and recon.shape == (1, 1, 32, 32) and recon.is_complex()
    assert bool(torch.isfinite(recon.as_tensor().abs()).all())


# ---------------------------------------------------------------------------------------------- bad input
def test_validation_errors(hfs):
    kspace, mask, maps, _, low = _phantom_problem(2)
    net = _Recorder()
    inferer = HighFrequencySpaceInferer(low, num_steps=2, progress=False)
    with pytest.raises(ValueError, match="low_frequency_mask is required"):
        HighFrequencySpaceInferer(sde="hfs")
    with pytest.raises(ValueError, match="sde must be one of"):
        HighFrequencySpaceInferer(low, sde="subvp")
    with pytest.raises(ValueError, match="table_size"):
        HighFrequencySpaceInferer(low, num_steps=2000)
    with pytest.raises(ValueError, match="output"):
        HighFrequencySpaceInferer(low, output="abs")
    with pytest.raises(ValueError, match="low_frequency_mask must be shaped"):
        HighFrequencySpaceInferer(low.expand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="mask .* is required"):
        inferer(kspace, net, sensitivity_maps=maps)
    with pytest.raises(TypeError, match="must be complex"):
        inferer(kspace.real, net, mask=mask, sensitivity_maps=maps)
    with pytest.raises(ValueError, match=r"\(B, Nc, H, W\)"):
        inferer(kspace[0], net, mask=mask, sensitivity_maps=maps)
    with pytest.raises(ValueError, match="needs sensitivity_maps"):
        inferer(kspace, net, mask=mask)
    with pytest.raises(ValueError, match="sensitivity_maps must be shaped"):
        inferer(kspace, net, mask=mask, sensitivity_maps=maps[:, :1])
    with pytest.raises(TypeError, match="channels_to_complex"):
        inferer(kspace, net, mask=mask, sensitivity_maps=complex_to_channels(maps))
    with pytest.raises(ValueError, match="mask must be shaped"):
        inferer(kspace, net, mask=mask[:16], sensitivity_maps=maps)
    with pytest.raises(ValueError, match="does not broadcast"):
        inferer(kspace, net, mask=mask.expand(3, 1, 32, 32), sensitivity_maps=maps)
    with pytest.raises(ValueError, match="all zeros"):
        inferer(kspace, net, mask=torch.zeros_like(mask), sensitivity_maps=maps)
    with pytest.raises(ValueError, match="low_frequency_mask"):
        HighFrequencySpaceInferer(hfs["train_mask"][..., :16, :16])(kspace, net, mask=mask, sensitivity_maps=maps)
    with pytest.raises(TypeError, match="unexpected arguments"):
        inferer(kspace, net, mask=mask, sensitivity_maps=maps, steps=3)
    assert net.labels == []  # nothing ran


@torch.no_grad()
def test_warm_start_skips_steps_and_equals_the_cold_path_from_step_zero():
    """4 coils, N = 10: from step 0 the warm start is the cold path; from the truth at step 6 only steps 6-9 run
    (2 network calls each: corrector and predictor) and the result is nearer the truth than the cold one; CG-SENSE
    by name (lambda by the discrepancy principle) runs."""
    kspace, mask, maps, image, low = _phantom_problem(4)
    make = lambda **kw: HighFrequencySpaceInferer(low, num_steps=10, seed=0, progress=False, output="complex", **kw)
    sde = make().make_sde()
    cold = make()(kspace, _GaussianOracle(sde.project, image), mask=mask, sensitivity_maps=maps)
    full = make(warm_start=image, warm_start_step=0)(kspace, _GaussianOracle(sde.project, image), mask=mask,
                                                     sensitivity_maps=maps)
    assert torch.equal(full.as_tensor(), cold.as_tensor())
    recorder = _Recorder()
    make(warm_start=image, warm_start_step=6)(kspace, recorder, mask=mask, sensitivity_maps=maps)
    assert len(recorder.labels) == 8
    warm = make(warm_start=image, warm_start_step=6)(kspace, _GaussianOracle(sde.project, image), mask=mask,
                                                     sensitivity_maps=maps)
    error = lambda x: torch.linalg.vector_norm(x.as_tensor() - image).item()
    assert error(warm) < 0.5 * error(cold), (error(warm), error(cold))
    named = make(warm_start="cgls", warm_start_sigma=0.5)(kspace, _GaussianOracle(sde.project, image), mask=mask,
                                                          sensitivity_maps=maps)
    assert torch.isfinite(named.as_tensor()).all()
    with pytest.raises(ValueError, match="warm_start must be a complex image"):
        make(warm_start=image[..., :16], warm_start_step=2)(kspace, recorder, mask=mask, sensitivity_maps=maps)
