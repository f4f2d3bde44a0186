"""The one error type of a bundle's edge, and how the ``monai.bundle`` command line shows it.

MONAI wraps an exception raised inside a config expression in ``RuntimeError("Failed to evaluate ...")``, so a user of
``python -m monai.bundle run`` sees the wrapper last, under a long traceback. :class:`BundleInputError` marks an
error in what the user passed (a key, a file, a value); :func:`show_bundle_errors_briefly` installs an excepthook
that prints such an error as one line (``error: <message>``) when the process is the ``monai.bundle`` command line,
and leaves every other exception, and every in-process caller, as they are.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

__all__ = ["BundleInputError", "bundle_input_error", "show_bundle_errors_briefly"]


class BundleInputError(ValueError):
    """A key, file or value given to a bundle cannot be used; the message names it, what was expected and what came."""


def bundle_input_error(exc: BaseException | None) -> BundleInputError | None:
    """The :class:`BundleInputError` in ``exc``'s chain of causes and contexts (MONAI wraps it), or ``None``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BundleInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _is_bundle_command_line() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec is not None and spec.name == "monai.bundle.__main__"


def show_bundle_errors_briefly() -> None:
    """Print a :class:`BundleInputError` as ``error: <message>`` (exit code 1) under ``python -m monai.bundle``.

    Does nothing in any other process, when another excepthook is installed, or with ``MEDGEN_TRACEBACK=1`` in the
    environment (then the full traceback is printed as usual).
    """
    if not _is_bundle_command_line() or sys.excepthook is not sys.__excepthook__ or os.environ.get("MEDGEN_TRACEBACK"):
        return

    def hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        error = bundle_input_error(value)
        if error is None:
            sys.__excepthook__(kind, value, traceback)
            return
        print(f"error: {error}", file=sys.stderr)
        print("(set MEDGEN_TRACEBACK=1 for the full traceback)", file=sys.stderr)

    sys.excepthook = hook
