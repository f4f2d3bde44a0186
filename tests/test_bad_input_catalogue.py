"""The bad-input catalogue of medgen's public entry points outside the bundles (issue 12; the bundles have their own
in ``tests/bundles/test_bad_inputs.py``).

Every case is one wrong call: an operator, a transform, a network loader, an inferer, a writer, a reader or a
``medgen`` command given a wrong shape, dtype, size, value, file or folder. Each must raise the stated exception type
with a message naming the argument and what was expected (a regex), before any long computation (inferers get a
network that fails the test when it is called; every case must finish within 3 s of CPU time), and write nothing
(the case's folder holds exactly the files the case prepared, with their sizes).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

ENTRY_POINTS = ("operators", "transforms", "networks", "inferers", "writers", "readers", "cli")


@dataclass(frozen=True)
class Case:
    """One bad call: ``call(folder)`` prepares what it needs in ``folder`` (only through :func:`prepared`) and makes
    the call, which must raise ``error`` with a message matching the regex ``match`` (searched with ``re.S``)."""

    entry: str
    name: str
    call: Callable[[Path], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


_PREPARED: dict[Path, int] = {}


def prepared(path: Path) -> Path:
    """Record ``path`` (just written by a case, or a folder it made) with its size: all the case may leave behind."""
    _PREPARED[path] = path.stat().st_size if path.is_file() else -1
    return path


def text_file(folder: Path, name: str, text: str = "x") -> Path:
    (folder / name).write_text(text)
    return prepared(folder / name)


def saved(folder: Path, name: str, content: Any) -> Path:
    torch.save(content, folder / name)
    return prepared(folder / name)


class NetworkCalled(AssertionError):
    """A case reached the network: the inferer started computing before refusing its input."""


class Tripwire(torch.nn.Module):
    """A network that fails the test when it is called (its one parameter fixes the device and dtype)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NetworkCalled("the network was called: the input was not refused before sampling")


