from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from medgen.diffusion.consistency import DPS
from medgen.diffusion.priors import ScorePrior
from medgen.diffusion.samplers import PCSettings, pc_step
from medgen.diffusion.sde import VESDE
from medgen.inferers import perpendicular
from medgen.inferers.perpendicular import PLANE_PRESETS, PerpendicularSliceInferer
from medgen.networks.convert import from_official
from medgen.physics.base import LinearOperator
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from tests.conftest import load_parity
from tests.inferers.conftest import run_docstring_example

PC = load_parity("ve_pc_step_tiny")
TINY = load_parity("ncsnpp_tiny")


@pytest.fixture(scope="module")
def tiny_net():
    return from_official("score_sde_ncsnpp", TINY["state_dict"], TINY["config"])


class Identity(LinearOperator):
    def forward(self, x):
        return x

    def adjoint(self, y):
        return y


class GaussianScore(torch.nn.Module):
    """Exact score of data ~ N(mean, std^2) under VE noise sigma: a cheap, differentiable stand-in network."""

    def __init__(self, mean: float = 0.5, std: float = 0.3, fail_at_call: int | None = None) -> None:
        super().__init__()
        self.mean, self.std, self.fail_at_call, self.calls = mean, std, fail_at_call, 0
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            raise RuntimeError("simulated interruption")
        self.shapes.append(tuple(x.shape))
        return -(x - self.mean) / (self.std**2 + sigma.view(-1, 1, 1, 1) ** 2)


def phantom(shape=(16, 16, 16)) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = grids[0] ** 2 / 0.9 + grids[1] ** 2 / 0.8 + grids[2] ** 2 < 0.6
    return (inside.float() * 0.8 + 0.1)[None, None]


# ------------------------------------------------------------------------------------------------ parity


def test_pc_step_parity_through_tiny_ncsnpp(tiny_net):
    """One TPDM corrector+predictor step (step 1000 of 2000) through the real tiny NCSN++, recorded noises."""
    sde = VESDE(PC["sde"]["sigma_min"], PC["sde"]["sigma_max"], PC["sde"]["N"])
    seen = []

    def network(x, sigma):
        score = tiny_net(x, sigma)
        seen.append((x.detach().clone(), score.detach().clone()))
        return score

    settings = PCSettings(snr=PC["snr"])
    x, x_mean = pc_step(
        ScorePrior(network), PC["x_in"], PC["t"], sde, settings, noise=(PC["noise_corrector"], PC["noise_predictor"])
    )
    scale = PC["predictor_x"].abs().max()
    (x_c, score_c), (x_p, score_p) = seen
    assert torch.equal(x_c, PC["x_in"])
    assert (score_c - PC["corrector_score"]).abs().max() <= 1e-5 * PC["corrector_score"].abs().max()
    assert (x_p - PC["corrector_x"]).abs().max() <= 1e-5 * scale  # the predictor's input is the corrector's x
    assert (score_p - PC["predictor_score"]).abs().max() <= 1e-5 * PC["predictor_score"].abs().max()
    assert (x - PC["predictor_x"]).abs().max() <= 1e-5 * scale
    assert (x_mean - PC["predictor_x_mean"]).abs().max() <= 1e-5 * scale
    # the same draws from a generator seeded like the official torch.manual_seed
    g = torch.Generator().manual_seed(PC["seed_before_corrector"])
    x_g, _ = pc_step(ScorePrior(tiny_net), PC["x_in"], PC["t"], sde, settings, generator=g)
    assert (x_g - PC["predictor_x"]).abs().max() <= 1e-5 * scale


