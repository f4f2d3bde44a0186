"""Killed runs continue with the same command (issue 12): real ``python -m monai.bundle run`` processes are SIGKILLed
between sampling steps, during a sampling-state write, during a training-checkpoint write and during the final write
of the outputs; the same command then finishes with outputs bit-identical to an uninterrupted run, and leaves no
partial output, staging folder or checkpoint behind. A restart with another input or other settings is refused,
naming the difference, and writes nothing (checked through ``monai.bundle.run`` in this process: the same code the
command line runs; the catalogue in ``test_bad_inputs`` checks what the command line prints).

Each run stops itself (SIGSTOP) at its kill point and the test SIGKILLs it there (:mod:`tests.bundles.killpoints`).
The uninterrupted references run in this process (same code, one thread)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run

from medgen.bundle.errors import bundle_input_error
from tests.bundles import killpoints

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def visible(folder: Path) -> list[str]:
    """The files a user sees in ``folder`` (hidden work folders left out)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def command_line(config: Path, bundle_root: Path, **settings) -> list[str]:
    """``run --config_file ... --bundle_root ... --key value ...`` for ``python -m monai.bundle``."""
    overrides = [str(v) for key, value in settings.items() for v in (f"--{key}", value)]
    return ["run", "--config_file", str(config), "--bundle_root", str(bundle_root), *overrides]


def refusal(config: Path, bundle_root: Path, **settings) -> str:
    """The message with which ``monai.bundle run`` (the function the command line calls) refuses ``settings``."""
    with pytest.raises(Exception) as raised:
        run(config_file=str(config), bundle_root=str(bundle_root), **{k: str(v) if isinstance(v, Path) else v
                                                                       for k, v in settings.items()})
    error = bundle_input_error(raised.value)
    assert error is not None, repr(raised.value)
    return str(error)


def same_outputs(a: Path, b: Path) -> None:
    """Bit-identical volumes and equal summaries (but for the run time) in two output folders."""
    assert visible(a) == visible(b)
    for name in visible(a):
        if name.endswith(".nii.gz"):
            assert np.array_equal(nib.load(a / name).get_fdata(), nib.load(b / name).get_fdata()), name
        elif name.endswith(".json"):
            left, right = (json.loads((folder / name).read_text()) for folder in (a, b))
            for content in (left, right):
                content.pop("seconds")
            assert left == right, name


def test_killed_hfssde_inference_continues_to_the_same_result(tmp_path: Path):
    bundle = BUNDLES / "hfssde_mri"
    settings = {"steps": 6, "seed": 2, "checkpoint_every": 2, "progress": False}
    run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
        output_dir=str(tmp_path / "reference"), checkpoint_dir=str(tmp_path / "reference_state"), **settings)
    out, checkpoints = tmp_path / "out", tmp_path / "state"
    arguments = command_line(bundle / "configs" / "inference.json", bundle, output_dir=out,
                             checkpoint_dir=checkpoints, **settings)
    log = tmp_path / "log.txt"

    # 1. killed between steps, right after the state of step 2 was saved
    killpoints.kill_when_stopped(killpoints.start("after_sampling_save", 1, arguments, log), log)
    assert everything(out) == [] and (checkpoints / "sampling_state.pt").is_file()
    # 2. the same command continues from step 2 and is killed while writing the state of step 6
    killpoints.kill_when_stopped(killpoints.start("sampling_write", 2, arguments, log), log)
    assert everything(out) == [] and any(p.name.startswith(".sampling_state.pt") for p in checkpoints.iterdir())
    # 3. another input is refused, the difference named, nothing written
    changed = tmp_path / "changed.npz"
    sample = dict(np.load(bundle / "sample" / "phantom_seed7_kspace.npz"))
    sample["kspace"] = sample["kspace"] * 2
    np.savez(changed, **sample)
    before = everything(out), everything(checkpoints)
    refused = refusal(bundle / "configs" / "inference.json", bundle, output_dir=out, checkpoint_dir=checkpoints,
                      input_path=changed, **settings)
    assert "holds an interrupted run with other settings: input_path" in refused and "changed.npz" in refused
    assert (everything(out), everything(checkpoints)) == before
    # 4. the same command again, killed while writing the outputs (one of three files staged): the output folder is
    # as it was before the run (the files are staged in the checkpoint folder)
    killpoints.kill_when_stopped(killpoints.start("output_write", 2, arguments, log), log)
    assert everything(out) == []
    # 5. the same command finishes: the uninterrupted result, nothing else left
    finished = killpoints.run(arguments, log)
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "continuing the interrupted run" in finished.stdout
    assert "3 file(s) written:" in finished.stdout and "zero_filled" in finished.stdout  # the closing summary
    same_outputs(out, tmp_path / "reference")
    assert everything(out) == visible(out) and not checkpoints.exists()  # no staging, state or temporary file


