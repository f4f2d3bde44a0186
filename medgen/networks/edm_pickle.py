"""Reading EDM / PaDIS ``network-snapshot-*.pkl`` files without running any code from them.

EDM (NVlabs/edm, and PaDIS which is built on it) saves snapshots with plain ``pickle.dump(dict(ema=net, loss_fn=...,
augment_pipe=..., dataset_kwargs=...))``. Every class decorated with ``torch_utils.persistence.persistent_class``
pickles as a call ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = dict(type='class', version=6, module_src=<source of the whole Python module>, class_name=..., state=...)``
(newer EDM2 versions add ``module_name``); unpickling it normally ``exec``\\ s ``module_src``. ``state`` is the object's
``__dict__``: for a ``torch.nn.Module`` it holds ``_parameters``, ``_buffers``, ``_non_persistent_buffers_set`` and
``_modules`` (children, themselves persisted records, or plain ``torch.nn.ModuleDict`` objects pickled by class name).
Tensors are pickled by plain pickle through ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
(parameters wrapped in ``torch._utils._rebuild_parameter``), and each storage through
``torch.storage._load_from_bytes(bytes)``, whose bytes are a legacy ``torch.save`` of that storage.

:class:`RestrictedUnpickler` resolves only an explicit allow-list of globals and replaces the dangerous ones by inert
stand-ins: persisted objects become :class:`PersistedObject` records (the source is kept as a string, never executed),
plain torch containers / ``dnnlib.util.EasyDict`` become :class:`PlainObject` records, storages are read with
``torch.load(..., weights_only=True)``. Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...)
raises :class:`pickle.UnpicklingError` naming it, before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = [
    "PersistedObject",
    "PlainObject",
    "RestrictedUnpickler",
    "read_edm_pickle",
    "load_edm_snapshot",
    "module_state_dict",
]


@dataclass
class PersistedObject:
    """What ``torch_utils.persistence`` recorded for one persistent object (its source is NOT executed).

    Attributes:
        class_name: name of the class in the recorded module, e.g. ``'Patch_EDMPrecond'``.
        module_src: source code of the module that defined the class (kept as text only).
        state: the object's recorded ``__dict__`` (for modules: ``_parameters``, ``_buffers``, ``_modules``, ...).
        version: ``torch_utils.persistence`` format version (6 for EDM/PaDIS).
        module_name: original module name when recorded (EDM2), else None.
    """

    class_name: str
    module_src: str
    state: dict[str, Any]
    version: int | None = None
    module_name: str | None = None

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the object was constructed with (EDM records them), or ``{}``."""
        kwargs = self.state.get("_init_kwargs")
        return dict(kwargs) if isinstance(kwargs, Mapping) else {}

    def __repr__(self) -> str:
        keys = sorted(self.state)
        return f"PersistedObject(class_name={self.class_name!r}, version={self.version}, state_keys={keys})"


class PlainObject(dict):
    """Inert stand-in for an allowed plain class (``torch.nn.ModuleDict``, ``dnnlib.util.EasyDict``, ...).

    Never instantiates the real class. Dictionary items set by the pickle are kept as ``dict`` items, the ``BUILD``
    state in :attr:`state`, constructor arguments in :attr:`args`.
    """

    qualified_name = "<plain object>"

    def __new__(cls, *args: Any, **kwargs: Any) -> PlainObject:
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self):  # a record is data, not something to pickle back as the original class
        raise pickle.PicklingError(f"{self.qualified_name} stand-in records cannot be pickled.")

    def __repr__(self) -> str:
        return f"PlainObject({self.qualified_name})"


# Plain (non-persistent) classes that legitimately appear inside EDM/PaDIS snapshots; they are recorded, never built.
_PLAIN_CLASSES = {
    ("torch.nn.modules.container", "ModuleDict"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.activation", "SiLU"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.activation", "GELU"),
    ("torch.nn.modules.linear", "Identity"),
    ("dnnlib.util", "EasyDict"),
}
_PLAIN_STANDINS: dict[tuple[str, str], type[PlainObject]] = {
    key: type(key[1], (PlainObject,), {"qualified_name": ".".join(key)}) for key in _PLAIN_CLASSES
}


