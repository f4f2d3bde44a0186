"""A medgen writer as the postprocessing handler of a MONAI evaluator.

In MONAI's standard inference form a ``SupervisedEvaluator`` runs the inferer and its handlers save the results.
:class:`WriteResults` hands each iteration's results to an :class:`~medgen.engines.writers.base.OutputWriter`: every
writer argument names where it comes from in the iteration's data (the evaluator's output: ``pred``, ``image``,
``label`` and what ``postprocessing`` added; then the batch), ``"pred#highres"`` (or ``"pred::highres"``) reaching
into a dictionary::

    "val_handlers": [{"_target_": "medgen.engines.writers.WriteResults", "writer": "@writer",
                      "arguments": {"volume": "pred", "reference": "label", "input": "image"},
                      "baselines": {"pseudo_inverse": "pseudo_inverse"}}]

Both ``decollate=False`` (one dictionary per iteration) and decollated outputs (one dictionary per item, each
written by its own writer call) are handled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["WriteResults"]


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.replace("::", "#").split("#"):  # MONAI's config parser turns "#" into "::" in strings
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class WriteResults:
    """Write every evaluator iteration's results with ``writer`` (an ignite handler).

    Args:
        writer: an output writer, called as ``writer(**arguments[, baselines=...])``.
        arguments: ``{writer argument: key}`` (a missing key gives ``None``).
        baselines: ``{baseline name: key}``, passed as the ``baselines`` argument (missing ones are left out).

    Attributes:
        results: what each writer call returned.
    """

    def __init__(self, writer: Any, arguments: Mapping[str, str], baselines: Mapping[str, str] | None = None) -> None:
        if not callable(writer):
            raise TypeError(f"writer must be callable, got {type(writer).__name__}.")
        self.writer = writer
        self.arguments = dict(arguments)
        self.baselines = None if baselines is None else dict(baselines)
        self.results: list[Any] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs, batches = engine.state.output, engine.state.batch
        if isinstance(outputs, list):
            items = list(zip(outputs, batches if isinstance(batches, list) else [batches] * len(outputs)))
        else:
            items = [(outputs, batches)]
        for output, batch in items:
            data = {**(batch if isinstance(batch, Mapping) else {}), **(output if isinstance(output, Mapping) else {})}
            kwargs = {argument: _lookup(data, key) for argument, key in self.arguments.items()}
            if self.baselines is not None:
                found = {name: _lookup(data, key) for name, key in self.baselines.items()}
                kwargs["baselines"] = {name: value for name, value in found.items() if value is not None}
            self.results.append(self.writer(**kwargs))