def test_killed_wdm_inference_continues_and_other_settings_are_refused(tmp_path: Path):
    bundle = BUNDLES / "wdm_brain_mri"
    settings = {"steps": 6, "seed": 1, "checkpoint_every": 1, "progress": False}
    run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
        output_dir=str(tmp_path / "reference"), checkpoint_dir=str(tmp_path / "reference_state"), **settings)
    out, checkpoints = tmp_path / "out", tmp_path / "state"
    config = bundle / "configs" / "inference.json"
    arguments = command_line(config, bundle, output_dir=out, checkpoint_dir=checkpoints, **settings)
    log = tmp_path / "log.txt"
    killpoints.kill_when_stopped(killpoints.start("sampling_write", 3, arguments, log), log)
    refused = refusal(config, bundle, output_dir=out, checkpoint_dir=checkpoints, **{**settings, "steps": 8})
    assert "steps 6 (this run: 8)" in refused and everything(out) == []
    finished = killpoints.run(arguments, log)
    assert finished.returncode == 0, finished.stdout[-3000:]
    same_outputs(out, tmp_path / "reference")
    assert everything(out) == visible(out) and not checkpoints.exists()


def test_killed_training_continues_to_the_same_weights(tmp_path: Path):
    settings = {"max_epochs": 2, "epoch_length": 3, "num_train_volumes": 4, "batch_size": 2, "log_every": 100,
                "checkpoint_every": 1}  # 2 batches per pass: epochs end inside passes (ignite's carried iterator)
    reference = tmp_path / "reference"
    shutil.copytree(BUNDLES / "wdm_brain_mri" / "configs", reference / "configs")
    run(config_file=str(reference / "configs" / "train.json"), bundle_root=str(reference), **settings)
    copy = tmp_path / "wdm_brain_mri"
    shutil.copytree(BUNDLES / "wdm_brain_mri" / "configs", copy / "configs")
    arguments = command_line(copy / "configs" / "train.json", copy, **settings)
    runs = copy / "runs" / "train"
    log = tmp_path / "log.txt"

    # killed while writing the checkpoint of iteration 3: only complete checkpoints keep their names
    killpoints.kill_when_stopped(killpoints.start("checkpoint_write", 3, arguments, log), log)
    assert sorted(p.name for p in runs.glob("checkpoint_*.pt")) == ["checkpoint_iteration=1.pt",
                                                                      "checkpoint_iteration=2.pt"]
    assert (runs / ".checkpoint_iteration=3.pt.partial").is_file() and not (copy / "models").exists()
    # the same command continues from iteration 2; killed again between iterations 4 and 5
    killpoints.kill_when_stopped(killpoints.start("after_checkpoint", 2, arguments, log), log)
    assert not (runs / ".checkpoint_iteration=3.pt.partial").exists()
    # other settings are refused
    refused = refusal(copy / "configs" / "train.json", copy, **settings, learning_rate=0.001)
    assert "learning_rate 0.0003 (this run: 0.001)" in refused
    finished = killpoints.run(arguments, log)
    assert finished.returncode == 0, finished.stdout[-3000:]
    weights = torch.load(copy / "models" / "model.pt", weights_only=True)
    expected = torch.load(reference / "models" / "model.pt", weights_only=True)
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
    assert not list(runs.glob(".*partial"))
    for checkpoint in runs.glob("checkpoint_*.pt"):  # every checkpoint left is complete
        assert set(torch.load(checkpoint, weights_only=True)) >= {"network", "optimizer", "trainer"}