def _reconstruct_persistent_obj(meta: Any) -> PersistedObject:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, does not ``exec``."""
    if not isinstance(meta, Mapping):
        raise pickle.UnpicklingError(f"persisted-object record must be a dict, got {type(meta).__name__}.")
    missing = {"type", "module_src", "class_name", "state"} - set(meta)
    if missing:
        raise pickle.UnpicklingError(f"persisted-object record lacks {sorted(missing)}.")
    if meta["type"] != "class":
        raise pickle.UnpicklingError(f"persisted-object record type must be 'class', got {meta['type']!r}.")
    state = meta["state"]
    if state is None:
        state = {}
    if not isinstance(state, Mapping):
        raise pickle.UnpicklingError(f"persisted-object state must be a dict, got {type(state).__name__}.")
    return PersistedObject(
        class_name=str(meta["class_name"]),
        module_src=str(meta["module_src"]),
        state=dict(state),
        version=meta.get("version"),
        module_name=meta.get("module_name"),
    )


def _load_storage_from_bytes(data: Any) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the payload is read with ``weights_only=True``."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"storage payload must be bytes, got {type(data).__name__}.")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"storage payload holds a {type(storage).__name__}, expected a torch storage.")
    return storage


def _no_hooks(hooks: Any) -> None:
    if hooks:
        raise pickle.UnpicklingError("tensors with backward hooks are not accepted in a snapshot.")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool,
    backward_hooks: Any,
    metadata: Any = None,
) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"tensor storage must be a torch storage, got {type(storage).__name__}.")
    _no_hooks(backward_hooks)
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, size, stride, requires_grad, collections.OrderedDict(), metadata
    )


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any, state: Any = None) -> torch.nn.Parameter:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"parameter data must be a tensor, got {type(data).__name__}.")
    _no_hooks(backward_hooks)
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _numpy_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"numpy dtype spec must be a string, got {type(spec).__name__}.")
    return np.dtype(spec, align, copy)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("only numeric numpy scalars (a dtype and raw bytes) are accepted.")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy.ndarray arrays are accepted.")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    if not isinstance(buffer, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("numpy arrays must be rebuilt from raw bytes and a numpy dtype.")
    if dtype.hasobject or order not in ("C", "F"):
        raise pickle.UnpicklingError("only numeric numpy arrays in C or Fortran order are accepted.")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, PlainObject)) or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor is only accepted for allowed plain classes.")
    return cls.__new__(cls)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only accepted as protocol-2 bytes (str, 'latin1').")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
}


_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a torch storage class named in a ``torch.save`` persistent id: only its dtype is kept."""

    dtype: torch.dtype


_STORAGE_TYPES: dict[tuple[str, str], _StorageType] = {
    ("torch", f"{name}Storage"): _StorageType(dtype)
    for name, dtype in (
        ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16), ("BFloat16", torch.bfloat16),
        ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16), ("Char", torch.int8),
        ("Byte", torch.uint8), ("Bool", torch.bool), ("ComplexFloat", torch.complex64),
        ("ComplexDouble", torch.complex128),
    )
}  # fmt: skip
_STORAGE_TYPES[("torch", "UntypedStorage")] = _StorageType(torch.uint8)
_STORAGE_TYPES[("torch.storage", "UntypedStorage")] = _StorageType(torch.uint8)


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves only an explicit allow-list of globals (see the module docstring).

    Args:
        file: binary file object holding the pickle.
        storage_reader: for the ``data.pkl`` of a ``torch.save`` zip archive: a function returning the raw bytes of
            storage ``key``; None for plain pickles (persistent ids are then refused).

    Raises:
        pickle.UnpicklingError: for any other global, naming it; nothing from the file has been called by then.
    """

    def __init__(self, file: IO[bytes], storage_reader: Callable[[str], bytes] | None = None) -> None:
        super().__init__(file)
        self._storage_reader = storage_reader
        self._storages: dict[str, torch.TypedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` from the allow-list (or an inert stand-in); refuse anything else."""
        module = _PYTHON2_MODULES.get(module, module)  # protocols 0-2 write Python 2 module names
        key = (module, name)
        if key in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[key]
        if key in _PLAIN_STANDINS:
            return _PLAIN_STANDINS[key]
        if key in _STORAGE_TYPES and self._storage_reader is not None:
            return _STORAGE_TYPES[key]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"refused global '{module}.{name}': EDM snapshots are read without running code from the file; only "
            "tensors, storages, OrderedDict, numpy scalars, EDM persistence records and plain torch containers are "
            "allowed."
        )

    def persistent_load(self, pid: Any) -> Any:
        """Resolve a ``torch.save`` storage id from the archive (plain pickles have none)."""
        if self._storage_reader is None:
            raise pickle.UnpicklingError(
                "the pickle uses persistent ids (a legacy torch.save file, not an EDM pickle); "
                "read it with torch.load(..., weights_only=True)."
            )
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.200} in a torch.save archive.")
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            raw = self._storage_reader(key)
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if len(raw) < int(numel) * itemsize:
                raise pickle.UnpicklingError(
                    f"storage '{key}' holds {len(raw)} bytes, expected {int(numel) * itemsize}."
                )
            untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            self._storages[key] = torch.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype, _internal=True)
        return self._storages[key]


_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy torch.save file


def _read_torch_zip(archive: zipfile.ZipFile) -> Any:
    """Unpickle the ``data.pkl`` of a ``torch.save`` zip archive with the restricted unpickler."""
    pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise pickle.UnpicklingError(f"not a torch.save archive: expected one data.pkl, found {len(pickles)}.")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").decode() != "little":
        raise pickle.UnpicklingError("big-endian torch.save archives are not supported.")

    def storage_reader(key: str) -> bytes:
        name = f"{prefix}data/{key}"
        if name not in names:
            raise pickle.UnpicklingError(f"torch.save archive lacks storage '{name}'.")
        return archive.read(name)

    return RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storage_reader=storage_reader).load()


