"""Tests for medgen.networks.edm_pickle: EDM-layout snapshots load; code-carrying or malicious pickles are refused."""

from __future__ import annotations

import collections
import io
import math
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from medgen.networks.checkpoint import read_checkpoint
from medgen.networks.convert import from_official
from medgen.networks.edm_pickle import (
    PersistedObject,
    RestrictedUnpickler,
    load_edm_snapshot,
    module_state_dict,
    read_edm_pickle,
)
from medgen.networks.songunet import PatchEDMPrecond
from tests.conftest import load_parity


class _Persisted:
    """Pickles like a ``torch_utils.persistence`` object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def _persist(module: torch.nn.Module, reconstruct, module_src: str, init_kwargs=None, class_name=None):
    """Mirror EDM's layout: persistent classes become records, torch containers stay plain torch objects."""
    state = dict(module.__dict__)
    state["_modules"] = collections.OrderedDict(
        (name, None if child is None else _persist(child, reconstruct, module_src))
        for name, child in module._modules.items()
    )
    state["skip_scale"] = np.sqrt(0.5)  # EDM blocks carry numpy float64 attributes
    if isinstance(module, torch.nn.ModuleDict):
        plain = torch.nn.ModuleDict.__new__(torch.nn.ModuleDict)
        plain.__dict__.update(state)
        return plain
    state["_init_args"], state["_init_kwargs"] = (), dict(init_kwargs or {})
    class_name = class_name or type(module).__name__
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
    return _Persisted(reconstruct, meta)


@pytest.fixture
def edm_persistence(monkeypatch):
    """A stand-in ``torch_utils.persistence`` module so pickle can name EDM's reconstruct function while writing."""
    package = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the official reconstruct function must never be called when reading")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = persistence
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)
    return _reconstruct_persistent_obj


def _write_snapshot(path, net, config, reconstruct, module_src, extra=None):
    data = dict(
        ema=_persist(net, reconstruct, module_src, init_kwargs=config, class_name="Patch_EDMPrecond"),
        loss_fn=_Persisted(reconstruct, dict(type="class", version=6, module_src=module_src, class_name="Patch_EDMLoss",
                                             state=dict(P_mean=-1.2, P_std=1.2, sigma_data=0.5))),  # fmt: skip
        augment_pipe=None,
        dataset_kwargs=dict(path="ct_images_dataset.mat", resolution=304),
    )
    data.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(data, f)


def test_snapshot_in_edm_layout_loads_and_runs_no_source(tmp_path, edm_persistence):
    d = load_parity("padis_songunet_tiny")
    net = from_official("padis_edm", d["state_dict"], d["config"])
    marker = tmp_path / "source_was_executed"
    module_src = f"open({str(marker)!r}, 'w').write('pwned')\nclass Patch_EDMPrecond: pass\n"
    path = tmp_path / "network-snapshot-000000.pkl"
    _write_snapshot(path, net, d["config"], edm_persistence, module_src)
    sys.modules.pop("torch_utils.persistence")  # reading must not need EDM's code at all
    sys.modules.pop("torch_utils")

    state = load_edm_snapshot(path)
    assert list(state) == list(d["state_dict"])
    for k, v in d["state_dict"].items():
        assert torch.equal(state[k], v), k
    tree = read_edm_pickle(path)
    assert isinstance(tree["ema"], PersistedObject) and tree["ema"].class_name == "Patch_EDMPrecond"
    assert tree["ema"].module_src == module_src and tree["ema"].version == 6
    assert tree["ema"].init_kwargs == d["config"]
    assert tree["loss_fn"].state["P_std"] == 1.2 and tree["dataset_kwargs"]["resolution"] == 304
    assert not marker.exists()

    with open(path, "rb") as f:  # file objects are accepted too
        assert list(load_edm_snapshot(f)) == list(d["state_dict"])
    for loaded in (
        from_official("padis_edm", path, d["config"]),
        from_official("padis_edm", read_checkpoint(path), d["config"]),  # read_checkpoint dispatches .pkl here
        from_official("padis_edm", path, tree["ema"].init_kwargs),  # the config recorded in the snapshot
    ):
        with torch.no_grad():
            out = loaded(d["x"], d["sigma"], d["x_pos"])
        assert (out - d["out"]).abs().max().item() <= 1e-5 * d["out"].abs().max().item()
    assert not marker.exists()


def test_training_state_and_bare_state_dict_files(tmp_path):
    d = load_parity("padis_songunet_tiny")
    torch.save({"net": d["state_dict"], "optimizer_state": {}}, tmp_path / "training-state-000100.pt")
    torch.save(d["state_dict"], tmp_path / "bare.pt")
    for name in ("training-state-000100.pt", "bare.pt"):
        net = from_official("padis_edm", tmp_path / name, d["config"])
        with torch.no_grad():
            out = net(d["x"], d["sigma"], d["x_pos"])
        assert (out - d["out"]).abs().max().item() <= 1e-5 * d["out"].abs().max().item()


