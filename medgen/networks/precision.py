"""Mixed precision and compilation of a network call, as one wrapper every inferer applies.

:class:`PrecisionSettings` holds the two options (``autocast_dtype``, ``compile_network``); :class:`PrecisionNetwork`
runs a network under :func:`torch.autocast` on its input's device type, optionally through :func:`torch.compile`, and
returns floating-point outputs in the input's dtype, so the sampler's state, its consistency terms and the physics
operators stay in the precision they were given (only the network's matmuls/convolutions run in reduced precision).
:func:`with_precision` applies it to what an inferer receives as ``network`` (one network or a pair/dict of them).

Example::

    import torch
    from medgen.networks.ncsnpp import NCSNpp
    from medgen.networks.precision import PrecisionNetwork, PrecisionSettings

    net = NCSNpp(image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()).eval()
    bf16 = PrecisionNetwork(net, PrecisionSettings(autocast_dtype=torch.bfloat16))
    score = bf16(torch.randn(2, 1, 16, 16), torch.tensor([1.0, 2.0]))  # float32 output, bf16 convolutions
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from medgen.checks import check_callable

__all__ = ["AUTOCAST_DTYPES", "COMPILE_MODES", "PrecisionSettings", "PrecisionNetwork", "with_precision"]

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes (``"reduce-overhead"`` captures CUDA graphs of the static network call)."""


@dataclass(frozen=True)
class PrecisionSettings:
    """How a network is executed: autocast dtype and compilation (the settings every inferer takes).

    Attributes:
        autocast_dtype: ``None`` (the network's own precision), ``torch.bfloat16`` or ``torch.float16`` (or their
            names ``"bfloat16"``/``"float16"``, as in a JSON bundle config): the network runs under
            ``torch.autocast(device_type, dtype)`` of its input's device. Support is checked per device type before
            the first call (:meth:`check_device`).
        compile_network: ``False``, ``True`` (``torch.compile(network)``) or a ``torch.compile`` mode of
            :data:`COMPILE_MODES`. The compiled network is cached per network object, so repeated inferer calls
            compile once.
    """

    autocast_dtype: torch.dtype | str | None = None
    compile_network: bool | str = False

    def __post_init__(self) -> None:
        dtype = self.autocast_dtype
        if isinstance(dtype, str):
            if dtype not in AUTOCAST_DTYPES:
                raise ValueError(f"autocast_dtype must be None, 'bfloat16' or 'float16', got {dtype!r}.")
            object.__setattr__(self, "autocast_dtype", AUTOCAST_DTYPES[dtype])
        elif dtype is not None and dtype not in AUTOCAST_DTYPES.values():
            raise ValueError(f"autocast_dtype must be None, torch.bfloat16 or torch.float16, got {dtype!r}.")
        mode = self.compile_network
        if not isinstance(mode, (bool, str)) or (isinstance(mode, str) and mode not in COMPILE_MODES):
            raise ValueError(f"compile_network must be a bool or one of {COMPILE_MODES}, got {mode!r}.")

    @property
    def active(self) -> bool:
        """Whether the settings change anything (else networks are used as they are)."""
        return self.autocast_dtype is not None or self.compile_network is not False

    def check_device(self, device: torch.device | str) -> None:
        """Refuse an ``autocast_dtype`` that ``torch.autocast`` does not support on ``device``'s type.

        ``torch.autocast`` only warns and disables itself for an unsupported dtype; this raises instead, naming the
        setting (e.g. float16 on a CPU build without half-precision autocast, or bfloat16 on a GPU without it).

        Raises:
            ValueError: the dtype cannot be autocast to on this device type.
        """
        if self.autocast_dtype is not None:
            reason = _autocast_problem(torch.device(device).type, self.autocast_dtype)
            if reason:
                raise ValueError(
                    f"autocast_dtype={self.autocast_dtype} is not supported on {torch.device(device).type}: {reason} "
                    "Use autocast_dtype=None or a supported dtype (bfloat16 on CPU)."
                )

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (dtype by name), for run fingerprints."""
        dtype = self.autocast_dtype
        return {"autocast_dtype": None if dtype is None else str(dtype).removeprefix("torch."),
                "compile_network": self.compile_network}


@lru_cache(maxsize=None)
def _autocast_problem(device_type: str, dtype: torch.dtype) -> str:
    """Why ``torch.autocast(device_type, dtype)`` would not run (``""`` when it would)."""
    if not torch.amp.is_autocast_available(device_type):
        return "this PyTorch build has no autocast for it."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.autocast(device_type, dtype=dtype)
        except RuntimeError as error:
            return str(error)
    return " ".join(str(w.message) for w in caught if "autocast" in str(w.message).lower())


_COMPILED: weakref.WeakKeyDictionary[Any, dict[bool | str, Callable[..., Any]]] = weakref.WeakKeyDictionary()


def _compiled(network: Callable[..., Any], mode: bool | str) -> Callable[..., Any]:
    """``torch.compile(network)`` (with ``mode`` when it is a string), cached per network object and mode."""
    try:
        per_network = _COMPILED.setdefault(network, {})
    except TypeError:  # not weak-referenceable (e.g. a bound method): compiled per wrapper call site
        per_network = {}
    if mode not in per_network:
        per_network[mode] = torch.compile(network) if mode is True else torch.compile(network, mode=mode)
    return per_network[mode]


class PrecisionNetwork(nn.Module):
    """``network`` called under :class:`PrecisionSettings`: autocast, optional compilation, outputs in input dtype.

    The dtype and device type come from the first tensor argument (the noisy state ``x``). Floating-point outputs are
    cast back to that tensor's dtype (a tuple/list of outputs element-wise). Attributes the inferers read from a
    network (``input_multiple``, ``num_classes``, ``sigmas``, ...) are those of the wrapped network
    (:func:`~medgen.networks.checkpoint.unwrap_network` unwraps this class).

    Args:
        network: an ``nn.Module`` or any callable ``network(x, *args, **kwargs)``.
        settings: the execution settings.
    """

    def __init__(self, network: Callable[..., Any], settings: PrecisionSettings) -> None:
        super().__init__()
        check_callable(network, "network")
        if not isinstance(settings, PrecisionSettings):
            raise TypeError(f"settings must be PrecisionSettings, got {type(settings).__name__}.")
        if isinstance(network, nn.Module):
            self.module = network
        else:
            object.__setattr__(self, "module", network)  # a plain callable: not registered as a submodule
        self.settings = settings
        self._checked: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """``network(x, *args, **kwargs)`` under the settings; floating outputs in ``x``'s dtype."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the network's first input must be a tensor, got {type(x).__name__}.")
        dtype = self.settings.autocast_dtype
        if dtype is not None and x.device.type not in self._checked:
            self.settings.check_device(x.device)
            self._checked.add(x.device.type)
        call = _compiled(self.module, self.settings.compile_network) if self.settings.compile_network else self.module
        context = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with context:
            out = call(x, *args, **kwargs)
        return _cast_floating(out, x.dtype) if dtype is not None else out

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.settings.to_json().items())