def test_dps_csmri_step_parity(tiny_net):
    """TPDM's CS-MRI DPS closures: DPS after the corrector and after the predictor, un-squared batch norm."""
    d = PC["dps_csmri"]
    sde = VESDE(0.01, 378.0, 2000)
    operator = CartesianMRI(d["mask"], convention="tpdm", real_image=True)
    dps = DPS(operator, d["y_kspace"], d["dps_weight"])
    inputs = []

    def network(x, sigma):
        inputs.append(x.detach().clone())
        return tiny_net(x, sigma)

    prior = ScorePrior(network)
    x, x_mean = pc_step(
        prior, PC["x_in"], PC["t"], sde, corrector_consistency=dps, predictor_consistency=dps, noise=tuple(d["noises"])
    )
    scale = d["predictor_x"].abs().max()
    assert (inputs[1] - d["corrector_x"]).abs().max() <= 1e-5 * scale
    assert (x - d["predictor_x"]).abs().max() <= 1e-5 * scale
    assert (x_mean - d["predictor_x_mean"]).abs().max() <= 1e-5 * scale
    # DPS changed the result (the test would notice a dropped gradient): without it the step lands elsewhere
    x_free, _ = pc_step(prior, PC["x_in"], PC["t"], sde, noise=tuple(d["noises"]))
    assert (x_free - d["predictor_x"]).abs().max() > 1e-3
    g = torch.Generator().manual_seed(d["seed_before"])
    x_g, _ = pc_step(prior, PC["x_in"], PC["t"], sde, corrector_consistency=dps, predictor_consistency=dps, generator=g)
    assert (x_g - d["predictor_x"]).abs().max() <= 1e-5 * scale


def test_mini_tpdm_uncond_parity(tiny_net):
    """The official get_tpdm_uncond at 32^3 (N=4, K=2, batch 16, seed 99): permutes, minibatches, x_mean carry-over
    and the layout-dependent randn_like draws on permuted volumes. Error 3.7e-4 on a scale of 1946 (2e-7 relative),
    within the README's 1e-5 relative tolerance."""
    m = PC["mini_tpdm_uncond"]
    inferer = PerpendicularSliceInferer(
        "uncond", steps=m["N"], K=m["K"], batch_size=m["batch_size"], seed=m["seed"], parity=True, progress=False
    )
    assert tuple(m["volume_shape"]) == (32, 1, 32, 32)
    out = inferer((32, 32, 32), tiny_net)
    assert isinstance(out, MetaTensor) and out.shape == (1, 1, 32, 32, 32)
    ref = m["out"]  # [32, 1, 32, 32] = primary slices, i.e. volume (D0, D1, D2) = ref[:, 0]
    scale = ref.abs().max()
    assert (out[0, 0] - ref[:, 0]).abs().max() <= 1e-5 * scale
    # the default mode differs for uncond only by keeping the predictor noise
    same = PerpendicularSliceInferer(
        "uncond", steps=m["N"], K=m["K"], batch_size=m["batch_size"], seed=m["seed"], keep_predictor_noise=False,
        progress=False,
    )((32, 32, 32), tiny_net)
    assert torch.equal(same, out)


# ------------------------------------------------------------------------------------------- behaviour


def test_shapes_planes_and_meta_on_non_cubic_volumes(tiny_net):
    affine = torch.diag(torch.tensor([0.8, 0.9, 2.0, 1.0], dtype=torch.float64))
    template = MetaTensor(torch.zeros(1, 1, 8, 12, 16), affine=affine)
    out = PerpendicularSliceInferer("uncond", steps=2, batch_size=8, seed=0, progress=False)(template, tiny_net)
    assert out.shape == (1, 1, 8, 12, 16) and torch.isfinite(out).all()
    assert torch.equal(out.affine, affine)

    net = GaussianScore()
    PerpendicularSliceInferer("uncond", steps=2, K=2, batch_size=100, seed=0, progress=False)((6, 10, 14), net)
    assert net.shapes == [(6, 1, 10, 14)] * 2 + [(14, 1, 6, 10)] * 2  # tpdm_mri: aux = permute(3, 1, 0, 2)
    net = GaussianScore()
    PerpendicularSliceInferer("uncond", steps=2, planes="tpdm_ct", batch_size=100, seed=0, progress=False)(
        (6, 10, 14), net
    )
    assert net.shapes[2:] == [(10, 1, 14, 6)] * 2  # tpdm_ct: aux = permute(2, 1, 3, 0)
    net = GaussianScore()
    PerpendicularSliceInferer(
        "uncond", steps=2, primary_plane=2, auxiliary_plane=(0, 2, 1), batch_size=4, seed=0, progress=False
    )((6, 10, 14), net)
    # 14 primary slices in ceil(14 / 4) = 4 near-equal minibatches (4, 4, 3, 3), then 6 aux slices in 2 (3, 3);
    # two network calls (corrector, predictor) per minibatch
    assert [s[0] for s in net.shapes] == [4, 4, 4, 4, 3, 3, 3, 3] + [3, 3, 3, 3]
    assert net.shapes[0][2:] == (6, 10) and net.shapes[-1][2:] == (14, 10)
    # B > 1: each volume sampled, output (B, 1, ...)
    out = PerpendicularSliceInferer("uncond", steps=2, seed=0, progress=False)((2, 1, 4, 6, 8), GaussianScore())
    assert out.shape == (2, 1, 4, 6, 8)