def test_state_dict_walk_skips_none_and_non_persistent_buffers(edm_persistence):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 3)
            self.register_buffer("kept", torch.arange(3.0))
            self.register_buffer("scratch", torch.ones(1), persistent=False)
            self.register_buffer("absent", None)
            self.blocks = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1, bias=False)})
            self.empty = None

    tiny = Tiny()
    blob = pickle.dumps(_persist(tiny, edm_persistence, "src"))
    state = module_state_dict(RestrictedUnpickler(io.BytesIO(blob)).load())
    assert list(state) == list(tiny.state_dict()) == ["kept", "lin.weight", "lin.bias", "blocks.a.weight"]
    for k, v in tiny.state_dict().items():
        assert torch.equal(state[k], v)


def test_numpy_scalars_sets_and_old_protocols_are_accepted():
    payload = {"s": np.float64(math.sqrt(0.5)), "i": np.int64(3), "a": np.arange(4.0), "set": {1, 2},
               "t": torch.arange(3.0), "p": torch.nn.Parameter(torch.ones(2)), "size": torch.Size([2, 3])}  # fmt: skip
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out = RestrictedUnpickler(io.BytesIO(pickle.dumps(payload, protocol=protocol))).load()
        assert out["s"] == payload["s"] and out["i"] == 3 and out["set"] == {1, 2}
        assert np.array_equal(out["a"], payload["a"]) and out["size"] == torch.Size([2, 3])
        assert torch.equal(out["t"], payload["t"]) and isinstance(out["p"], torch.nn.Parameter)


def _evil(module: str, name: str, arg: str) -> bytes:
    """Protocol-0 pickle calling ``module.name(arg)``: the classic code-execution payload."""
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


@pytest.mark.parametrize(
    "module, name, make_arg",
    [
        ("os", "system", lambda m: f"touch {m}"),
        ("posix", "system", lambda m: f"touch {m}"),
        ("builtins", "eval", lambda m: f"open({str(m)!r}, 'w')"),
        ("builtins", "exec", lambda m: f"open({str(m)!r}, 'w')"),
        ("subprocess", "Popen", lambda m: f"touch {m}"),
        ("torch", "load", lambda m: str(m)),
    ],
)
def test_malicious_globals_are_refused_and_nothing_runs(tmp_path, module, name, make_arg):
    marker = tmp_path / "marker"
    path = tmp_path / "network-snapshot-evil.pkl"
    path.write_bytes(_evil(module, name, make_arg(marker)))
    with pytest.raises(pickle.UnpicklingError, match=rf"refused global '{module}\.{name}'"):
        load_edm_snapshot(path)
    assert not marker.exists()


def test_malicious_global_deep_inside_a_snapshot_is_refused(tmp_path, edm_persistence):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    d = load_parity("padis_songunet_tiny")
    net = from_official("padis_edm", d["state_dict"], d["config"])
    path = tmp_path / "network-snapshot-000001.pkl"
    _write_snapshot(path, net, d["config"], edm_persistence, "class Patch_EDMPrecond: pass\n", extra={"x": Payload()})
    with pytest.raises(pickle.UnpicklingError, match=r"refused global 'builtins\.eval'"):
        load_edm_snapshot(path)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        from_official("padis_edm", path, d["config"])
    assert not marker.exists()


def test_malicious_storage_payload_is_refused(tmp_path):
    marker = tmp_path / "marker"
    inner = _evil("os", "system", f"touch {marker}")
    outer = b"\x80\x04ctorch.storage\n_load_from_bytes\nC" + bytes([len(inner)]) + inner + b"\x85R."
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(outer)).load()
    assert not marker.exists()


def test_bad_inputs(tmp_path, edm_persistence):
    with pytest.raises(FileNotFoundError):
        load_edm_snapshot(tmp_path / "missing.pkl")
    with pytest.raises(TypeError, match="path_or_file"):
        load_edm_snapshot(123)
    path = tmp_path / "s.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ema": {"not": "a module"}, "loss_fn": None}, f)
    with pytest.raises(KeyError, match="entries"):
        load_edm_snapshot(path, key="net")
    with pytest.raises(ValueError, match="not a recorded torch module"):
        load_edm_snapshot(path)
    torch.save({"a": torch.ones(1)}, tmp_path / "zip.pkl")  # a torch.save archive misnamed .pkl is read safely
    assert torch.equal(read_edm_pickle(tmp_path / "zip.pkl")["a"], torch.ones(1))
    with pytest.raises(KeyError, match=r"entries: \['a'\]"):
        load_edm_snapshot(tmp_path / "zip.pkl")
    torch.save({"a": torch.ones(1)}, tmp_path / "legacy.pkl", _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError, match="legacy"):
        load_edm_snapshot(tmp_path / "legacy.pkl")
    with open(tmp_path / "legacy.pkl", "rb") as f:  # magic, protocol, sys info, then the object with storage ids
        for _ in range(3):
            RestrictedUnpickler(f).load()
        with pytest.raises(pickle.UnpicklingError, match="refused global 'torch.FloatStorage'"):
            RestrictedUnpickler(f).load()  # storage classes are only accepted inside a zip archive
    bad_meta = _Persisted(edm_persistence, dict(type="function", module_src="", class_name="f", state={}))
    with pytest.raises(pickle.UnpicklingError, match="'class'"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(bad_meta))).load()


