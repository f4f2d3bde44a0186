"""The loss curve of a training run: recorded every iteration, drawn as a PNG, kept across a resume.

:class:`LossCurve` is an ignite handler and a checkpointable object: it records the loss of every iteration
(``engine.state.output["loss"]``), writes ``loss_curve.png`` (the losses and their running mean against the
iteration, log scale) at every epoch end and when the run completes, and saves its history in a checkpoint, so the
curve of a resumed run is the whole curve. :func:`tensorboard_available` tells a config whether MONAI's
``TensorBoardStatsHandler`` can be used (the ``tensorboard`` package is optional).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgen.engines.training.step import distributed_rank
from medgen.engines.writers.atomic import write_atomically

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["LossCurve", "tensorboard_available"]


def tensorboard_available() -> bool:
    """``True`` when the ``tensorboard`` package is installed (MONAI's TensorBoard handlers need it)."""
    return importlib.util.find_spec("tensorboard") is not None


class LossCurve:
    """Record the training loss per iteration and draw it.

    Args:
        path: the PNG to write (its folder is created); ``None`` only records.
        key: the entry of ``engine.state.output`` holding the loss.
        window: iterations of the running mean drawn over the raw losses.
        title: the figure's title.

    Attributes:
        iterations, losses: the recorded history.
    """

    def __init__(self, path: str | os.PathLike | None, key: str = "loss", window: int = 20, title: str = "") -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}.")
        self.path = None if path in (None, "") else Path(path)
        self.key = key
        self.window = window
        self.title = title
        self.iterations: list[int] = []
        self.losses: list[float] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.draw)
        engine.add_event_handler(Events.COMPLETED, self.draw)

    def record(self, engine: Engine) -> None:
        """Append the loss of ``engine``'s current iteration."""
        output = engine.state.output
        loss = output[self.key] if isinstance(output, Mapping) else output
        self.iterations.append(int(engine.state.iteration))
        self.losses.append(float(loss))

    def state_dict(self) -> dict[str, Any]:
        return {"iterations": torch.tensor(self.iterations, dtype=torch.int64),
                "losses": torch.tensor(self.losses, dtype=torch.float64)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iterations = [int(i) for i in state["iterations"].tolist()]
        self.losses = [float(v) for v in state["losses"].tolist()]

    def draw(self, engine: Engine | None = None) -> Path | None:
        """Write the PNG (rank 0; nothing before the first iteration). Returns the path written, or ``None``."""
        if self.path is None or not self.losses or distributed_rank() != 0:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        losses = np.asarray(self.losses)
        figure = Figure(figsize=(6.0, 3.6), dpi=100)
        axis = figure.add_subplot(1, 1, 1)
        axis.plot(self.iterations, losses, lw=0.6, alpha=0.4, label="loss")
        if len(losses) >= self.window:
            mean = np.convolve(losses, np.ones(self.window) / self.window, mode="valid")
            axis.plot(self.iterations[self.window - 1 :], mean, lw=1.5, label=f"mean of {self.window}")
        if np.all(losses > 0):
            axis.set_yscale("log")
        axis.set_xlabel("iteration")
        axis.set_ylabel(self.key)
        axis.set_title(self.title or f"training loss ({len(losses)} iterations)", fontsize=9)
        axis.legend(fontsize=8)
        figure.tight_layout()
        return write_atomically(self.path, lambda tmp: figure.savefig(str(tmp), format="png"), overwrite=True)
