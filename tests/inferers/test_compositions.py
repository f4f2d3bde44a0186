"""The five compositions of issue 8 on a brain phantom, each improving the data residual and the PSNR.

Priors: TPDM's demo NCSN++ pair (``bundles/tpdm_brain_mri/models``, trained on phantom seeds 1000-1047) and the two
small priors of ``tests/data/make_composition_priors.py`` (phantom seeds 1000-1031): a 2-channel complex PaDIS patch
prior and a MONAI ``DiffusionModelUNet`` trained as a DDPM. The test volume is phantom seed 2024 (neither a training
seed, nor the bundles' held-out sample seed 7, nor the priors' evaluation seeds 900-903).

Each test compares the result with its initialisation (the measure every solver must beat) and, where a closed-form
baseline exists, records it in a comment. Relative residual: ``||A x - y|| / ||y||``; PSNR over the reference's peak.
Measured on one CPU thread (torch 2.13), in the comments as ``residual, PSNR``; the asserted bounds leave margin.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
import torch

from medgen.data import brain_mri_phantom
from medgen.diffusion import consistency, priors
from medgen.diffusion.priors import EpsilonPrior, as_noise_model
from medgen.inferers.patch import PatchDiffusionInferer
from medgen.inferers.perpendicular import PerpendicularSliceInferer
from medgen.networks.checkpoint import load_state_dict_checked, read_checkpoint
from medgen.networks.ncsnpp import NCSNpp
from medgen.physics.blur import Blur
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.transforms.intensity import TPDMScaleIntensity
from tests.inferers.conftest import run_docstring_example

DATA = Path(__file__).parents[1] / "data"
TPDM_MODELS = Path(__file__).parents[2] / "bundles" / "tpdm_brain_mri" / "models"
sys.path.insert(0, str(DATA))
import make_composition_priors as made  # noqa: E402  (the recipe of the two small priors)

SEED = 2024


@functools.lru_cache(maxsize=1)
def _volume() -> torch.Tensor:
    """The reference ``(1, 1, 32, 32, 32)`` in ``[0, 1]``."""
    volume = torch.as_tensor(TPDMScaleIntensity()(brain_mri_phantom((32,) * 3, SEED)[None]))
    return volume[None].float()


def _relative_residual(measure, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(measure(x) - y) / torch.linalg.vector_norm(y))


def _psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.abs().max() ** 2 / (x - reference).abs().pow(2).mean()))


@functools.lru_cache(maxsize=1)
def _tpdm_networks() -> torch.nn.ModuleDict:
    def load(name: str) -> NCSNpp:
        network = NCSNpp(in_channels=1, image_size=32, nf=16, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                         sigma_min=0.01, sigma_max=15.0, num_scales=2000)
        return load_state_dict_checked(network, read_checkpoint(TPDM_MODELS / name)).eval()

    return torch.nn.ModuleDict({"primary": load("primary.pt"), "auxiliary": load("auxiliary.pt")})


def _slice_measurement(inferer: PerpendicularSliceInferer, operator):
    """``volume -> measurement volume``: ``operator`` on each primary slice (the inferer's measurement layout)."""
    view = inferer.view

    def measure(volume: torch.Tensor) -> torch.Tensor:
        stack = view.to_stack(volume[0, 0], view.primary)
        return view.from_stack(operator(stack), view.primary)[None, None]

    return measure


def _tpdm_case(inferer: PerpendicularSliceInferer, operator, network=None, complex_image: bool = False, **call):
    """Run TPDM on the phantom's measurement; ``(residual, PSNR)`` of the initialisation (the VE prior noise the
    sampler starts from, drawn here with another seed) and of the result."""
    volume = _volume()
    measure = _slice_measurement(inferer, operator)
    as_input = (lambda v: v.to(torch.complex64)) if complex_image else (lambda v: v)
    y = measure(as_input(volume))
    network = _tpdm_networks() if network is None else network
    sde = inferer.sde(inferer._priors(network)[0])
    start = sde.prior_sampling(volume.shape, generator=torch.Generator().manual_seed(1))
    out = inferer(y, network, **call).as_tensor()
    residual = lambda v: _relative_residual(lambda u: measure(as_input(u)), v, y)  # noqa: E731
    return (residual(start), _psnr(start, volume)), (residual(out), _psnr(out, volume)), out, y


def _cs_mask() -> torch.Tensor:
    """Phase-encoding columns: 8 random of 32 plus 4 central ones (37.5 %)."""
    mask = torch.zeros(32, 32)
    mask[:, torch.randperm(32, generator=torch.Generator().manual_seed(0))[:8]] = 1
    mask[:, 14:18] = 1
    return mask


# ------------------------------------------------------------------------------------------ the priors' record
@pytest.mark.parametrize("which", ["padis", "ddpm"])
def test_committed_priors_reproduce_their_recorded_evaluation_loss(which):
    if which == "ddpm":
        pytest.importorskip("einops")  # MONAI's DiffusionModelUNet needs it
    record = json.loads((DATA / made.RECORD_FILE).read_text())[which]
    make = made.padis_network if which == "padis" else made.ddpm_network
    path = DATA / (made.PADIS_FILE if which == "padis" else made.DDPM_FILE)
    assert path.stat().st_size < 3_000_000
    network = load_state_dict_checked(make(), read_checkpoint(path))
    assert sum(p.numel() for p in network.parameters()) == record["parameters"]
    assert made.evaluation_loss(which, network) == pytest.approx(record["evaluation_loss"], rel=1e-5)
    torch.manual_seed(made.TRAINING[which]["seed"])
    untrained = make()  # the initial weights of the training run
    assert made.evaluation_loss(which, untrained) > 3 * record["evaluation_loss"]  # the training did something


# ------------------------------------------------------------------- 1. PaDIS patch prior, multi-coil CS-MRI
def test_padis_patch_prior_solves_multicoil_csmri_with_complex_image_as_two_channels():
    network = load_state_dict_checked(made.padis_network(), read_checkpoint(DATA / made.PADIS_FILE)).eval()
    image = made.complex_slices(_volume()[..., 16], torch.Generator().manual_seed(5))  # (1, 2, 32, 32) [re, im]
    v, u = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    maps = torch.stack([torch.exp(-((u - a) ** 2 + (v - b) ** 2) / 2) for a, b in [(-1, -1), (-1, 1), (1, -1), (1, 1)]])
    maps = (maps / maps.pow(2).sum(0).sqrt()).to(torch.complex64)[None]  # 4 coils, sum_c |S_c|^2 = 1
    mri = CartesianMRI(_cs_mask(), maps, channels=True)
    y = mri(image)  # (1, 8, 32, 32) real
    inferer = PatchDiffusionInferer(mri, patch_size=16, pad=made.PADIS_PAD, solver="langevin", init="noise",
                                    clamp=None, num_steps=30, inner_iterations=3, zeta=1.0, seed=0, progress=False)
    out = inferer(y, network).as_tensor()
    assert out.shape == image.shape
    # initialisation: noise of std sigma_max = 10 around 0; its mean, the zero image, scores 1.000, 9.7 dB
    zero = torch.zeros_like(image)
    assert _relative_residual(mri, zero, y) == pytest.approx(1.0)
    # measured 0.019, 24.3 dB (the zero-filled A^H y: 0.000, 26.2 dB: a 180k-parameter prior does not beat it)
    assert _relative_residual(mri, out, y) < 0.05
    assert _psnr(out, image) > 20.0 > _psnr(zero, image) + 8


def test_patch_prior_docstring_example_runs_multicoil_mri():
    namespace = run_docstring_example(priors.PatchPrior.__doc__, "PatchPrior")
    assert tuple(namespace["image"].shape) == (1, 2, 16, 16) and namespace["kspace"].shape == (1, 8, 16, 16)


# ----------------------------------------------------------- 2. TPDM with the CT operator and a user's operator
@pytest.mark.parametrize("name", ["ct", "blur"])
def test_tpdm_with_ct_and_a_user_operator_hard_consistency(name):
    operator = ParallelBeamCT.tpdm(32, 6) if name == "ct" else Blur.gaussian(7, 2.0)
    task = "svct" if name == "ct" else "inverse"
    inferer = PerpendicularSliceInferer(task, operator=operator, consistency="projection", planes="tpdm_mri",
                                        steps=30, batch_size=32, seed=0, progress=False)
    (res0, psnr0), (res, psnr), _, _ = _tpdm_case(inferer, operator)
    # initialisation 8.2 / 8.1, -23.6 dB; measured ct 0.006, 33.0 dB; blur 0.006, 28.0 dB
    # (the pseudo-inverse of the noiseless data: FBP 0.023, 25.8 dB; deconvolution 0.002, 22.3 dB)
    assert res0 > 5 and psnr0 < -20
    assert res < 0.02 and psnr > 25.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ct", "blur"])
def test_tpdm_with_ct_and_a_user_operator_dps(name):
    operator = ParallelBeamCT.tpdm(32, 6) if name == "ct" else Blur.gaussian(7, 2.0)
    task, weight = ("svct", 0.05) if name == "ct" else ("inverse", 1.0)
    inferer = PerpendicularSliceInferer(task, operator=operator, dps_weight=weight, planes="tpdm_mri", steps=100,
                                        batch_size=32, seed=0, progress=False)
    (res0, psnr0), (res, psnr), _, _ = _tpdm_case(inferer, operator)
    # measured ct 0.054, 20.8 dB; blur 0.060, 17.3 dB (DPS needs more steps than hard consistency)
    assert res0 > 5 and psnr0 < -20
    assert res < 0.1 and psnr > 15.0


def test_tpdm_docstring_examples_deblur_with_any_operator_and_csmri_with_projection():
    namespace = run_docstring_example(PerpendicularSliceInferer.__doc__, "PerpendicularSliceInferer")
    assert tuple(namespace["deblurred"].shape) == tuple(namespace["recon"].shape) == (1, 1, 16, 16, 16)


# ----------------------------------------------------------------- 3. TPDM CS-MRI with hard k-space consistency
def test_tpdm_csmri_with_hard_kspace_consistency_instead_of_dps():
    mask = _cs_mask()
    operator = CartesianMRI(mask, convention="tpdm", real_image=True)
    inferer = PerpendicularSliceInferer("csmri", consistency="projection", planes="tpdm_mri", steps=30, batch_size=32,
                                        seed=0, progress=False)
    (res0, psnr0), (res, psnr), out, y = _tpdm_case(inferer, operator, complex_image=True, mask=mask)
    measure = _slice_measurement(inferer, operator)
    zero_filled = _slice_measurement(inferer, operator.pseudo_inverse)(y).real
    # initialisation 29.0, -23.6 dB; measured 0.020, 30.1 dB; zero-filled 0.137, 21.0 dB
    assert res0 > 10 and psnr0 < -20
    assert res < 0.04 and psnr > 27.0
    assert _psnr(zero_filled, _volume()) + 5 < psnr
    assert _relative_residual(measure, zero_filled.to(torch.complex64), y) > 3 * res


# -------------------------------------------------------------------------- 4. RePaint with a score prior
def test_repaint_inpainting_with_a_score_prior():
    mask = torch.ones(1, 1, 32, 32, 32)
    mask[..., 8:24, 8:24, 8:24] = 0
    volume = _volume()
    inferer = PerpendicularSliceInferer("inpaint", consistency="repaint", planes="tpdm_mri", steps=30, batch_size=32,
                                        seed=0, progress=False)
    sde = inferer.sde(inferer._priors(_tpdm_networks())[0])
    start = sde.prior_sampling(volume.shape, generator=torch.Generator().manual_seed(1))
    out = inferer(volume * mask, _tpdm_networks(), mask=mask).as_tensor()
    hole = mask == 0
    residual = lambda v: _relative_residual(lambda u: u * mask, v, volume * mask)  # noqa: E731
    # initialisation 56.0, -23.6 dB; measured 0.000 (the known voxels pasted), 22.5 dB; the masked volume 13.1 dB
    assert residual(start) > 10 and residual(out) < 1e-6
    assert _psnr(start, volume) < -20 and _psnr(out, volume) > 20.0 > _psnr(volume * mask, volume) + 5
    assert float((out[hole] - volume[hole]).abs().mean()) < 0.5 * float(volume[hole].abs().mean())


def test_repaint_docstring_example_keeps_the_known_voxels():
    namespace = run_docstring_example(consistency.RePaint.__doc__, "RePaint")
    known, mask, filled = namespace["known"], namespace["mask"], namespace["filled"].as_tensor()
    assert torch.equal(filled[mask == 1], known[mask == 1])


# ----------------------------------------------------- 5. a user's MONAI network inside TPDM and PaDIS
@functools.lru_cache(maxsize=1)
def _ddpm_prior() -> EpsilonPrior:
    unet = load_state_dict_checked(made.ddpm_network(), read_checkpoint(DATA / made.DDPM_FILE)).eval()
    return EpsilonPrior(unet, made.ddpm_scheduler())


def test_monai_diffusion_unet_as_the_prior_of_tpdm():
    pytest.importorskip("einops")
    mask = _cs_mask()
    operator = CartesianMRI(mask, convention="tpdm", real_image=True)
    inferer = PerpendicularSliceInferer("csmri", consistency="projection", planes="tpdm_mri", steps=30, batch_size=32,
                                        sigma_max=15.0, seed=0, progress=False)
    (res0, psnr0), (res, psnr), _, _ = _tpdm_case(inferer, operator, network=_ddpm_prior(), complex_image=True,
                                                  mask=mask)
    # initialisation 29.0, -23.6 dB; measured 0.019, 29.0 dB (zero-filled 0.137, 21.0 dB)
    assert res0 > 10 and psnr0 < -20
    assert res < 0.04 and psnr > 26.0


def test_monai_diffusion_unet_as_the_prior_of_padis():
    pytest.importorskip("einops")
    image = _volume()[..., 16]
    blur = Blur.gaussian(7, 2.0)
    y = blur(image)
    inferer = PatchDiffusionInferer(blur, patch_size=32, pad=1, patch_mode="overlap", solver="langevin", init="noise",
                                    num_steps=30, inner_iterations=3, zeta=1.0, seed=0, progress=False)
    out = inferer(y, as_noise_model(_ddpm_prior(), "ve")).as_tensor()
    zero = torch.zeros_like(image)
    # initialisation: noise of std 10 around the zero image (1.000, 6.7 dB); measured 0.023, 16.7 dB
    assert _relative_residual(blur, zero, y) == pytest.approx(1.0)
    assert _relative_residual(blur, out, y) < 0.05
    assert _psnr(out, image) > 14.0 > _psnr(zero, image) + 5


def test_epsilon_prior_docstring_example_runs_in_padis():
    pytest.importorskip("einops")
    namespace = run_docstring_example(EpsilonPrior.__doc__, "EpsilonPrior")
    assert tuple(namespace["image"].shape) == (1, 1, 16, 16)