def test_float_k_schedule_and_determinism():
    def run(seed, **kwargs):
        net = GaussianScore()
        out = PerpendicularSliceInferer("uncond", steps=12, K=2.5, batch_size=100, seed=seed, progress=False, **kwargs)(
            (4, 6, 8), net
        )
        return out, [s[0] for s in net.shapes[::2]]

    out, turns = run(5)
    again, turns_again = run(5)
    assert torch.equal(out, again) and turns == turns_again
    assert set(turns) == {4, 8}  # both planes used (4 primary slices, 8 auxiliary)
    g = torch.Generator().manual_seed(5)  # one rand(1) draw per step, before the step's noise draws
    first = (torch.rand(1, generator=g) > 1 / 2.5).item()
    assert turns[0] == (4 if first else 8)
    other, _ = run(6)
    assert not torch.equal(out, other)


def test_resume_after_interruption_is_bit_identical(tmp_path):
    """Parity mode, float K, ZSR noise draws: with seed 0 the turns are P, A, A, P, P, P (4 calls per primary step,
    6 per auxiliary); failing at call 19 (step 3) resumes from the state after an auxiliary step, whose permuted
    memory layout (which TPDM's randn_like draws depend on) the checkpoint must keep."""
    low = ZAxisAverage(2, axis=-1)(phantom((6, 8, 8)))
    kwargs = dict(factor=2, dps_weight=1.0, steps=6, K=2.5, batch_size=3, seed=0, parity=True, progress=False)
    reference_net = GaussianScore()
    reference = PerpendicularSliceInferer("zsr", **kwargs)(low, reference_net)
    assert [s[2:] for s in reference_net.shapes[:20:2]] == [(8, 8)] * 2 + [(6, 8)] * 6 + [(8, 8)] * 2
    ckpt = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):
        PerpendicularSliceInferer("zsr", checkpoint_dir=ckpt, checkpoint_every=1, **kwargs)(
            low, GaussianScore(fail_at_call=19)
        )
    assert (ckpt / "sampling_state.pt").is_file()
    resumed_net = GaussianScore()
    resumed = PerpendicularSliceInferer("zsr", checkpoint_dir=ckpt, checkpoint_every=1, **kwargs)(low, resumed_net)
    assert torch.equal(resumed, reference)
    assert resumed_net.calls == 12  # steps 3-5 only


def _residual_ratio(task, make_inferer, measure, measurement, **call):
    norms = {}
    for w in (0.0, 1.0):
        out = make_inferer(w)(measurement, GaussianScore(), **call)
        norms[w] = (measure(out.as_tensor()) - measurement.as_tensor()).abs().norm().item()
    return norms[1.0] / norms[0.0]


