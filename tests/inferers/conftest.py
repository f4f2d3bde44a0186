"""Helpers shared by the inferer tests (one thread for torch is set for the whole session in tests/conftest.py)."""

from __future__ import annotations

import textwrap
from typing import Any


def run_docstring_example(doc: str | None, name: str) -> dict[str, Any]:
    """Execute the first literal block (the indented lines after the first ``::``) of ``doc``; return its namespace.

    Args:
        doc: a module, class or function docstring with an ``Example::`` block.
        name: shown as the file name in tracebacks.

    Raises:
        ValueError: ``doc`` has no literal block.
    """
    if not doc or "::" not in doc:
        raise ValueError(f"{name} has no '::' example block.")
    block: list[str] = []
    indent = None
    for line in doc.split("::", 1)[1].splitlines()[1:]:
        if not line.strip():
            block.append("")
            continue
        current = len(line) - len(line.lstrip())
        if indent is None:
            indent = current
        elif current < indent:
            break
        block.append(line)
    code = textwrap.dedent("\n".join(block))
    if not code.strip():
        raise ValueError(f"{name}'s '::' block is empty.")
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<{name} example>", "exec"), namespace)
    return namespace
