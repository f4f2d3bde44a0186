"""Nothing executes from a file (issue 12): every medgen loader of checkpoints, resume states, pickles and arrays
refuses code-carrying files, and a bundle config that holds code is not evaluated without the user's consent.

The payloads are real: each is a pickled object whose ``__reduce__`` calls ``os.system``, ``subprocess.Popen``,
``builtins.eval`` or a nested ``torch.load(..., weights_only=False)``, and each creates a marker file when loaded the
unsafe way (checked first, so a loader that refused nothing could not pass). Every loader must then refuse each
payload with an error naming the file, and the marker must never appear. Archive entries escaping their folder are
covered in ``tests/zoo/test_archive.py`` and ``tests/zoo/test_download.py``; ``large_files.yml`` paths here.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
import pickle
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import load_parity

PAYLOADS = ("os.system", "subprocess.Popen", "builtins.eval", "nested torch.load")


class Payload:
    """Pickles as a call of ``kind`` that creates ``marker`` when the pickle is loaded unsafely."""

    def __init__(self, kind: str, marker: Path, inner: Path | None = None) -> None:
        self.kind, self.marker, self.inner = kind, marker, inner

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.kind == "os.system":
            return os.system, (f"touch '{self.marker}'",)
        if self.kind == "subprocess.Popen":
            return subprocess.Popen, (["touch", str(self.marker)],)
        if self.kind == "builtins.eval":
            return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)
        if self.kind == "nested torch.load":  # a second file, read the unsafe way from inside the first
            return functools.partial(torch.load, weights_only=False), (str(self.inner),)
        raise ValueError(self.kind)


def payload(kind: str, folder: Path) -> Payload:
    marker = folder / "marker"
    inner = None
    if kind == "nested torch.load":
        inner = folder / "inner.pt"
        torch.save({"x": Payload("os.system", marker)}, inner)
    return Payload(kind, marker, inner)


def marker_appeared(folder: Path, kind: str) -> bool:
    """Whether the marker exists (after 0.3 s for ``Popen``: a process that was started may need a moment)."""
    for _ in range(30 if kind == "subprocess.Popen" else 1):
        if (folder / "marker").exists():
            return True
        time.sleep(0.01)
    return False


def torch_file(kind: str, folder: Path, name: str = "evil.pt") -> Path:
    """A ``torch.save`` file whose state dict carries the payload beside a real tensor."""
    torch.save({"weight": torch.ones(2), "extra": payload(kind, folder)}, folder / name)
    return folder / name


def pickle_file(kind: str, folder: Path, name: str = "network-snapshot-evil.pkl") -> Path:
    """A plain pickle (the EDM snapshot format) carrying the payload."""
    (folder / name).write_bytes(pickle.dumps({"ema": payload(kind, folder), "loss_fn": None}, protocol=4))
    return folder / name


def numpy_file(kind: str, folder: Path, name: str) -> Path:
    """A ``.npy`` or ``.npz`` file holding an object array with the payload."""
    array = np.empty(1, dtype=object)
    array[0] = payload(kind, folder)
    path = folder / name
    if name.endswith(".npz"):
        np.savez(path, kspace=array, mask=np.ones(4))
    else:
        np.save(path, array, allow_pickle=True)
    return path


UNSAFE_LOADS: dict[str, tuple[Callable[[str, Path], Path], Callable[[Path], Any]]] = {
    "torch.save": (torch_file, lambda p: torch.load(p, weights_only=False)),
    "pickle": (pickle_file, lambda p: pickle.loads(p.read_bytes())),
    "npy": (lambda k, f: numpy_file(k, f, "evil.npy"), lambda p: np.load(p, allow_pickle=True)),
}


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("fmt", list(UNSAFE_LOADS))
def test_the_payloads_run_when_loaded_the_unsafe_way(kind, fmt, tmp_path):
    make, unsafe_load = UNSAFE_LOADS[fmt]
    loaded = unsafe_load(make(kind, tmp_path))
    for value in (loaded.values() if isinstance(loaded, dict) else np.ravel(loaded)):
        if isinstance(value, subprocess.Popen):
            value.wait()
    assert marker_appeared(tmp_path, kind)


def _ncsnpp_config() -> dict[str, Any]:
    return load_parity("ncsnpp_tiny")["config"]


def _padis_config() -> dict[str, Any]:
    return load_parity("padis_songunet_tiny")["config"]


def _sampling_resume(path: Path) -> Any:
    from medgen.diffusion import SamplingLoop

    loop = SamplingLoop(2, progress=False, checkpoint_dir=path.parent, checkpoint_every=1)
    os.replace(path, loop.checkpoint_path)
    return loop.run({"x": torch.zeros(1)}, lambda i, state: state)


def _convert(path: Path) -> Any:
    from medgen.cli import convert

    config = path.parent.parent / "config.json"
    config.write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in _ncsnpp_config().items()}))
    return convert("score_sde_ncsnpp", str(path), str(config), str(path.parent / "converted.pt"))


def _read_checkpoint(path: Path) -> Any:
    from medgen.networks import read_checkpoint

    return read_checkpoint(path)


def _from_official(kind: str, config: Callable[[], dict[str, Any]]) -> Callable[[Path], Any]:
    def load(path: Path) -> Any:
        from medgen.networks import from_official

        return from_official(kind, path, config())

    return load


def _training_resume(path: Path) -> Any:
    from medgen.engines.training import load_checkpoint

    return load_checkpoint(path, key="resume_from")


def _kspace_sample(path: Path) -> Any:
    from medgen.engines.samples import load_kspace_sample

    return load_kspace_sample(path)


def _bundle_npz(path: Path) -> Any:
    from medgen.bundle import read_npz

    return read_npz("input_path", path)


def _bundle_image(path: Path) -> Any:
    from medgen.bundle import default_image_reader, read_file

    return read_file("input_path", path, default_image_reader())


REFUSED = r"refused|(object array|Python objects).*pickles.*never load"
# (loader, file maker, error types, regex the message must match besides the file name)
LOADERS: dict[str, tuple[Callable[[Path], Any], Callable[[str, Path], Path], tuple[type[BaseException], ...]]] = {
    "read_checkpoint .pt": (_read_checkpoint, torch_file, (pickle.UnpicklingError,)),
    "read_checkpoint .pkl": (_read_checkpoint, pickle_file, (pickle.UnpicklingError,)),
    "from_official score_sde_ncsnpp": (_from_official("score_sde_ncsnpp", _ncsnpp_config), torch_file,
                                       (pickle.UnpicklingError,)),
    "from_official padis_edm .pkl": (_from_official("padis_edm", _padis_config), pickle_file,
                                     (pickle.UnpicklingError,)),
    "from_official padis_edm .pt": (_from_official("padis_edm", _padis_config), torch_file,
                                    (pickle.UnpicklingError,)),
    "training resume_from": (_training_resume, torch_file, (pickle.UnpicklingError,)),
    "sampling resume state": (_sampling_resume, lambda k, f: torch_file(k, f, "state.pt"), (pickle.UnpicklingError,)),
    "medgen convert": (_convert, torch_file, (SystemExit,)),
    "k-space sample .npz": (_kspace_sample, lambda k, f: numpy_file(k, f, "evil.npz"), (ValueError,)),
    "bundle .npz input": (_bundle_npz, lambda k, f: numpy_file(k, f, "evil.npz"), (ValueError,)),
    "bundle image input .npy": (_bundle_image, lambda k, f: numpy_file(k, f, "evil.npy"), (ValueError,)),
}


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_refuses_code_carrying_files(loader, kind, tmp_path, capsys):
    load, make, errors = LOADERS[loader]
    folder = tmp_path / "files"
    folder.mkdir()
    path = make(kind, folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(errors) as raised:
        load(path)
    message = capsys.readouterr().err if isinstance(raised.value, SystemExit) else str(raised.value)
    if loader == "sampling resume state":
        path = folder / "sampling_state.pt"
    assert re.search(REFUSED, message, flags=re.S), message
    assert path.name in message, message
    assert not marker_appeared(folder, kind), f"{loader} ran the {kind} payload"
    assert not (folder / "converted.pt").exists()
    if loader != "sampling resume state":
        assert sorted(p.name for p in folder.iterdir()) == before


def test_weights_load_after_the_refusals(tmp_path):
    """The same loaders still read plain weights (the refusals are not a blanket failure)."""
    from medgen.engines.training import load_checkpoint
    from medgen.networks import read_checkpoint

    torch.save({"weight": torch.ones(2), "step": 3, "name": "x", "nested": {"a": [torch.zeros(1)]}}, tmp_path / "w.pt")
    assert torch.equal(read_checkpoint(tmp_path / "w.pt")["weight"], torch.ones(2))
    assert load_checkpoint(tmp_path / "w.pt", names=("weight",))["step"] == 3


# ------------------------------------------------------------------------------------------- zoo: consent, paths
def _plain_bundle(folder: Path, config: dict[str, Any]) -> Path:
    bundle = folder / "plain"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    return bundle


def test_config_code_lists_expressions_and_untrusted_targets(tmp_path):
    from medgen.zoo import config_code

    plain = _plain_bundle(tmp_path, {"steps": 3, "network_def": {"_target_": "medgen.networks.NCSNpp"},
                                     "loader": {"_target_": "DataLoader"}, "ref": "@steps"})
    assert config_code(plain) == []
    (plain / "configs" / "evil.yaml").write_text("run:\n  _target_: os.system\n  command: touch marker\n"
                                                 "x: \"$__import__('os').system('touch marker')\"\n")
    found = config_code(plain)
    assert found == ["configs/evil.yaml::run#_target_: os.system",
                     "configs/evil.yaml::x: $__import__('os').system('touch marker')"]
    assert not (tmp_path / "marker").exists() and not Path("marker").exists()


def test_zoo_verify_does_not_evaluate_a_bundle_holding_code_without_trust(tmp_path, monkeypatch, capsys):
    from medgen.cli import zoo_verify
    from medgen.zoo import verify_bundle
    from tests.zoo.conftest import copy_bundle

    bundle = copy_bundle("hfssde_mri", tmp_path)
    evaluated = []
    monkeypatch.setattr("medgen.zoo.checks.build_network", lambda *a, **k: evaluated.append(a))
    monkeypatch.setattr("medgen.zoo.checks._check_smoke", lambda *a, **k: evaluated.append(a))
    report = verify_bundle(bundle)
    assert not report.ok and evaluated == []
    assert [c.name for c in report.checks][-1] == "trust"
    assert re.search(r"configs/inference\.json::imports#0: \$import os.*--trust", report.checks[-1].detail)
    with pytest.raises(SystemExit, match="1"):
        zoo_verify(str(bundle), smoke=False, torchscript=False)
    assert "FAIL  trust" in capsys.readouterr().out and evaluated == []


@pytest.mark.parametrize("entry_path", ["../outside.pt", "/tmp/outside.pt", "models/../../outside.pt"])
def test_large_files_cannot_be_fetched_outside_the_bundle(tmp_path, entry_path):
    from medgen.zoo.download import _fetch_large_files

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "large_files.yml").write_text(
        f"large_files:\n  - path: \"{entry_path}\"\n    url: \"https://example.invalid/x.pt\"\n"
        f"    hash_val: \"{'0' * 64}\"\n    hash_type: \"sha256\"\n")
    with pytest.raises(ValueError, match="leaves the bundle folder|outside|path"):
        _fetch_large_files(bundle, None, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
