"""The bad-input catalogue of every bundle (issue 14): each case is refused by ``monai.bundle run`` before a network is
loaded or a step taken, with a message naming the key or file, and nothing is written.

The cases run in this process through ``monai.bundle.run`` (what ``python -m monai.bundle run`` calls, with the same
overrides), with weight loading and the sampling loop replaced by tripwires, so a case that got past the checks
would fail with "network loaded". One case per bundle also runs as a real ``python -m monai.bundle run`` process:
exit status 1, a one-line ``error: ...`` on stderr, nothing written. A full disk during the final write is simulated
by making the write raise ``ENOSPC``.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run

from medgen.bundle.errors import bundle_input_error
from tests.bundles.helpers import exception_chain, write_nifti

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@dataclass(frozen=True)
class Case:
    """One bad input: ``make(tmp_path)`` writes what the case needs and returns the overrides; ``match`` is a regex
    the error message must contain (for ``error`` other than a BundleInputError, the type that must be raised)."""

    name: str
    make: Callable[[Path], dict]
    match: str
    error: type[BaseException] | None = None
    variant: str | None = None
    setup: Callable[[pytest.MonkeyPatch], None] | None = field(default=None, compare=False)


def sample(bundle: str, name: str) -> Path:
    return BUNDLES / bundle / "sample" / name


def nifti_like(source: Path, target: Path, change: Callable[[np.ndarray], np.ndarray] = lambda a: a,
               affine: np.ndarray | None = None) -> str:
    image = nib.load(source)
    write_nifti(target, change(np.asarray(image.get_fdata(), dtype=np.float32)),
                image.affine if affine is None else affine)
    return str(target)


def truncated(source: Path, target: Path) -> str:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return str(target)


def empty(target: Path) -> str:
    target.write_bytes(b"")
    return str(target)


def with_nan(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[a.size // 2] = np.nan
    return a


def with_inf(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[3] = np.inf
    return a


def as_complex(a: np.ndarray) -> np.ndarray:
    return (a + 1j * a).astype(np.complex64)


def large_nifti(target: Path) -> str:
    """A 1024 x 1024 x 128 volume (zeros: 0.6 MB compressed; the check reads only its header)."""
    nib.save(nib.Nifti1Image(np.zeros((1024, 1024, 128), np.uint8), np.eye(4)), str(target))
    return str(target)


def output_is_a_file(tmp: Path) -> dict:
    (tmp / "out_file").write_text("a file where the output folder should be")
    return {"output_dir": str(tmp / "out_file")}


def read_only_output(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("medgen.bundle.resources.tempfile.NamedTemporaryFile", refuse)


def outputs_exist(prefix_files: list[str]) -> Callable[[Path], dict]:
    def make(tmp: Path) -> dict:
        (tmp / "out").mkdir()
        for name in prefix_files:
            (tmp / "out" / name).write_text("an earlier result")
        return {}

    return make


NAN_AFFINE = np.diag([np.nan, 1.0, 1.0, 1.0])
SINGULAR_AFFINE = np.diag([1.0, 1.0, 0.0, 1.0])

TPDM_IN, TPDM_REF = sample("tpdm_brain_mri", "brain_phantom_seed7_z4.nii.gz"), sample(
    "tpdm_brain_mri", "brain_phantom_seed7.nii.gz")
PADIS_IN, PADIS_REF = sample("padis_ct", "body_ct_seed7_z11_sino8.nii.gz"), sample("padis_ct",
                                                                                     "body_ct_seed7_z11.nii.gz")
SDM_IN = sample("sdm_ctca", "cta_labels_seed7.nii.gz")
CT_SINO, CT_REF = sample("tpdm_ct", "body_ct_seed7_sino8.nii.gz"), sample("tpdm_ct", "body_ct_seed7.nii.gz")
CWDM_CASE = sample("cwdm_brain_mri", "BraTS-GLI-00007-000")


def case_without(tmp: Path, contrast: str, change: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """A copy of the cWDM sample case without ``contrast``'s file (``None``: all files), the T1 changed by ``change``."""
    case = tmp / "case"
    case.mkdir()
    for path in sorted(CWDM_CASE.iterdir()):
        if contrast is not None and path.name.endswith(f"-{contrast}.nii.gz"):
            continue
        if change is not None and path.name.endswith("-t1n.nii.gz"):
            nifti_like(path, case / path.name, change)
        else:
            (case / path.name).write_bytes(path.read_bytes())
    return {"input_path": str(case)}