def read_edm_pickle(path_or_file: str | os.PathLike | IO[bytes]) -> Any:
    """Unpickle an EDM/PaDIS pickle into plain data and :class:`PersistedObject`/:class:`PlainObject` records.

    Plain pickles (``network-snapshot-*.pkl``) and ``torch.save`` zip archives whose pickle holds EDM persisted
    modules (``training-state-*.pt`` = ``torch.save(dict(net=<module>, optimizer_state=...))``, which
    ``torch.load(weights_only=True)`` refuses) are both read with the same allow-list.

    Args:
        path_or_file: a path, or a seekable binary file object opened for reading.

    Returns:
        the reconstructed object tree (for a snapshot: ``{'ema': PersistedObject, 'loss_fn': ..., ...}``).

    Raises:
        pickle.UnpicklingError: a refused global or a malformed record.
        FileNotFoundError: the path does not exist.
        TypeError: ``path_or_file`` is neither a path nor a binary file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        path = Path(path_or_file)
        if not path.is_file():
            raise FileNotFoundError(f"EDM pickle not found: '{path}'.")
        with open(path, "rb") as f:
            try:
                return read_edm_pickle(f)
            except pickle.UnpicklingError as e:
                raise pickle.UnpicklingError(f"{e} (file '{path}')") from e
    if hasattr(path_or_file, "read") and hasattr(path_or_file, "readline"):
        if getattr(path_or_file, "seekable", lambda: False)():
            start = path_or_file.tell()
            is_zip = zipfile.is_zipfile(path_or_file)
            path_or_file.seek(start)
            if is_zip:
                with zipfile.ZipFile(path_or_file) as archive:
                    return _read_torch_zip(archive)
        content = RestrictedUnpickler(path_or_file).load()
        if isinstance(content, int) and content == _LEGACY_TORCH_MAGIC:
            raise pickle.UnpicklingError(
                "this is a legacy (pre-zip) torch.save file, not an EDM pickle; "
                "read it with torch.load(weights_only=True)."
            )
        return content
    raise TypeError(f"path_or_file must be a path or a binary file object, got {type(path_or_file).__name__}.")


def _module_state(record: Any, where: str) -> Mapping[str, Any]:
    state = record.state if isinstance(record, (PersistedObject, PlainObject)) else None
    if not isinstance(state, Mapping) or not {"_parameters", "_buffers", "_modules"} <= set(state):
        raise ValueError(f"'{where}' is not a recorded torch module (got {record!r}).")
    return state


def module_state_dict(record: Any) -> dict[str, torch.Tensor]:
    """Collect the state dict (parameters, then persistent buffers, then children) of a recorded module.

    Args:
        record: a :class:`PersistedObject` (or :class:`PlainObject`) recorded from a ``torch.nn.Module``.

    Returns:
        flat ``{name: tensor}`` in the same order and naming ``module.state_dict()`` gives, tensors detached.

    Raises:
        ValueError: the record (or a child) is not a recorded module, or an entry is not a tensor.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(rec: Any, prefix: str) -> None:
        state = _module_state(rec, prefix.rstrip(".") or "<root>")
        skip = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (state[group] or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"'{prefix}{name}' is a {type(value).__name__}, expected a tensor.")
                out[prefix + name] = value.detach()
        for name, child in (state["_modules"] or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    walk(record, "")
    return out


def load_edm_snapshot(path_or_file: str | os.PathLike | IO[bytes], key: str | None = "ema") -> dict[str, torch.Tensor]:
    """Read the state dict of a module stored in an EDM/PaDIS ``network-snapshot-*.pkl``, running no code from it.

    Args:
        path_or_file: the snapshot path or a binary file object; a ``training-state-*.pt`` archive is accepted too
            (use ``key='net'``, the training network, which is all it holds).
        key: entry of the snapshot dict holding the module (``'ema'``, the EMA network EDM/PaDIS sample with);
            None when the pickle holds the module itself.

    Returns:
        ``{name: tensor}`` in official naming (for PaDIS: ``model.map_layer0.weight``, ``model.enc.16x16_conv.weight``,
        ...), on the CPU.

    Raises:
        pickle.UnpicklingError: the file names a global outside the allow-list (nothing was executed).
        KeyError: ``key`` is not in the snapshot (the message lists the keys present).
        ValueError: the selected entry is not a recorded torch module.
    """
    content = read_edm_pickle(path_or_file)
    if key is not None:
        if not isinstance(content, Mapping):
            raise ValueError(f"snapshot holds a {type(content).__name__}, expected a dict with key '{key}'.")
        if key not in content:
            raise KeyError(f"snapshot has no entry '{key}'; entries: {sorted(map(str, content))}.")
        content = content[key]
    return module_state_dict(content)