def _cast_floating(out: Any, dtype: torch.dtype) -> Any:
    """``out`` (a tensor or a tuple/list of them) with floating-point tensors in ``dtype``."""
    if isinstance(out, torch.Tensor):
        return out.to(dtype) if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_cast_floating(o, dtype) for o in out)
    return out


def with_precision(network: Any, settings: PrecisionSettings) -> Any:
    """What an inferer receives as ``network``, with each network wrapped in :class:`PrecisionNetwork`.

    One network, a ``(primary, auxiliary)`` tuple/list/``nn.ModuleList`` or an ``nn.ModuleDict`` (TPDM) are wrapped
    member by member; with inactive settings ``network`` is returned unchanged. A medgen ``Prior`` cannot be wrapped
    from outside (it owns its network calls): build it on a :class:`PrecisionNetwork` instead.

    Raises:
        TypeError: ``network`` is a ``Prior`` and the settings are active.
    """
    if not settings.active:
        return network
    return wrap_each_network(
        network,
        lambda member: PrecisionNetwork(member, settings),
        PrecisionNetwork,
        "autocast_dtype/compile_network",
        "medgen.networks.precision.PrecisionNetwork(network, PrecisionSettings(...))",
    )


def wrap_each_network(
    network: Any, wrap: Callable[[nn.Module], nn.Module], wrapper: type, options: str, instead: str
) -> Any:
    """``network`` with ``wrap`` applied to each network in it (the one home of how inferer options wrap networks).

    One network, a ``(primary, auxiliary)`` tuple/list/``nn.ModuleList`` or an ``nn.ModuleDict`` (TPDM) are wrapped
    member by member; a member that is not callable (the inferer reports it with its own message) or is already a
    ``wrapper`` is kept.

    Raises:
        TypeError: ``network`` is a medgen ``Prior``: it owns its network calls, so ``options`` cannot wrap it from
            outside; the message says to build it on ``instead``.
    """
    from medgen.diffusion.priors import Prior  # (priors import networks: imported here to keep networks first)

    if isinstance(network, Prior):
        raise TypeError(
            f"{options} wrap a network, got a {type(network).__name__}; build the prior on {instead} instead."
        )

    def each(member: Any) -> Any:
        return wrap_each_network(member, wrap, wrapper, options, instead)

    if isinstance(network, nn.ModuleDict):
        return nn.ModuleDict({key: each(value) for key, value in network.items()})
    if isinstance(network, nn.ModuleList):
        return nn.ModuleList([each(value) for value in network])
    if isinstance(network, (tuple, list)):
        return type(network)(each(value) for value in network)
    if not callable(network) or isinstance(network, wrapper):
        return network
    return wrap(network)