HFS_IN, HFS_REF = sample("hfssde_mri", "phantom_seed7_kspace.npz"), sample("hfssde_mri",
                                                                           "phantom_seed7_reference.npz")


def kspace_file(tmp: Path, change: Callable[[dict], None], name: str = "k.npz") -> dict:
    arrays = dict(np.load(HFS_IN))
    change(arrays)
    np.savez(tmp / name, **arrays)
    return {"input_path": str(tmp / name)}


def set_item(key: str, value: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], None]:
    def change(arrays: dict) -> None:
        arrays[key] = value(arrays[key])

    return change


def first_two_slices(arrays: dict) -> None:
    arrays["kspace"], arrays["sensitivity_maps"] = arrays["kspace"][:2], arrays["sensitivity_maps"][:2]


def text_file(target: Path, text: str) -> str:
    target.write_text(text)
    return str(target)


def nan_kspace(k: np.ndarray) -> np.ndarray:
    k = k.copy()
    k[0, 0, 5, 5] = np.nan
    return k


CASES: dict[str, list[Case]] = {
    "tpdm_brain_mri": [
        Case("unknown key", lambda t: {"stpes": 2}, r"unknown key 'stpes' \(--stpes 2\); did you mean 'steps'\?"),
        Case("missing input", lambda t: {"input_path": str(t / "nope.nii.gz")}, r"input_path '.*nope.nii.gz' does "
             r"not exist"),
        Case("empty input", lambda t: {"input_path": empty(t / "e.nii.gz")}, r"input_path '.*e.nii.gz' is empty"),
        Case("truncated input", lambda t: {"input_path": truncated(TPDM_IN, t / "t.nii.gz")},
             r"input_path '.*t.nii.gz' could not be read as an image .*truncated"),
        Case("one NaN voxel", lambda t: {"input_path": nifti_like(TPDM_IN, t / "n.nii.gz", with_nan)},
             r"input_path '.*n.nii.gz' holds 1 NaN value"),
        Case("one Inf voxel", lambda t: {"reference_path": nifti_like(TPDM_REF, t / "i.nii.gz", with_inf)},
             r"reference_path '.*i.nii.gz' holds 1 infinite value"),
        Case("complex image", lambda t: {"input_path": nifti_like(TPDM_IN, t / "c.nii.gz", as_complex)},
             r"input_path '.*c.nii.gz' holds complex data .*drop the imaginary part"),
        Case("NaN affine", lambda t: {"input_path": nifti_like(TPDM_IN, t / "a.nii.gz", affine=NAN_AFFINE)},
             r"input_path '.*a.nii.gz': its sform .* holds NaN"),
        Case("zero affine", lambda t: {"input_path": nifti_like(TPDM_IN, t / "z.nii.gz", affine=SINGULAR_AFFINE)},
             r"input_path '.*z.nii.gz': its sform .* is singular"),
        Case("reference of another shape", lambda t: {"factor": 2},
             r"reference_path '.*brain_phantom_seed7.nii.gz' has shape \(1, 32, 32, 32\), but this run's output "
             r"will have shape \(1, 32, 32, 16\)"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file, not a folder"),
        Case("read-only output_dir", lambda t: {}, r"output_dir '.*out' is not writable \(.*Permission denied",
             setup=read_only_output),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.01},
             r"needs an estimated .* of memory .*lower batch_size, or pass --max_memory_gb"),
        Case("1024 x 1024 x 128 input", lambda t: {"input_path": large_nifti(t / "large.nii.gz"),
                                                   "reference_path": "", "max_memory_gb": 64},
             r"needs an estimated 237.0 GB of memory at its peak \(volume states \(6 copies\) 12.0 GB \+ score "
             r"network .* 225.0 GB\), more than the limit max_memory_gb=64"),
        Case("missing weights", lambda t: {"primary_checkpoint": str(t / "p.pt")},
             r"primary_checkpoint '.*p.pt' does not exist .*medgen convert"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be an integer >= 1, got 0 \(set with --steps\)"),
        Case("outputs exist", outputs_exist(["tpdm_zsr_seed0.png"]), "outputs exist: .*tpdm_zsr_seed0.png",
             error=FileExistsError),
        Case("official config before medgen convert", lambda t: {},
             r"primary_checkpoint '.*bmr_zsr_256_yz.pt' does not exist .*`medgen convert`",
             variant="inference_official_256.json"),
        Case("official config without input", lambda t: {"primary_checkpoint": str(TPDM_IN),
                                                         "auxiliary_checkpoint": str(TPDM_IN)},
             r"input_path is not set; give the file with --input_path", variant="inference_official_256.json"),
    ],
    "hfssde_mri": [
        Case("unknown key", lambda t: {"stepz": 2}, r"unknown key 'stepz' \(--stepz 2\); did you mean 'steps'\?"),
        Case("missing input", lambda t: {"input_path": str(t / "nope.npz")}, r"input_path '.*nope.npz' does not "
             r"exist"),
        Case("text file named .npz", lambda t: {"input_path": text_file(t / "x.npz", "kspace = 1, 2, 3")},
             r"input_path '.*x.npz' is not a NumPy .npz archive \(it starts with b'kspace = 1, 2, 3'\)"),
        Case("truncated archive", lambda t: {"input_path": truncated(HFS_IN, t / "t.npz")},
             r"input_path '.*t.npz' is a truncated or damaged .npz archive \(\d+ bytes; its zip directory is "
             r"missing\)"),
        Case("NaN in k-space", lambda t: kspace_file(t, set_item("kspace", nan_kspace)),
             r"input_path\['kspace'\] '.*k.npz' holds 1 NaN value\(s\) among its .* k-space samples"),
        Case("all-zero coil maps", lambda t: kspace_file(t, set_item("sensitivity_maps", np.zeros_like)),
             r"input_path\['sensitivity_maps'\] '.*k.npz': the coil sensitivities are all zero"),
        Case("coil maps of another shape", lambda t: kspace_file(t, set_item("sensitivity_maps",
                                                                              lambda m: m[:, :4])),
             r"sensitivity_maps \(3, 4, 64, 64\) must have the shape of kspace \(3, 8, 64, 64\)"),
        Case("coil maps missing", lambda t: kspace_file(t, lambda a: a.pop("sensitivity_maps")),
             r"input_path '.*k.npz' lacks the array\(s\) \['sensitivity_maps'\]"),
        Case("NaN affine", lambda t: kspace_file(t, set_item("affine", lambda a: a * np.nan)),
             r"input_path\['affine'\] '.*k.npz': the affine .* holds NaN"),
        Case("reference of another shape", lambda t: kspace_file(t, first_two_slices),
             r"reference_path '.*phantom_seed7_reference.npz' has shape \(3, 1, 64, 64\), but this run's output "
             r"will have shape \(2, 1, 64, 64\)"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file, not a folder"),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.001}, r"needs an estimated .* of memory"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be an integer >= 1, got 0 \(set with --steps\)"),
    ],
    "padis_ct": [
        Case("unknown key", lambda t: {"sigma_mx": 1.0}, r"unknown key 'sigma_mx' .*did you mean 'sigma_max'\?"),
        Case("missing input", lambda t: {"input_path": str(t / "nope.nii.gz")}, r"input_path '.*nope.nii.gz' does "
             r"not exist"),
        Case("empty input", lambda t: {"input_path": empty(t / "e.nii.gz")}, r"is empty \(0 bytes\)"),
        Case("truncated input", lambda t: {"input_path": truncated(PADIS_IN, t / "t.nii.gz")},
             r"input_path '.*t.nii.gz' could not be read as an image"),
        Case("one NaN value", lambda t: {"input_path": nifti_like(PADIS_IN, t / "n.nii.gz", with_nan)},
             r"input_path '.*n.nii.gz' holds 1 NaN value"),
        Case("complex sinogram", lambda t: {"input_path": nifti_like(PADIS_IN, t / "c.nii.gz", as_complex)},
             r"holds complex data"),
        Case("sinogram of other views", lambda t: {"views": 20, "input_path": str(PADIS_IN)},
             r"input_path '.*sino8.nii.gz' has shape \(1, 128, 8, 1\); this task takes \(1, 128, 20, any\)"),
        Case("reference of another shape", lambda t: {"reference_path": nifti_like(
             PADIS_REF, t / "r.nii.gz", lambda a: a[:32, :32])},
             r"reference_path '.*r.nii.gz' has shape \(1, 32, 32, 1\), but this run's output will have shape "
             r"\(1, 64, 64, 1\)"),
        Case("zero affine", lambda t: {"reference_path": nifti_like(PADIS_REF, t / "z.nii.gz",
                                                                    affine=SINGULAR_AFFINE)}, r"is singular"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file"),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.01}, r"needs an estimated"),
        Case("unknown solver", lambda t: {"solver": "adam"}, r"solver must be one of .* got 'adam' \(set with "
             r"--solver\)"),
        Case("deblur input of another size", lambda t: {"input_path": str(PADIS_IN)},
             r"has shape \(1, 128, 8, 1\); this task takes \(1, 64, 64, any\)", variant="inference_deblur.json"),
    ],
    "wdm_brain_mri": [
        Case("unknown key", lambda t: {"num_sample": 2}, r"unknown key 'num_sample' .*did you mean 'num_samples'\?"),
        Case("nested unknown key", lambda t: {"writer#info#stepz": 1}, r"unknown key 'writer#info#stepz'"),
        Case("missing weights", lambda t: {"checkpoint": str(t / "nope.pt")}, r"checkpoint '.*nope.pt' does not "
             r"exist"),
        Case("empty weights", lambda t: {"checkpoint": empty(t / "e.pt")}, r"checkpoint '.*e.pt' is empty"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file"),
        Case("read-only output_dir", lambda t: {}, r"is not writable", setup=read_only_output),
        Case("1024 x 1024 x 128 volume", lambda t: {"image_size": [1024, 1024, 128], "max_memory_gb": 16},
             r"needs an estimated .* of memory .*lower num_samples, or pass --max_memory_gb"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be in \[1, 1000\], got 0 \(set with --steps\)"),
        Case("unknown sampler", lambda t: {"sampler": "euler"}, r"sampler must be one of .* \(set with --sampler\)"),
        Case("negative eta", lambda t: {"eta": -1.0}, r"eta must be a number >= 0, got -1.0 \(set with --eta\)"),
        Case("no samples", lambda t: {"num_samples": 0}, r"num_samples must be an integer >= 1, got 0"),
        Case("outputs exist", outputs_exist(["wdm_seed0_stats.json"]), "outputs exist", error=FileExistsError),
    ],
    "tpdm_ct": [
        Case("unknown key", lambda t: {"view": 4}, r"unknown key 'view' .*did you mean 'views'\?"),
        Case("missing input", lambda t: {"input_path": str(t / "nope.nii.gz")}, r"input_path '.*nope.nii.gz' does "
             r"not exist"),
        Case("truncated sinogram", lambda t: {"input_path": truncated(CT_SINO, t / "t.nii.gz")},
             r"input_path '.*t.nii.gz' could not be read as an image"),
        Case("one NaN value", lambda t: {"input_path": nifti_like(CT_SINO, t / "n.nii.gz", with_nan)},
             r"input_path '.*n.nii.gz' holds 1 NaN value"),
        Case("sinogram of other views", lambda t: {"input_path": str(CT_SINO), "views": 4},
             r"input_path '.*sino8.nii.gz' has shape \(1, 68, 8, 48\); this task takes \(1, 68, 4, any\)"),
        Case("reference of another shape", lambda t: {"reference_path": nifti_like(CT_REF, t / "r.nii.gz",
                                                                                   lambda a: a[:32])},
             r"reference_path '.*r.nii.gz' has shape \(1, 32, 48, 48\), but this run's output will have shape "
             r"\(1, 48, 48, 48\)"),
        Case("empty DICOM folder", lambda t: (t / "dicom").mkdir() or {"reference_path": str(t / "dicom")},
             r"reference_path '.*dicom' is an empty folder"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file"),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.01}, r"needs an estimated .*lower "
             r"batch_size"),
        Case("missing weights", lambda t: {"auxiliary_checkpoint": str(t / "a.pt")},
             r"auxiliary_checkpoint '.*a.pt' does not exist"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be an integer >= 1, got 0 \(set with --steps\)"),
    ],
    "cwdm_brain_mri": [
        Case("unknown key", lambda t: {"targett": "t2"}, r"unknown key 'targett' .*did you mean 'target'\?"),
        Case("missing case folder", lambda t: {"input_path": str(t / "nope")}, r"input_path '.*nope' does not "
             r"exist"),
        Case("case without a condition", lambda t: case_without(t, "t2f"),
             r"input_path '.*case' could not be read as an image \(a folder\): FileNotFoundError: BraTS case "
             r"'.*case' lacks \['flair'\]"),
        Case("a file, not a case folder", lambda t: {"input_path": str(CWDM_CASE / "BraTS-GLI-00007-000-t1n.nii.gz")},
             r"input_path '.*t1n.nii.gz' has shape \(1, 32, 32, 32\); this task takes \(3, any, any, any\)"),
        Case("NaN in a condition", lambda t: case_without(t, None, with_nan), r"input_path '.*case' holds 1 NaN"),
        Case("reference of another shape", lambda t: {"reference_path": nifti_like(
             CWDM_CASE / "BraTS-GLI-00007-000-t2w.nii.gz", t / "r.nii.gz", lambda a: a[:16])},
             r"reference_path '.*r.nii.gz' has shape \(1, 16, 32, 32\), but this run's output will have shape "
             r"\(1, 32, 32, 32\)"),
        Case("output_dir is a file", output_is_a_file, r"output_dir '.*out_file' is a file"),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.001}, r"needs an estimated"),
        Case("weights of another target", lambda t: {"target": "flair"}, r"checkpoint '.*model_flair.pt' does not "
             r"exist"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be in \[1, 1000\], got 0 \(set with --steps\)"),
        Case("outputs exist", outputs_exist(["cwdm_t2_seed0.nii.gz"]), "outputs exist", error=FileExistsError),
    ],
    "sdm_ctca": [
        Case("unknown key", lambda t: {"guidance": 2.0}, r"unknown key 'guidance' .*did you mean 'guidance_scale'\?"),
        Case("missing input", lambda t: {"input_path": str(t / "nope.nii.gz")}, r"does not exist"),
        Case("empty input", lambda t: {"input_path": empty(t / "e.nii.gz")}, r"is empty"),
        Case("truncated input", lambda t: {"input_path": truncated(SDM_IN, t / "t.nii.gz")},
             r"could not be read as an image"),
        Case("NaN label", lambda t: {"input_path": nifti_like(SDM_IN, t / "n.nii.gz", with_nan)},
             r"holds 1 NaN value\(s\) among its 32768 labels"),
        Case("label beyond the classes", lambda t: {"input_path": nifti_like(SDM_IN, t / "l.nii.gz",
                                                                              lambda a: a + 12)},
             r"holds label 20; the network knows 9 classes \(0 .. 8\)"),
        Case("fractional label", lambda t: {"input_path": nifti_like(SDM_IN, t / "f.nii.gz", lambda a: a + 0.5)},
             r"must hold non-negative integer labels, got 0.5"),
        Case("negative label", lambda t: {"input_path": nifti_like(SDM_IN, t / "m.nii.gz", lambda a: a - 1)},
             r"must hold non-negative integer labels, got -1.0"),
        Case("complex labels", lambda t: {"input_path": nifti_like(SDM_IN, t / "c.nii.gz", as_complex)},
             r"holds complex data"),
        Case("zero affine", lambda t: {"input_path": nifti_like(SDM_IN, t / "z.nii.gz", affine=SINGULAR_AFFINE)},
             r"is singular"),
        Case("output_dir is a file", output_is_a_file, r"is a file"),
        Case("more memory than available", lambda t: {"max_memory_gb": 0.01}, r"needs an estimated"),
        Case("zero steps", lambda t: {"steps": 0}, r"steps must be in \[1, 1000\], got 0 \(set with --steps\)"),
    ],
}


PARAMETERS = [pytest.param(bundle, case, id=f"{bundle}-{case.name.replace(' ', '_')}")
              for bundle, cases in CASES.items() for case in cases]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def tripwires(monkeypatch):
    """Weight loading and the sampling loop fail the test: a bad input must be refused before either."""

    def loaded(*args, **kwargs):
        raise AssertionError("a network was loaded before the bad input was refused")

    monkeypatch.setattr("medgen.networks.checkpoint.read_checkpoint", loaded)
    monkeypatch.setattr("medgen.diffusion.loop.SamplingLoop.run", loaded)


def test_every_bundle_has_ten_cases_covering_the_categories():
    for bundle, cases in CASES.items():
        assert len(cases) >= 10, bundle
        names = " ".join(case.name for case in cases)
        assert "unknown key" in names and "output_dir is a file" in names and "memory" in names or "1024" in names


@pytest.mark.parametrize("bundle, case", PARAMETERS)
def test_bad_input_is_refused_before_loading_and_writes_nothing(bundle, case, tmp_path, monkeypatch, tripwires):
    if case.setup is not None:
        case.setup(monkeypatch)
    configs = BUNDLES / bundle / "configs"
    config = str(configs / "inference.json") if case.variant is None else [str(configs / "inference.json"),
                                                                           str(configs / case.variant)]
    overrides = {"output_dir": str(tmp_path / "out"), "checkpoint_dir": str(tmp_path / "state"), "progress": False,
                 **case.make(tmp_path)}
    before = listing(tmp_path)
    with pytest.raises(BaseException) as raised:
        run(config_file=config, bundle_root=str(BUNDLES / bundle), **overrides)
    if case.error is None:
        error = bundle_input_error(raised.value)
        assert error is not None, "".join(f"\n{type(e).__name__}: {e}" for e in exception_chain(raised.value))
    else:
        error = next(e for e in exception_chain(raised.value) if isinstance(e, case.error))
    assert re.search(case.match, str(error)), str(error)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("bundle, overrides, message", [
    ("tpdm_brain_mri", {"stpes": "2"}, "error: unknown key 'stpes' (--stpes 2); did you mean 'steps'?"),
    ("hfssde_mri", {"input_path": "{tmp}/notes.npz"}, "is not a NumPy .npz archive"),
    ("padis_ct", {"input_path": "{tmp}/missing.nii.gz"}, "missing.nii.gz' does not exist"),
    ("wdm_brain_mri", {"image_size": "[1024,1024,128]", "max_memory_gb": "16"}, "needs an estimated"),
    ("sdm_ctca", {"steps": "0"}, "error: steps must be in [1, 1000], got 0 (set with --steps)."),
])
def test_the_command_line_prints_one_line_and_writes_nothing(bundle, overrides, message, tmp_path):
    (tmp_path / "notes.npz").write_text("not an archive")
    before = listing(tmp_path)
    arguments = [a for key, value in overrides.items() for a in (f"--{key}", value.format(tmp=tmp_path))]
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLES / bundle / "configs" /
                                                                             "inference.json"),
         "--bundle_root", str(BUNDLES / bundle), "--output_dir", str(tmp_path / "out"), *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert listing(tmp_path) == before


@pytest.mark.parametrize("bundle", ["hfssde_mri", "wdm_brain_mri"])
def test_a_full_disk_during_the_final_write_leaves_the_output_folder_as_it_was(bundle, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("a file of the user")

    def full_disk(figure, file, *args, **kwargs):  # the preview hits a full disk, as PIL reports it
        Path(file).write_bytes(b"\x89PNG partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AttributeError("'_idat' object has no attribute 'fileno'")

    from matplotlib.figure import Figure

    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(Exception) as raised:
        run(config_file=str(BUNDLES / bundle / "configs" / "inference.json"), bundle_root=str(BUNDLES / bundle),
            output_dir=str(out), checkpoint_dir=str(tmp_path / "state"), steps=2, progress=False)
    error = next(e for e in exception_chain(raised.value) if isinstance(e, OSError))
    assert error.errno == errno.ENOSPC and "No space left on device" in str(error)
    assert error.filename.endswith(".png") and Path(error.filename).parent == out
    assert listing(out) == ["earlier.txt"]  # staged in the checkpoint folder: the output folder was never touched
    monkeypatch.setattr(Figure, "savefig", original)  # space freed: the same command finishes
    run(config_file=str(BUNDLES / bundle / "configs" / "inference.json"), bundle_root=str(BUNDLES / bundle),
        output_dir=str(out), checkpoint_dir=str(tmp_path / "state"), steps=2, progress=False)
    assert len(listing(out)) == 4 and not (tmp_path / "state").exists()


@pytest.mark.parametrize("config, overrides, match", [
    ("wdm_brain_mri/configs/train.json", {"max_epoch": 2}, r"unknown key 'max_epoch' .*did you mean 'max_epochs'\?"),
    ("tpdm_brain_mri/configs/train.json", {"resume_from": "{tmp}/nothing.pt"}, r"resume_from '.*nothing.pt' does "
                                                                              r"not exist"),
])
def test_training_configs_check_what_they_are_given(config, overrides, match, tmp_path, tripwires):
    """An unknown key is refused by the training config's edge check; a missing checkpoint to resume from when the
    trainer starts, before the first iteration."""
    overrides = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in overrides.items()}
    with pytest.raises(BaseException) as raised:
        run(config_file=str(BUNDLES / config), bundle_root=str(tmp_path / "bundle"), max_epochs=1, epoch_length=1,
            num_train_volumes=2, batch_size=2, **overrides)
    error = next(e for e in exception_chain(raised.value) if isinstance(e, (ValueError, FileNotFoundError)))
    assert re.search(match, str(error)), str(error)
    assert not (tmp_path / "bundle" / "models").exists()