def test_zsr_end_to_end_dps_and_affine(tiny_net):
    vol = phantom((16, 16, 16))
    op = ZAxisAverage(4, axis=-1)
    low = MetaTensor(op(vol), affine=torch.diag(torch.tensor([1.0, 1.0, 4.0, 1.0], dtype=torch.float64)))
    out = PerpendicularSliceInferer("zsr", factor=4, steps=2, batch_size=8, seed=0, progress=False)(low, tiny_net)
    assert out.shape == (1, 1, 16, 16, 16) and torch.isfinite(out).all()
    # finer grid along z: spacing 1, block of 4 centred on its coarse voxel (centre of voxels 0..3 at coarse 0)
    expected = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    expected[2, 3] = -1.5
    assert torch.allclose(out.affine, expected)
    # corrected init is consistent with the data; the official one leaks noise into the measured means
    for parity, consistent in ((False, True), (True, False)):
        inferer = PerpendicularSliceInferer("zsr", factor=4, steps=1, seed=0, parity=parity, progress=False)
        info = inferer._prepare(low, None, {})
        one = inferer._initial_stack(info, 0, VESDE(0.01, 378.0, 1), torch.Generator().manual_seed(0))
        error = (op(one) - low[0, 0].unsqueeze(1)).abs().max().item()
        assert (error < 1e-3) == consistent
    # a length that is not a multiple of the factor keeps the trailing sample unmeasured (TPDM's 256 % 5)
    out = PerpendicularSliceInferer("zsr", factor=4, steps=2, seed=0, progress=False)(low, GaussianScore(), length=17)
    assert out.shape == (1, 1, 16, 16, 17)
    for parity in (False, True):
        ratio = _residual_ratio(
            "zsr",
            lambda w: PerpendicularSliceInferer(
                "zsr", factor=4, dps_weight=4.0 * w, steps=20, batch_size=8, seed=1, parity=parity, progress=False
            ),
            op,
            low,
        )
        assert ratio < 0.15, ratio  # measured: 0.074 (corrected), 0.083 (parity)