def volume(*shape: int, fill: float = 0.5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full(shape, fill, dtype=dtype)


def with_value(x: torch.Tensor, value: float) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[x.numel() // 2] = value
    return x


# ---------------------------------------------------------------------------------------------------- operators
def _operator_cases() -> list[Case]:
    from medgen.physics import (
        Blur,
        CartesianMRI,
        ComposedOperator,
        Downsample,
        Inpainting,
        ParallelBeamCT,
        ZAxisAverage,
        gaussian_kernel,
    )

    mask = torch.ones(8, 8)
    maps = torch.ones(1, 4, 8, 8, dtype=torch.complex64)
    return [
        Case("operators", "ZAxisAverage factor 0", lambda _: ZAxisAverage(0), ValueError,
             r"factor must be a positive integer, got 0"),
        Case("operators", "ZAxisAverage factor float", lambda _: ZAxisAverage(2.5), ValueError,
             r"factor must be a positive integer, got 2\.5"),
        Case("operators", "ZAxisAverage remainder", lambda _: ZAxisAverage(2, remainder="round"), ValueError,
             r"remainder must be one of \('crop', 'partial'\), got 'round'"),
        Case("operators", "ZAxisAverage too short axis", lambda _: ZAxisAverage(4)(volume(1, 1, 4, 4, 2)), ValueError,
             r"x has 2 samples along axis -1, fewer than factor 4"),
        Case("operators", "ZAxisAverage axis", lambda _: ZAxisAverage(2, axis=5)(volume(1, 1, 4, 4, 4)), ValueError,
             r"axis 5 is out of range for x with shape \(1, 1, 4, 4, 4\)"),
        Case("operators", "ZAxisAverage measurement length", lambda _: ZAxisAverage(2, length=8).adjoint(volume(1, 1,
             4, 4, 3)), ValueError, r"length 8 gives 4 measurements.*has 3"),
        Case("operators", "CartesianMRI mask not a tensor", lambda _: CartesianMRI([[1, 0]]), TypeError,
             r"mask must be a torch\.Tensor, got list"),
        Case("operators", "CartesianMRI maps not 3D", lambda _: CartesianMRI(mask, torch.ones(8, 8,
             dtype=torch.complex64)), ValueError, r"sensitivity_maps must be shaped \(B, Nc, \.\.\., H, W\), got shape "
             r"\(8, 8\)"),
        Case("operators", "CartesianMRI maps size", lambda _: CartesianMRI(mask, torch.ones(1, 4, 6, 6,
             dtype=torch.complex64)), ValueError, r"mask \(H, W\) = \(8, 8\) must equal sensitivity_maps \(H, W\) = "
             r"\(6, 6\)"),
        Case("operators", "CartesianMRI image size", lambda _: CartesianMRI(mask)(volume(1, 1, 6, 6,
             dtype=torch.complex64)), ValueError, r"x spatial size \(6, 6\) must equal the mask's \(8, 8\)"),
        Case("operators", "CartesianMRI k-space coils", lambda _: CartesianMRI(mask, maps).adjoint(volume(1, 3, 8, 8,
             dtype=torch.complex64)), ValueError, r"y must have 4 channels along axis 1, got shape \(1, 3, 8, 8\)"),
        Case("operators", "ParallelBeamCT image_size 0", lambda _: ParallelBeamCT(0, 8), ValueError,
             r"image_size must be an int >= 2 or a pair of ints >= 2 \(H, W\), got \(0, 0\)"),
        Case("operators", "ParallelBeamCT no angles", lambda _: ParallelBeamCT(16, 0), ValueError,
             r"angles must be a positive int or a 1D sequence of radians, got 0"),
        Case("operators", "ParallelBeamCT image size", lambda _: ParallelBeamCT(16, 4)(volume(1, 1, 12, 12)),
             ValueError, r"x must have trailing dims \(16, 16\), got shape \(1, 1, 12, 12\)"),
        Case("operators", "ParallelBeamCT sinogram size", lambda _: ParallelBeamCT(16, 4).adjoint(volume(1, 1, 5,
             23)), ValueError, r"y must have trailing dims \(23, 4\), got shape \(1, 1, 5, 23\)"),
        Case("operators", "Blur kernel 1D", lambda _: Blur(torch.ones(5)), ValueError,
             r"kernel must be a real 2D tensor \(kh, kw\)"),
        Case("operators", "Blur kernel NaN", lambda _: Blur(with_value(gaussian_kernel(5, 1.0), float("nan"))),
             ValueError, r"kernel must hold finite values, got 1 NaN and 0 infinite of 25 entries"),
        Case("operators", "Blur boundary", lambda _: Blur(gaussian_kernel(5, 1.0), boundary="wrap"), ValueError,
             r"boundary must be one of \('zero', 'circular'\), got 'wrap'"),
        Case("operators", "Downsample factor 0", lambda _: Downsample(0), ValueError,
             r"factor must be a positive integer, got 0"),
        Case("operators", "Downsample indivisible size", lambda _: Downsample(2)(volume(1, 1, 7, 8)), ValueError,
             r"x spatial shape \(7, 8\) must be divisible by factor 2"),
        Case("operators", "Inpainting mask list", lambda _: Inpainting([[1, 0]]), TypeError,
             r"mask must be a torch\.Tensor, got list"),
        Case("operators", "ComposedOperator non-operator", lambda _: ComposedOperator(ZAxisAverage(2), "blur"),
             TypeError, r"inner must be a medgen LinearOperator, got str"),
    ]


# --------------------------------------------------------------------------------------------------- transforms
def _transform_cases() -> list[Case]:
    from medgen.transforms import (
        CoilCombine,
        EstimateCoilSensitivity,
        FilteredBackProject,
        HaarDWT3D,
        KspaceStdNormalize,
        ParallelBeamProject,
        RandKspaceUndersample,
        RandSimulateMultiCoil,
        TPDMScaleIntensity,
        WDMScaleIntensity,
        ZAxisDownsample,
        equispaced_mask,
        haar_dwt3d,
        haar_idwt3d,
        make_mask,
    )

    image = MetaTensor(volume(1, 8, 8))
    kspace = with_value(volume(1, 8, 8, dtype=torch.complex64), float("nan"))
    return [
        Case("transforms", "haar_dwt3d 2D", lambda _: haar_dwt3d(volume(1, 8, 8)), ValueError,
             r"x must have shape \(B, C, D, H, W\) \(5 dims\), got shape \(1, 8, 8\)"),
        Case("transforms", "haar_dwt3d padding_mode", lambda _: haar_dwt3d(volume(1, 1, 4, 4, 4),
             padding_mode="wrap"), ValueError, r"padding_mode must be one of \('replicate', 'zeros', 'error'\)"),
        Case("transforms", "haar_idwt3d channels", lambda _: haar_idwt3d(volume(1, 7, 2, 2, 2)), ValueError,
             r"coeffs must have a number of channels divisible by 8 .*got 7 channels"),
        Case("transforms", "HaarDWT3D layout", lambda _: HaarDWT3D(layout="interleaved"), ValueError,
             r"layout must be one of \('channel', 'subband'\), got 'interleaved'"),
        Case("transforms", "equispaced_mask acc < 1", lambda _: equispaced_mask((8, 8), acc=0.5), ValueError,
             r"acc must be a number >= 1, got 0\.5"),
        Case("transforms", "make_mask type", lambda _: make_mask("spiral", (8, 8)), ValueError,
             r"mask_type must be one of \(.*'equispaced'.*got 'spiral'"),
        Case("transforms", "RandKspaceUndersample mask_type", lambda _: RandKspaceUndersample(mask_type="spiral"),
             ValueError, r"mask_type must be one of \(.*got 'spiral'"),
        Case("transforms", "RandKspaceUndersample input_type", lambda _: RandKspaceUndersample(
             input_type="sinogram"), ValueError, r"input_type must be one of \('image', 'kspace'\), got 'sinogram'"),
        Case("transforms", "RandKspaceUndersample mask size", lambda _: RandKspaceUndersample(mask=torch.ones(6,
             6))(image), ValueError, r"x spatial size \(8, 8\) must equal the mask's \(6, 6\)"),
        Case("transforms", "ZAxisDownsample factor", lambda _: ZAxisDownsample(0), ValueError,
             r"factor must be a positive integer, got 0"),
        Case("transforms", "ParallelBeamProject preset", lambda _: ParallelBeamProject(preset="fan"), ValueError,
             r"preset must be one of \('tpdm', 'padis'\) or None, got 'fan'"),
        Case("transforms", "FilteredBackProject filter", lambda _: FilteredBackProject(filter="butterworth",
             image_size=16, angles=4), ValueError, r"filter must be one of \('ramp', .*got 'butterworth'"),
        Case("transforms", "WDMScaleIntensity percentiles", lambda _: WDMScaleIntensity(lower=60, upper=40),
             ValueError, r"lower must be below upper \(percentiles in \[0, 100\]\), got lower=60, upper=40"),
        Case("transforms", "TPDMScaleIntensity percentile", lambda _: TPDMScaleIntensity(lower=-1), ValueError,
             r"lower must be in \[0\.0, 100\.0\], got -1\.0"),
        Case("transforms", "KspaceStdNormalize coeff", lambda _: KspaceStdNormalize(coeff=0), ValueError,
             r"coeff must be > 0, got 0"),
        Case("transforms", "KspaceStdNormalize NaN", lambda _: KspaceStdNormalize()(kspace), ValueError,
             r"kspace must hold finite values, got 1 NaN and 0 infinite of 64 entries"),
        Case("transforms", "EstimateCoilSensitivity method", lambda _: EstimateCoilSensitivity(method="sense"),
             ValueError, r"method must be one of \('acs', 'espirit'\), got 'sense'"),
        Case("transforms", "RandSimulateMultiCoil num_coils", lambda _: RandSimulateMultiCoil(num_coils=0),
             ValueError, r"num_coils must be a positive int, got 0"),
        Case("transforms", "CoilCombine input_type", lambda _: CoilCombine(input_type="sinogram"), ValueError,
             r"input_type must be one of \('image', 'kspace'\), got 'sinogram'"),
    ]


# ----------------------------------------------------------------------------------------- networks / converters
def _network_cases() -> list[Case]:
    from medgen.networks import CheckpointMismatchError, from_official, load_state_dict_checked, read_checkpoint

    def truncated(folder: Path) -> Path:
        whole = saved(folder, "whole.pt", {"w": torch.zeros(64)})
        (folder / "truncated.pt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        return prepared(folder / "truncated.pt")

    linear = torch.nn.Linear(2, 3)
    return [
        Case("networks", "from_official kind", lambda f: from_official("score_sde_unet", {}, {}), ValueError,
             r"kind must be one of \[.*'score_sde_ncsnpp'.*got 'score_sde_unet'"),
        Case("networks", "from_official config lacks fields", lambda f: from_official("guided_unet", f / "a.pt", {}),
             ValueError, r"config misses required official UNetModel arguments: \[.*'in_channels'"),
        Case("networks", "read_checkpoint missing file", lambda f: read_checkpoint(f / "absent.pt"),
             FileNotFoundError, r"checkpoint file not found: '.*absent\.pt'.*medgen convert"),
        Case("networks", "read_checkpoint not a path", lambda f: read_checkpoint(3), TypeError,
             r"checkpoint must be a path or a mapping \(state dict\), got int"),
        Case("networks", "read_checkpoint truncated", lambda f: read_checkpoint(truncated(f)), ValueError,
             r"checkpoint '.*truncated\.pt' is not a complete torch\.save file \(\d+ bytes; truncated"),
        Case("networks", "read_checkpoint empty", lambda f: read_checkpoint(text_file(f, "empty.pt", "")),
             ValueError, r"checkpoint '.*empty\.pt' is empty \(0 bytes\)"),
        Case("networks", "read_checkpoint text file", lambda f: read_checkpoint(text_file(f, "notes.pth", "notes\n")),
             ValueError, r"checkpoint '.*notes\.pth' is not a complete torch\.save file"),
        Case("networks", "read_checkpoint tensor", lambda f: read_checkpoint(saved(f, "t.pt", torch.zeros(2))),
             TypeError, r"checkpoint '.*t\.pt' holds a Tensor, expected a dict"),
        Case("networks", "read_checkpoint text as pkl", lambda f: read_checkpoint(text_file(f, "s.pkl", "text\n")),
             ValueError, r"checkpoint '.*s\.pkl' is not a readable EDM pickle"),
        Case("networks", "load_state_dict wrong keys", lambda f: load_state_dict_checked(linear, {"w": torch.zeros(3,
             2)}), CheckpointMismatchError, r"does not match Linear.*missing keys: bias, weight.*unexpected keys: w"),
        Case("networks", "load_state_dict wrong shape", lambda f: load_state_dict_checked(linear, {
             "weight": torch.zeros(3, 3), "bias": torch.zeros(3)}), CheckpointMismatchError,
             r"mis-shaped keys: weight: checkpoint \(3, 3\) vs module \(3, 2\)"),
    ]


# ---------------------------------------------------------------------------------------------------- inferers
def _inferer_cases() -> list[Case]:
    from medgen.inferers import (
        HighFrequencySpaceInferer,
        PatchDiffusionInferer,
        PerpendicularSliceInferer,
        SemanticDiffusionInferer,
        WaveletDiffusionInferer,
    )
    from medgen.physics import ParallelBeamCT
    from medgen.transforms import low_frequency_mask

    net = Tripwire()
    pair = (Tripwire(), Tripwire())

    def tpdm(**kwargs: Any) -> PerpendicularSliceInferer:
        return PerpendicularSliceInferer("zsr", factor=2, steps=2, seed=0, progress=False, **kwargs)

    def padis() -> PatchDiffusionInferer:
        return PatchDiffusionInferer(ParallelBeamCT(16, 4), patch_size=8, pad=8, num_steps=2, seed=0,
                                     progress=False)

    def hfs() -> HighFrequencySpaceInferer:
        return HighFrequencySpaceInferer(low_frequency_mask((8, 8), 2), num_steps=2, seed=0, progress=False)

    def sdm() -> SemanticDiffusionInferer:
        return SemanticDiffusionInferer(timestep_respacing=2, seed=0, progress=False, num_classes=3)

    low = volume(1, 1, 8, 8, 4)
    kspace = volume(1, 2, 8, 8, dtype=torch.complex64)
    mask = torch.ones(8, 8)
    maps = torch.ones(1, 2, 8, 8, dtype=torch.complex64) / 2**0.5
    sinogram = ParallelBeamCT(16, 4)(volume(1, 1, 16, 16))
    finite = r"{} must hold finite values, got {} NaN and {} infinite of {} entries \(the first at index"
    return [
        Case("inferers", "TPDM task", lambda _: PerpendicularSliceInferer("denoise"), ValueError,
             r"task must be one of \(.*'zsr'.*got 'denoise'"),
        Case("inferers", "TPDM 4D input", lambda _: tpdm()(volume(1, 8, 8, 4), pair), ValueError,
             r"inputs must have shape \(B, C=1, D0, D1, D2\), got \(1, 8, 8, 4\)"),
        Case("inferers", "TPDM NaN input", lambda _: tpdm()(with_value(low, float("nan")), pair), ValueError,
             finite.format("inputs", 1, 0, 256)),
        Case("inferers", "TPDM Inf input", lambda _: tpdm()(with_value(low, float("inf")), pair), ValueError,
             finite.format("inputs", 0, 1, 256)),
        Case("inferers", "TPDM complex input", lambda _: tpdm()(low.to(torch.complex64), pair), TypeError,
             r"inputs must be real, got torch\.complex64"),
        Case("inferers", "TPDM integer input", lambda _: tpdm()(low.long(), pair), TypeError,
             r"inputs must be floating point, got torch\.int64"),
        Case("inferers", "TPDM three networks", lambda _: tpdm()(low, (net, net, net)), ValueError,
             r"network must be one network or a \(primary, auxiliary\) pair, got 3"),
        Case("inferers", "TPDM checkpoint_every", lambda _: tpdm(checkpoint_every=-1), ValueError,
             r"checkpoint_every must be an integer >= 0, got -1"),
        Case("inferers", "TPDM checkpoint_dir is a file", lambda f: tpdm(checkpoint_dir=text_file(f, "state"),
             checkpoint_every=1)(low, pair), ValueError, r"checkpoint_dir '.*state' must be a folder"),
        Case("inferers", "TPDM predictor", lambda _: tpdm(predictor="heun"), ValueError,
             r"predictor must be one of \('reverse_diffusion', 'ddim'\), got 'heun'"),
        Case("inferers", "TPDM dds without ddim", lambda _: tpdm(consistency="dds"), ValueError,
             r"consistency='dds'.*needs predictor='ddim', got predictor='reverse_diffusion'"),
        Case("inferers", "TPDM eta", lambda _: tpdm(predictor="ddim", eta=1.5), ValueError,
             r"eta must be in \[0\.0, 1\.0\], got 1\.5"),
        Case("inferers", "PaDIS ddim inner_iterations", lambda _: PatchDiffusionInferer(
             ParallelBeamCT(16, 4), patch_size=8, pad=8, solver="ddim", inner_iterations=5), ValueError,
             r"solver='ddim' makes one denoiser call per noise level; it needs inner_iterations=1, got 5"),
        Case("inferers", "PaDIS cg_iterations without ddim", lambda _: PatchDiffusionInferer(
             ParallelBeamCT(16, 4), patch_size=8, pad=8, cg_iterations=3), ValueError,
             r"cg_iterations is the data term of solver='ddim'; got it with solver='dps'"),
        Case("inferers", "PaDIS sinogram shape", lambda _: padis()(volume(1, 1, 5, 23), net), ValueError,
             r"inputs of shape \(1, 1, 5, 23\) is not a measurement of ParallelBeamCT.*trailing dims \(23, 4\)"),
        Case("inferers", "PaDIS NaN sinogram", lambda _: padis()(with_value(sinogram, float("nan")), net), ValueError,
             finite.format("inputs", 1, 0, 92)),
        Case("inferers", "PaDIS patch_size", lambda _: PatchDiffusionInferer(ParallelBeamCT(16, 4), patch_size=0),
             ValueError, r"patch_size must be an integer >= 1, got 0"),
        Case("inferers", "HFS real k-space", lambda _: hfs()(kspace.real.contiguous(), net, mask=mask,
             sensitivity_maps=maps), TypeError, r"inputs \(k-space\) must be complex \(B, Nc, H, W\), got dtype"),
        Case("inferers", "HFS NaN k-space", lambda _: hfs()(with_value(kspace, float("nan")), net, mask=mask,
             sensitivity_maps=maps), ValueError, finite.format("inputs", 1, 0, 128)),
        Case("inferers", "HFS Inf sensitivity maps", lambda _: hfs()(kspace, net, mask=mask,
             sensitivity_maps=with_value(maps, float("inf"))), ValueError, finite.format("sensitivity_maps", 0, 1,
             128)),
        Case("inferers", "HFS mask size", lambda _: hfs()(kspace, net, mask=torch.ones(6, 6),
             sensitivity_maps=maps), ValueError, r"mask must be shaped \(H, W\) = \(8, 8\).*got \(6, 6\)"),
        Case("inferers", "WDM sampler", lambda _: WaveletDiffusionInferer(sampler="euler"), ValueError,
             r"sampler must be one of \('ddpm', 'ddim'\), got 'euler'"),
        Case("inferers", "WDM template shape", lambda _: WaveletDiffusionInferer(timestep_respacing=2, seed=0,
             progress=False)((4, 4), net), TypeError, r"inputs must be a template volume or a shape \(B, C, D0, D1, "
             r"D2\) of positive ints, got \(4, 4\)"),
        Case("inferers", "SDM fractional labels", lambda _: sdm()(volume(1, 1, 4, 4, 4, fill=0.3), net), ValueError,
             r"inputs must hold integer class indices"),
        Case("inferers", "SDM label above num_classes", lambda _: sdm()(torch.full((1, 1, 4, 4, 4), 5), net),
             ValueError, r"inputs must hold classes in \[0, 3\).*got values in \[5, 5\]"),
    ]


# ----------------------------------------------------------------------------------------------------- writers
def _writer_cases() -> list[Case]:
    from medgen.engines.writers import GeneratedVolumeWriter, ReconstructionWriter, as_affine, write_atomically

    good = volume(1, 1, 4, 4, 4)

    def recon(folder: Path) -> ReconstructionWriter:
        return ReconstructionWriter(folder / "out", prefix="r")

    def existing_outputs(folder: Path) -> Any:
        prepared(folder / "out").mkdir()
        prepared(folder / "out")
        text_file(folder / "out", "r.nii.gz")
        return recon(folder)(good)

    return [
        Case("writers", "output_dir is a file", lambda f: ReconstructionWriter(text_file(f, "out"), "r")(good),
             ValueError, r"output_dir '.*out' must be a folder \(or one that can be created\), got a file"),
        Case("writers", "output_dir under a file", lambda f: ReconstructionWriter(text_file(f, "out") / "sub",
             "r").check(), ValueError, r"output_dir '.*out/sub' must be a folder.*but '.*out' is a file"),
        Case("writers", "staging_dir is a file", lambda f: GeneratedVolumeWriter(f / "out", staging_dir=text_file(f,
             "stage")).check(1), ValueError, r"staging_dir '.*stage' must be a folder"),
        Case("writers", "existing outputs", existing_outputs, FileExistsError,
             r"outputs exist: .*r\.nii\.gz; choose another output_dir or seed, or pass overwrite=True"),
        Case("writers", "output over an input", lambda f: ReconstructionWriter(f, "r", inputs=[text_file(f,
             "r.nii.gz")])(good), ValueError, r"refusing to write the output over the input file '.*r\.nii\.gz'"),
        Case("writers", "NaN result", lambda f: recon(f)(with_value(good, float("nan"))), ValueError,
             r"the result to be written to 'r\.nii\.gz' \(nothing was written\) must hold finite values, got 1 NaN and 0 "
             r"infinite of 64 entries"),
        Case("writers", "reference shape", lambda f: recon(f)(good, reference=volume(1, 1, 4, 4, 2)), ValueError,
             r"volume \(4, 4, 4\) and reference \(4, 4, 2\) must have the same shape"),
        Case("writers", "NaN affine", lambda f: recon(f)(good, affine=np.full((4, 4), np.nan)), ValueError,
             r"affine must be a finite, invertible 4x4 voxel-to-world matrix, got \[\[nan"),
        Case("writers", "singular affine", lambda f: as_affine(np.zeros((4, 4))), ValueError,
             r"affine must be a finite, invertible 4x4"),
        Case("writers", "generated 4D", lambda f: GeneratedVolumeWriter(f / "out")(volume(1, 4, 4, 4)), ValueError,
             r"volumes must be a \(B, C, D, H, W\) tensor, got \(1, 4, 4, 4\)"),
        Case("writers", "prefix with a slash", lambda f: ReconstructionWriter(f, "a/b"), ValueError,
             r"prefix must be a non-empty file-name prefix without '/', got 'a/b'"),
        Case("writers", "write_atomically existing", lambda f: write_atomically(text_file(f, "a.txt"),
             lambda p: p.write_text("new")), FileExistsError, r"'.*a\.txt' exists; pass overwrite=True"),
    ]


# ----------------------------------------------------------------------------------------------------- readers
def _reader_cases() -> list[Case]:
    from medgen.engines.samples import load_kspace_sample

    def npz(folder: Path, **arrays: Any) -> Path:
        np.savez(folder / "k.npz", **arrays)
        return prepared(folder / "k.npz")

    return [
        Case("readers", "k-space sample missing", lambda f: load_kspace_sample(f / "absent.npz"), FileNotFoundError,
             r"k-space sample '.*absent\.npz' not found"),
        Case("readers", "k-space sample empty path", lambda f: load_kspace_sample(""), ValueError,
             r"path of the k-space sample is empty; give the \.npz file"),
        Case("readers", "k-space sample text file", lambda f: load_kspace_sample(text_file(f, "k.npz", "hello")),
             ValueError, r"path '.*k\.npz' is not a NumPy \.npz archive \(it starts with b'hello'\)"),
        Case("readers", "k-space sample lacks key", lambda f: load_kspace_sample(npz(f, mask=np.ones(4)),
             keys=("kspace", "mask")), KeyError, r"'.*k\.npz' lacks \['kspace'\]; it holds \['mask'\]"),
        Case("readers", "k-space sample object array", lambda f: load_kspace_sample(npz(f, kspace=np.array([{}],
             dtype=object))), ValueError, r"path '.*k\.npz' holds an entry that is not a plain array \(object arrays "
             r"need pickles"),
    ]


# --------------------------------------------------------------------------------------------------------- cli
def _cli_cases() -> list[Case]:
    from medgen import cli

    def config(folder: Path) -> str:
        return str(text_file(folder, "config.json", json.dumps({"model": {}})))

    def weights(folder: Path) -> str:
        return str(saved(folder, "ckpt.pth", {"model": {}}))

    def index(folder: Path) -> str:
        return str(text_file(folder, "index.json", json.dumps({"format": "medgen-zoo-index/1", "bundles": []})))

    return [
        Case("cli", "convert kind", lambda f: cli.convert("score_sde_unet", weights(f), config(f), str(f / "o.pt")),
             SystemExit, r"^medgen convert: ValueError: kind must be one of \(.*'score_sde_ncsnpp'"),
        Case("cli", "convert missing checkpoint", lambda f: cli.convert("guided_unet", str(f / "absent.pth"),
             config(f), str(f / "o.pt")), SystemExit, r"FileNotFoundError: checkpoint '.*absent\.pth' is not a file"),
        Case("cli", "convert missing config", lambda f: cli.convert("guided_unet", weights(f), str(f / "absent.json"),
             str(f / "o.pt")), SystemExit, r"config must be a JSON file of official config fields, '.*absent\.json'"),
        Case("cli", "convert config not JSON", lambda f: cli.convert("guided_unet", weights(f), str(text_file(f,
             "c.json", "{")), str(f / "o.pt")), SystemExit, r"ValueError: config '.*c\.json' is not JSON"),
        Case("cli", "convert config not an object", lambda f: cli.convert("guided_unet", weights(f), str(text_file(f,
             "c.json", "[1]")), str(f / "o.pt")), SystemExit, r"config '.*c\.json' must hold a JSON object.*got list"),
        Case("cli", "convert output exists", lambda f: cli.convert("guided_unet", weights(f), config(f),
             str(text_file(f, "o.pt"))), SystemExit, r"FileExistsError: output '.*o\.pt' exists; pass --overwrite"),
        Case("cli", "convert output is the checkpoint", lambda f: cli.convert("guided_unet", weights(f), config(f),
             str(f / "ckpt.pth"), overwrite=True), SystemExit, r"output '.*ckpt\.pth' would overwrite an input file"),
        Case("cli", "convert output under a file", lambda f: cli.convert("guided_unet", weights(f), config(f),
             str(f / "ckpt.pth" / "o.pt")), SystemExit, r"the folder of output '.*ckpt\.pth' must be a folder"),
        Case("cli", "convert wrong config keys", lambda f: cli.convert("guided_unet", weights(f), config(f),
             str(f / "o.pt")), SystemExit, r"ValueError: config has keys that are not official UNetModel arguments"),
        Case("cli", "zoo list missing index", lambda f: cli.zoo_list(str(f / "absent")), SystemExit,
             r"^medgen zoo: FileNotFoundError: zoo index not found: '.*absent'"),
        Case("cli", "zoo list not an index", lambda f: cli.zoo_list(str(text_file(f, "index.json", "[]"))),
             SystemExit, r"index\.json' is not a medgen zoo index \(expected format 'medgen-zoo-index/1'\)"),
        Case("cli", "zoo pack weights", lambda f: cli.zoo_pack(str(f), weights="lfs", output_dir=str(f / "zoo")),
             SystemExit, r"weights must be 'include' or 'external', got 'lfs'"),
        Case("cli", "zoo pack not a bundle", lambda f: cli.zoo_pack(str(f), output_dir=str(f / "zoo")), SystemExit,
             r"metadata file not found: '.*configs/metadata\.json'"),
        Case("cli", "zoo download unknown bundle", lambda f: cli.zoo_download("nope", index(f),
             bundle_dir=str(f / "b")), SystemExit, r"LookupError: bundle 'nope' is not in the zoo"),
        Case("cli", "zoo index missing folder", lambda f: cli.zoo_index(str(f / "absent")), SystemExit,
             r"zoo_dir must be a folder of packed bundles, '.*absent' is not a folder"),
    ]


CASES = [*_operator_cases(), *_transform_cases(), *_network_cases(), *_inferer_cases(), *_writer_cases(),
         *_reader_cases(), *_cli_cases()]


def listing(folder: Path) -> dict[Path, int]:
    """Every file and folder under ``folder`` with its size (folders: -1)."""
    return {p: (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


def test_the_catalogue_covers_every_entry_point_with_sixty_cases():
    counts = Counter(case.entry for case in CASES)
    assert set(counts) == set(ENTRY_POINTS), counts
    assert len(CASES) >= 60 and min(counts.values()) >= 5, counts
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.entry}-{c.name}" for c in CASES])
def test_bad_input_is_refused_clearly_early_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written to a relative path lands in tmp_path too
    _PREPARED.clear()
    start = time.process_time()
    with pytest.raises(case.error) as raised:
        case.call(tmp_path)
    seconds = time.process_time() - start
    message = str(raised.value)
    if isinstance(raised.value, SystemExit):  # a refused command: exit status 1 and one line on stderr
        message = capsys.readouterr().err
        assert raised.value.code == 1 and message.count("\n") == 1, message
    assert re.search(case.match, message, flags=re.S), f"{type(raised.value).__name__}: {message}"
    assert listing(tmp_path) == _PREPARED, "the call wrote or changed files"
    assert seconds < 3.0, f"{seconds:.1f} s of CPU before the refusal"
