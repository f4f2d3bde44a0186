"""What a user passed to ``monai.bundle run``, and the refusal of keys a config does not declare.

``python -m monai.bundle run --config_file c.json --stpes 2`` hands ``stpes=2`` to MONAI's ``run``, which adds it
to the config as a new key, and the run goes on with the default number of steps. :func:`check_keys` compares the
keys given on the command line (or to ``monai.bundle.run(...)`` in Python, or in an ``--args_file``) with the keys
the config files declare and refuses an unknown one, naming the closest declared key::

    BundleInputError: unknown key 'stpes' (--stpes 2); did you mean 'steps'?

:func:`given_arguments` finds what was given: ``monai.bundle.run`` is on the call stack of every config expression it
evaluates, with its documented parameters (``config_file``, ``args_file``, ``**override``) as local values, and its
workflow holds the config after the overrides. Nothing is found when a config is evaluated otherwise (a
``ConfigParser`` or ``ConfigWorkflow`` built in user code, ``monai.bundle.load``): then nothing was given on a
command line and nothing is checked.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medgen.bundle.errors import BundleInputError

__all__ = ["GivenArguments", "given_arguments", "check_keys", "closest_key", "split_id", "build_component"]

# keyword arguments of monai.bundle.run / create_workflow / ConfigWorkflow that are not config overrides
_WORKFLOW_ARGUMENTS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
     "workflow_name", "workflow_type", "properties_path"}
)  # fmt: skip
_SEPARATORS = ("::", "#")


@dataclass(frozen=True)
class GivenArguments:
    """What ``monai.bundle.run`` was given.

    Attributes:
        config_files: the config files, in merge order.
        overrides: config ids and values given on the command line (or in ``args_file``), e.g. ``{"steps": 2}``.
        config: the config after the overrides (raw: ``$`` expressions unevaluated), or ``{}`` when unknown.
        parser: the workflow's ``ConfigParser`` (to instantiate config items), or ``None`` when unknown.
    """

    config_files: tuple[str, ...]
    overrides: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    parser: Any = None


def split_id(config_id: str) -> list[str]:
    """``"writer#info#steps"`` (or ``"writer::info::steps"``) -> ``["writer", "info", "steps"]``."""
    for separator in _SEPARATORS:
        if separator in config_id:
            return config_id.split(separator)
    return [config_id]


def _run_frame_arguments() -> dict[str, Any] | None:
    """The local values of the innermost ``monai.bundle.run`` call on the stack, or ``None``."""
    from monai.bundle import scripts

    code = scripts.run.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return dict(frame.f_locals)
        frame = frame.f_back
    return None


def given_arguments() -> GivenArguments | None:
    """The config files and overrides of the ``monai.bundle.run`` call evaluating the current config, or ``None``.

    The overrides are those of ``args_file`` updated by the keyword arguments, as ``monai.bundle.run`` merges them
    (:func:`monai.bundle.update_kwargs`).
    """
    from monai.bundle import update_kwargs

    local = _run_frame_arguments()
    if local is None:
        return None
    arguments = update_kwargs(args=local.get("args_file"), **dict(local.get("override") or {}))
    config_file = local.get("config_file") or arguments.get("config_file")
    overrides = {k: v for k, v in arguments.items() if k not in _WORKFLOW_ARGUMENTS}
    if isinstance(config_file, str):
        files: tuple[str, ...] = tuple(f for f in config_file.split(",")) if "," in config_file else (config_file,)
    else:
        files = tuple(str(f) for f in (config_file or ()))
    workflow = local.get("workflow")
    parser = getattr(workflow, "parser", None)
    config = dict(parser.config) if parser is not None and isinstance(parser.config, dict) else {}
    return GivenArguments(files, overrides, config, parser)


def closest_key(key: str, candidates: Sequence[str]) -> str | None:
    """The candidate most like ``key`` (difflib ratio >= 0.6), or ``None``."""
    matches = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    if not matches:  # "stpes" vs "steps": also try ignoring case and separators
        folded = {c.lower().replace("_", ""): c for c in candidates}
        matches = [folded[m] for m in difflib.get_close_matches(key.lower().replace("_", ""), list(folded), n=1,
                                                                 cutoff=0.6)]
    return matches[0] if matches else None


def _declared(config_files: Sequence[str]) -> dict[str, Any]:
    from monai.bundle import ConfigParser

    return ConfigParser.load_config_files(list(config_files)) if config_files else {}


def check_keys(
    config_files: Sequence[str],
    overrides: Mapping[str, Any],
    extra_keys: Sequence[str] = (),
) -> None:
    """Refuse an override whose key the config files do not declare, naming the closest declared key.

    A top-level key must be declared at the top level of one of ``config_files`` (merged as MONAI merges them); a
    nested id ``a#b#c`` must exist in the declared config (a new key inside a declared dictionary is refused too, as
    it is ignored by whatever reads the dictionary).

    Args:
        config_files: the config files of the run.
        overrides: ``{config id: value}`` given on the command line.
        extra_keys: top-level keys that are valid without being declared (e.g. ``"_meta_"``).

    Raises:
        BundleInputError: an override names an undeclared key.
    """
    declared = _declared(config_files)
    valid_top = set(declared) | set(extra_keys) | {"_meta_"}
    names = ", ".join(sorted(str(f).rsplit("/", 1)[-1] for f in config_files)) or "the config"
    for config_id, value in overrides.items():
        path = split_id(str(config_id))
        shown = f"--{config_id} {value!r}" if not isinstance(value, str) else f"--{config_id} {value}"
        if path[0] not in valid_top:
            _refuse(path[0], path[0], [k for k in valid_top if not k.startswith("_")], shown, names)
        node: Any = declared.get(path[0])
        for depth, part in enumerate(path[1:], start=1):
            if isinstance(node, Mapping):
                if part not in node:
                    _refuse(part, "#".join(path[: depth + 1]), [str(k) for k in node], shown, names,
                            parent="#".join(path[:depth]))
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                break  # a value replaced wholesale (e.g. an expression): MONAI reports what does not fit


def _refuse(
    key: str, config_id: str, candidates: Sequence[str], shown: str, names: str, parent: str | None = None
) -> None:
    suggestion = closest_key(key, candidates)
    if suggestion is not None:
        raise BundleInputError(f"unknown key '{config_id}' ({shown}); did you mean '{suggestion}'?")
    listed = ", ".join(sorted(c for c in candidates if not c.startswith("_")))
    where = f" in '{parent}'" if parent else ""
    raise BundleInputError(f"unknown key '{config_id}' ({shown}); the keys {names} declares{where} are: {listed}.")



def _argument_keys(raw: Any) -> dict[str, str]:
    """``{constructor argument: config key}`` for the arguments of a raw component given as plain references
    (``"timestep_respacing": "@steps"``)."""
    if not isinstance(raw, Mapping):
        return {}
    found = {}
    for argument, value in raw.items():
        if isinstance(value, str) and re.fullmatch(r"@[A-Za-z_][A-Za-z0-9_]*", value):
            found[str(argument)] = value[1:]
    return found


def build_component(parser: Any, config: Mapping[str, Any], config_id: str) -> Any:
    """Build config item ``config_id`` with ``parser`` (cached for the run); a ``ValueError``/``TypeError`` it raises
    is re-raised as :class:`BundleInputError` with each constructor argument named by the config key it comes from.

    Raises:
        BundleInputError: the item cannot be built from the given settings.
    """
    try:
        return parser.get_parsed_content(config_id)
    except Exception as e:  # noqa: BLE001 (MONAI wraps the constructor's error in RuntimeError)
        cause = _first_setting_error(e)
        if cause is None:
            raise
        message = str(cause)
        keys = _argument_keys(config.get(config_id))
        found = [(match.start(), key) for argument, key in keys.items()
                 if (match := re.search(rf"\b{re.escape(argument)}\b", message))]
        for argument, key in keys.items():
            message = re.sub(rf"\b{re.escape(argument)}\b", key, message)
        given = f" (set with --{min(found)[1]})" if found else ""  # the argument the message is about comes first
        raise BundleInputError(f"{message.rstrip('.')}{given}.") from e


def _first_setting_error(error: BaseException | None) -> BaseException | None:
    """The first ``ValueError``/``TypeError`` in ``error``'s chain (``None`` if a BundleInputError comes first)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BundleInputError):
            return None
        if isinstance(error, (ValueError, TypeError)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