def test_csmri_end_to_end_dps(tiny_net):
    vol = phantom((16, 16, 16))
    mask = (torch.rand(16, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    mask[6:10, 6:10] = 1
    operator = CartesianMRI(mask, convention="tpdm", real_image=True)
    kspace = MetaTensor(operator(vol))
    out = PerpendicularSliceInferer("csmri", dps_weight=0.01, steps=2, batch_size=8, seed=0, progress=False)(
        kspace, tiny_net, mask=mask
    )
    assert out.shape == (1, 1, 16, 16, 16) and not out.is_complex() and torch.isfinite(out).all()
    ratio = _residual_ratio(
        "csmri",
        lambda w: PerpendicularSliceInferer(
            "csmri", dps_weight=0.2 * w, mask=mask, steps=20, batch_size=8, seed=1, progress=False
        ),
        operator,
        kspace,
    )
    assert ratio < 0.5, ratio  # measured: 0.34
    # parity uses the official (copy-pasted) SV-CT permutation as auxiliary plane, the default the MRI one
    official = PerpendicularSliceInferer("csmri", dps_weight=0.01, parity=True)
    assert official.view.auxiliary == PLANE_PRESETS["tpdm_ct"][1]
    assert PerpendicularSliceInferer("csmri", dps_weight=0.01).view.auxiliary == PLANE_PRESETS["tpdm_mri"][1]


def test_svct_end_to_end_dps(tiny_net):
    vol = phantom((16, 16, 16))
    ct = ParallelBeamCT.tpdm(image_size=16, sparsity=20)
    sinogram = MetaTensor(ct(vol[0].permute(1, 0, 2, 3)).permute(1, 0, 2, 3)[None])  # slice axis 0 kept
    assert sinogram.shape == (1, 1, 16, 23, 9)
    inferer = PerpendicularSliceInferer(
        "svct", operator=ct, dps_weight=0.05, steps=2, batch_size=8, seed=0, progress=False
    )
    out = inferer(sinogram, tiny_net)
    assert out.shape == (1, 1, 16, 16, 16) and torch.isfinite(out).all()

    def measure(volume):
        return ct(volume[0].permute(1, 0, 2, 3)).permute(1, 0, 2, 3)[None]

    ratio = _residual_ratio(
        "svct",
        lambda w: PerpendicularSliceInferer(
            "svct", operator=ct, dps_weight=0.2 * w, K=2.7, steps=20, batch_size=8, seed=1, progress=False
        ),
        measure,
        sinogram,
    )
    assert ratio < 0.5, ratio  # measured: 0.31
    # slices in another orientation (rows = axis 2): the measurement volume is the slices' sinograms put back in
    # place, (detectors, angles) on the plane's (row, col) axes
    transposed = ct(vol[0].permute(1, 0, 3, 2)).permute(1, 0, 3, 2)[None]
    assert transposed.shape == (1, 1, 16, 9, 23)
    ratio = _residual_ratio(
        "svct",
        lambda w: PerpendicularSliceInferer(
            "svct", operator=ct, dps_weight=0.2 * w, primary_plane=(0, 2, 1), auxiliary_plane=1, steps=20,
            batch_size=8, seed=1, progress=False,
        ),
        lambda volume: ct(volume[0].permute(1, 0, 3, 2)).permute(1, 0, 3, 2)[None],
        MetaTensor(transposed),
    )
    assert ratio < 0.5, ratio


def test_per_sample_norms_do_not_depend_on_the_minibatch():
    """With ``per_sample`` a slice's step (Langevin size and DPS gradient) is the same whatever shares its minibatch."""
    sde = VESDE(0.01, 378.0, 100)
    g = torch.Generator().manual_seed(0)
    x, target = torch.randn(4, 1, 8, 8, generator=g) * 3, torch.rand(4, 1, 8, 8, generator=g)
    x[2:] *= 5  # very different slices in the two halves
    noise = (torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g))
    prior = ScorePrior(GaussianScore())

    def step(rows, reduction):
        dps = DPS(Identity(), target[rows], 0.5, norm="batch" if reduction == "batch_mean" else "item")
        return pc_step(
            prior, x[rows], 0.3, sde, PCSettings(norm_reduction=reduction), corrector_consistency=dps,
            predictor_consistency=dps, noise=(noise[0][rows], noise[1][rows]),
        )[0]

    for reduction, independent in (("per_sample", True), ("batch_mean", False)):
        whole = step(slice(0, 4), reduction)
        halves = torch.cat([step(slice(0, 2), reduction), step(slice(2, 4), reduction)])
        assert torch.allclose(whole, halves, atol=1e-5) == independent


def test_evaluator_style_call_runs_dps_under_no_grad():
    """What monai's SupervisedEvaluator does per iteration (``with eval_mode(network): inferer(inputs, network)``,
    i.e. under ``torch.no_grad``); pytorch-ignite, which the evaluator itself needs, is not installed here."""
    from monai.networks.utils import eval_mode

    low = MetaTensor(ZAxisAverage(2, axis=-1)(phantom((8, 8, 8))))
    network = torch.nn.ModuleList([GaussianScore(), GaussianScore(mean=0.4)])
    inferer = PerpendicularSliceInferer("zsr", factor=2, dps_weight=1.0, steps=4, seed=0, progress=False)
    with eval_mode(network):
        pred = inferer(low, network)
    assert pred.shape == (1, 1, 8, 8, 8)
    plain = inferer(low, tuple(network))
    assert torch.equal(pred, plain)
    undamped = PerpendicularSliceInferer("zsr", factor=2, dps_weight=0.0, steps=4, seed=0, progress=False)
    assert not torch.equal(plain, undamped(low, tuple(network)))  # DPS did act under no_grad
    with torch.inference_mode():  # one rule for every inferer: sampling leaves inference mode, DPS keeps working
        frozen = inferer(torch.inference_mode()(lambda: low.clone())(), network)
    assert torch.equal(frozen, plain)


def test_module_docstring_example_runs():
    volume = run_docstring_example(perpendicular.__doc__, "medgen.inferers.perpendicular")["volume"]
    assert isinstance(volume, MetaTensor) and volume.shape == (1, 1, 16, 16, 16)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="task"):
        PerpendicularSliceInferer("denoise")
    with pytest.raises(ValueError, match="K must be >= 2"):
        PerpendicularSliceInferer(K=1)
    with pytest.raises(ValueError, match="K must be a finite float"):
        PerpendicularSliceInferer(K=-1.0)
    with pytest.raises(TypeError, match="K must be"):
        PerpendicularSliceInferer(K="2")
    with pytest.raises(ValueError, match="batch_size"):
        PerpendicularSliceInferer(batch_size=0)
    with pytest.raises(ValueError, match="factor"):
        PerpendicularSliceInferer("zsr")
    with pytest.raises(ValueError, match="dps_weight is required"):
        PerpendicularSliceInferer("zsr", factor=7)
    with pytest.raises(ValueError, match="dps_weight is required"):
        PerpendicularSliceInferer("csmri")
    with pytest.raises(ValueError, match="zsr_axis"):
        PerpendicularSliceInferer("zsr", factor=2, zsr_axis=0)
    with pytest.raises(ValueError, match="perpendicular"):
        PerpendicularSliceInferer(primary_plane=1, auxiliary_plane=(1, 0, 2))
    with pytest.raises(ValueError, match="primary_plane"):
        PerpendicularSliceInferer(primary_plane=(0, 0, 1), auxiliary_plane=2)
    with pytest.raises(ValueError, match="planes"):
        PerpendicularSliceInferer(planes="sagittal")
    with pytest.raises(ValueError, match="contradicts parity"):
        PerpendicularSliceInferer(parity=True, keep_predictor_noise=True)
    with pytest.raises(ValueError, match="contradicts parity"):
        PerpendicularSliceInferer(parity=True, norm_reduction="per_sample")
    with pytest.raises(TypeError, match="operator"):
        PerpendicularSliceInferer("svct", dps_weight=0.1)
    inferer = PerpendicularSliceInferer("zsr", factor=2, steps=2, progress=False)
    with pytest.raises(ValueError, match="C=1"):
        inferer(torch.zeros(1, 2, 4, 4, 2), GaussianScore())
    with pytest.raises(ValueError, match="length"):
        inferer(torch.zeros(1, 1, 4, 4, 2), GaussianScore(), length=7)
    with pytest.raises(TypeError, match="network must be a callable network or a medgen Prior"):
        inferer(torch.zeros(1, 1, 4, 4, 2), (3, GaussianScore()))
    with pytest.raises(ValueError, match="pair"):
        inferer(torch.zeros(1, 1, 4, 4, 2), (GaussianScore(),) * 3)
    cs = PerpendicularSliceInferer("csmri", dps_weight=0.1, steps=2, progress=False)
    kspace = torch.zeros(1, 1, 4, 6, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match="mask is required"):
        cs(kspace, GaussianScore())
    with pytest.raises(ValueError, match="mask"):
        cs(kspace, GaussianScore(), mask=torch.ones(8, 6))
    with pytest.raises(TypeError, match="complex"):
        cs(kspace.real, GaussianScore(), mask=torch.ones(6, 8))
    ct = PerpendicularSliceInferer("svct", operator=ParallelBeamCT.tpdm(8, 20), dps_weight=0.1, progress=False)
    with pytest.raises(ValueError, match="not a measurement of ParallelBeamCT"):
        ct(torch.zeros(1, 1, 4, 10, 9), GaussianScore())
    with pytest.raises(TypeError, match="shape"):
        PerpendicularSliceInferer(steps=2)("volume", GaussianScore())