def test_tiny_snapshot_of_a_fresh_network_round_trips(tmp_path, edm_persistence):
    config = dict(load_parity("padis_songunet_tiny")["config"], embedding_type="fourier", encoder_type="residual",
                  channel_mult_noise=2, resample_filter=[1, 3, 3, 1], augment_dim=9)  # fmt: skip
    torch.manual_seed(1)
    net = PatchEDMPrecond.from_config(config).eval()
    path = tmp_path / "network-snapshot-000002.pkl"
    _write_snapshot(path, net, config, edm_persistence, "pass\n")
    state = load_edm_snapshot(path)
    assert "model.map_noise.freqs" in state and "model.enc.8x8_aux_residual.resample_filter" in state
    assert list(state) == list(net.state_dict())
    loaded = from_official("padis_edm", path, config)
    x, pos = torch.randn(2, 1, 8, 8), torch.rand(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.4, pos), net(x, 0.4, pos))


def test_official_style_training_state_archive(tmp_path, edm_persistence):
    # training-state-*.pt = torch.save(dict(net=<persisted module>, optimizer_state=...)): a zip archive whose
    # data.pkl holds EDM persistence records and storage persistent ids; weights_only loading refuses it.
    d = load_parity("padis_songunet_tiny")
    net = from_official("padis_edm", d["state_dict"], d["config"])
    marker = tmp_path / "source_was_executed"
    module_src = f"open({str(marker)!r}, 'w')\n"
    path = tmp_path / "training-state-000100.pt"
    persisted = _persist(net, edm_persistence, module_src, init_kwargs=d["config"], class_name="Patch_EDMPrecond")
    torch.save({"net": persisted, "optimizer_state": {"state": {0: {"step": torch.tensor(3.0)}}}}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    state = load_edm_snapshot(path, key="net")
    assert list(state) == list(d["state_dict"])
    assert all(torch.equal(state[k], v) for k, v in d["state_dict"].items())
    loaded = from_official("padis_edm", path, d["config"])
    with torch.no_grad():
        out = loaded(d["x"], d["sigma"], d["x_pos"])
    assert (out - d["out"]).abs().max().item() <= 1e-5 * d["out"].abs().max().item()
    assert not marker.exists()


def test_malicious_torch_archive_is_refused(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    path = tmp_path / "training-state-evil.pt"
    torch.save({"net": {"w": torch.ones(2)}, "x": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"refused global 'builtins\.eval'"):
        read_edm_pickle(path)
    with pytest.raises(pickle.UnpicklingError):
        from_official("padis_edm", path, load_parity("padis_songunet_tiny")["config"])
    assert not marker.exists()


def _constant_copy(layout: torch.nn.Module) -> list[float]:
    """Give every state-dict entry of ``layout`` (built on the meta device) the constant ``i + 1`` (i = its index),
    as cheap expanded tensors, so each loaded entry shows where it came from. Returns the constants in order."""
    constants = []
    for i, (name, tensor) in enumerate(layout.state_dict(keep_vars=True).items()):
        owner_name, _, attribute = name.rpartition(".")
        owner = layout.get_submodule(owner_name)
        value = torch.full((1,), i + 1.0).expand(tensor.shape)
        if attribute in owner._parameters:
            owner._parameters[attribute] = torch.nn.Parameter(value, requires_grad=tensor.requires_grad)
        else:
            owner._buffers[attribute] = value
        constants.append(i + 1.0)
    return constants


def test_full_padis_snapshot_in_released_layout(tmp_path, edm_persistence):
    # the full PaDIS ddpmpp network (54.4M parameters) as network-snapshot-*.pkl: dict(ema=<persisted module>, ...)
    from tests.networks.test_songunet import PADIS_DDPMPP_304, PADIS_DDPMPP_304_PARAMS, PADIS_DDPMPP_304_TENSORS

    with torch.device("meta"):
        layout = PatchEDMPrecond.from_config(PADIS_DDPMPP_304)
    constants = _constant_copy(layout)
    path = tmp_path / "network-snapshot-004000.pkl"
    _write_snapshot(path, layout, PADIS_DDPMPP_304, edm_persistence, "class Patch_EDMPrecond: pass\n")
    assert path.stat().st_size < 2**20  # the expanded constants keep the synthetic file small

    net = from_official("padis_edm", path, PADIS_DDPMPP_304)
    state = net.state_dict()
    assert len(state) == PADIS_DDPMPP_304_TENSORS
    assert sum(p.numel() for p in net.parameters()) == PADIS_DDPMPP_304_PARAMS
    assert list(state) == list(layout.state_dict())
    for (name, value), constant in zip(state.items(), constants):
        assert value.is_contiguous() and torch.all(value == constant), name