def test_warm_start_skips_steps_and_equals_the_cold_path_from_step_zero():
    """zsr 2x on a 8x8x16 phantom, 6 steps of a Gaussian stand-in: the warm start from the slice-repetition estimate
    (a tensor) or from CGLS per slice (by name) runs only the steps from its start, from step 0 it is the cold path,
    and from the truth at a small noise level it ends nearer the truth than the cold start (measured: error 4.16 vs
    35.8 after 6 steps from sigma_max 378)."""
    truth = phantom((8, 8, 16))
    op = ZAxisAverage(2, axis=-1)
    low = op(truth)
    kwargs = dict(factor=2, dps_weight=1.0, steps=6, batch_size=8, seed=0, progress=False)
    cold_net = GaussianScore()
    cold = PerpendicularSliceInferer("zsr", **kwargs)(low, cold_net)
    full_net = GaussianScore()
    full = PerpendicularSliceInferer("zsr", warm_start=op.pseudo_inverse(low), warm_start_step=0, **kwargs)(
        low, full_net
    )
    assert torch.equal(full, cold) and full_net.calls == cold_net.calls == 18
    sde = VESDE(0.01, 378.0, 6)
    sigmas = sde.sigma(torch.linspace(1.0, 1e-5, 6)).tolist()
    warm_net = GaussianScore()
    warm = PerpendicularSliceInferer("zsr", warm_start=truth, warm_start_sigma=sigmas[4] * 1.001, **kwargs)(
        low, warm_net
    )
    assert warm_net.calls == 6  # steps 4 and 5 only (the steps alternate 2 and 4 calls: 18 in all)
    error = torch.linalg.vector_norm(warm - truth).item()
    assert error < 0.25 * torch.linalg.vector_norm(cold - truth).item(), error
    named_net = GaussianScore()
    named = PerpendicularSliceInferer("zsr", warm_start="cgls", warm_start_step=3, **kwargs)(low, named_net)
    assert named_net.calls == 10 and torch.isfinite(named).all()  # steps 3-5
    with pytest.raises(ValueError, match="warm_start must be a volume shaped"):
        PerpendicularSliceInferer("zsr", warm_start=truth[..., :8], warm_start_step=2, **kwargs)(low, GaussianScore())
    with pytest.raises(ValueError, match="task='uncond' has none"):
        PerpendicularSliceInferer("uncond", warm_start="cgls", warm_start_step=2)


def test_ddim_predictor_without_corrector_halves_the_calls_and_stays_on_the_schedule():
    # N(0.5, 0.3^2) data, 6 steps from sigma 10: the reverse-diffusion predictor leaves far too much noise,
    # DDIM's update keeps the state's noise at the schedule's level (measured std: 0.672 vs 0.241 / 0.174 / 0.210)
    stds, calls = {}, {}
    for name, kw in {"reverse_diffusion": {}, "ddim": {"predictor": "ddim"},
                     "ddim_no_corrector": {"predictor": "ddim", "corrector_steps": 0},
                     "ddim_eta0": {"predictor": "ddim", "corrector_steps": 0, "eta": 0.0}}.items():
        net = GaussianScore()
        out = PerpendicularSliceInferer("uncond", steps=6, batch_size=16, seed=0, sigma_max=10.0, progress=False,
                                        **kw)((16, 16, 16), net)
        stds[name], calls[name] = out.std().item(), net.calls
    assert calls == {"reverse_diffusion": 12, "ddim": 12, "ddim_no_corrector": 6, "ddim_eta0": 6}
    assert stds["reverse_diffusion"] > 0.6
    assert all(abs(stds[name] - 0.3) < 0.15 for name in ("ddim", "ddim_no_corrector", "ddim_eta0")), stds
    # DPS acts after the DDIM predictor as after reverse diffusion (measured ratio 0.376)
    vol, op = phantom((16, 16, 16)), ZAxisAverage(4, axis=-1)
    low = op(vol)
    ratio = _residual_ratio("zsr", lambda w: PerpendicularSliceInferer(
        "zsr", factor=4, dps_weight=4.0 * w, steps=20, batch_size=8, seed=1, predictor="ddim", corrector_steps=0,
        progress=False), op, MetaTensor(low))
    assert ratio < 0.5, ratio
    for bad, match in (({"predictor": "euler_maruyama"}, "predictor"), ({"eta": -0.1}, "eta"),
                       ({"corrector_steps": -1}, "corrector_steps")):
        with pytest.raises(ValueError, match=match):
            PerpendicularSliceInferer("uncond", steps=2, **bad)


def test_dds_consistency_corrects_the_ddim_denoised_estimate():
    vol, op = phantom((16, 16, 16)), ZAxisAverage(4, axis=-1)
    low = MetaTensor(op(vol))
    residual = {}
    for consistency in ("dps", "dds"):
        net = GaussianScore()
        out = PerpendicularSliceInferer("zsr", factor=4, dps_weight=0.0, consistency=consistency, predictor="ddim",
                                        steps=10, batch_size=8, seed=1, progress=False)(low, net)
        residual[consistency] = (op(out.as_tensor()) - low.as_tensor()).norm().item()
    # zsr's normal operator has one eigenvalue on its range: one CG step projects x0 exactly; the auxiliary steps
    # in between are unconditional (measured residual 1.13 vs 12.76 without a data term)
    assert residual["dds"] < 0.15 * residual["dps"], residual
    with pytest.raises(ValueError, match="predictor='ddim'"):
        PerpendicularSliceInferer("zsr", factor=4, consistency="dds", steps=2)
    with pytest.raises(ValueError, match="measurement"):
        PerpendicularSliceInferer("uncond", consistency="dds", predictor="ddim", steps=2)
