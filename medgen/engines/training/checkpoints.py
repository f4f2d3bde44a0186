"""Training checkpoints that survive a kill, and a resume that continues exactly where a checkpoint was taken.

MONAI's ``CheckpointSaver`` writes in place (``atomic=False``): a kill during the write leaves a truncated
``checkpoint_epoch=N.pt`` and resuming from it fails with a bare ``EOFError``. Here:

- :class:`AtomicCheckpointSaver` (an ignite handler) writes ``{name: obj.state_dict()}`` every ``every``
  iterations (or epochs) to ``checkpoint_iteration=<N>.pt`` through a temporary ``.partial`` file that is flushed,
  fsynced and renamed, so a checkpoint file is complete or absent; partial files of a killed run are removed when
  the next run attaches the saver; the last ``n_saved`` checkpoints are kept;
- :class:`ResumeTraining` (an ignite handler) loads a checkpoint at the start of the run: the one given, or the
  latest in the checkpoint folder (a killed run continues by running the same command), checking that it is
  complete and holds every object, with errors that name the file;
- :class:`RandomState` puts the global torch, numpy and Python random states in a checkpoint, so anything that
  draws from them (dropout, random transforms) continues as the uninterrupted run does.

With :class:`~medgen.engines.training.step.DiffusionTrainingStep` (per-iteration generators) and
:class:`~medgen.engines.training.sampler.ResumableSampler` (data order a function of the iteration), resuming from
ANY saved checkpoint, at an epoch boundary or inside an epoch, gives the weights the uninterrupted run gives.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgen.engines.training.step import distributed_rank

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["AtomicCheckpointSaver", "ResumeTraining", "RandomState", "latest_checkpoint", "load_checkpoint"]

_NAME = re.compile(r"^checkpoint_iteration=(\d+)\.pt$")


def checkpoint_name(iteration: int) -> str:
    """``checkpoint_iteration=<iteration>.pt``."""
    return f"checkpoint_iteration={int(iteration)}.pt"


def saved_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint of the highest iteration in ``folder``, or ``None``."""
    found = saved_checkpoints(folder)
    return found[-1][1] if found else None


class RandomState:
    """The global random states (torch CPU and CUDA, numpy, Python) as a checkpointable object.

    The state dict holds only tensors, numbers and strings, so ``torch.load(weights_only=True)`` reads it.
    """

    def state_dict(self) -> dict[str, Any]:
        name, keys, position, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "position": int(position), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        numpy_state = state["numpy"]
        np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                             numpy_state["position"], numpy_state["has_gauss"], numpy_state["gauss"]))
        python = state["python"]
        random.setstate((python["version"], tuple(int(v) for v in python["internal"].tolist()), python["gauss_next"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class AtomicCheckpointSaver:
    """Save the training state every ``every`` iterations (or epochs), each file complete or absent.

    Args:
        save_dir: the checkpoint folder (created).
        save_dict: ``{name: object with state_dict()}``, e.g. network, optimizer, lr_scheduler, ema, trainer.
        every: save after every this many iterations (``epoch_level=False``) or epochs.
        epoch_level: count epochs instead of iterations.
        n_saved: keep the last this many checkpoints (``None``: all).
        save_final: also save when the run completes (if the last iteration was not saved already).

    Raises:
        ValueError: ``every`` or ``n_saved`` not a positive integer, or an empty ``save_dict``.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        every: int = 1,
        epoch_level: bool = False,
        n_saved: int | None = None,
        save_final: bool = True,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}.")
        if n_saved is not None and (isinstance(n_saved, bool) or not isinstance(n_saved, int) or n_saved < 1):
            raise ValueError(f"n_saved must be None or an integer >= 1, got {n_saved!r}.")
        if not save_dict:
            raise ValueError("save_dict must name at least one object to save.")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.every = every
        self.epoch_level = bool(epoch_level)
        self.n_saved = n_saved
        self.save_final = bool(save_final)

    def attach(self, engine: Engine) -> None:
        """Save on ``ITERATION_COMPLETED(every=...)`` (or ``EPOCH_COMPLETED``) and at ``COMPLETED``; remove the
        partial files a killed run left."""
        from ignite.engine import Events

        self.remove_partial_files()
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.every), self.save)
        if self.save_final:
            engine.add_event_handler(Events.COMPLETED, self.save)

    def remove_partial_files(self) -> None:
        """Delete ``.checkpoint_iteration=<N>.pt.partial`` files (a write that a kill interrupted)."""
        if self.save_dir.is_dir():
            for partial in self.save_dir.glob(".checkpoint_iteration=*.pt.partial"):
                partial.unlink(missing_ok=True)

    def save(self, engine: Engine) -> Path | None:
        """Write the checkpoint of ``engine``'s current iteration (rank 0 only; an existing one is kept).

        Returns:
            the checkpoint file, or ``None`` on a rank that does not write.
        """
        if distributed_rank() != 0:
            return None
        target = self.save_dir / checkpoint_name(engine.state.iteration)
        if target.exists():
            return target
        self.save_dir.mkdir(parents=True, exist_ok=True)
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        if self.n_saved is not None:
            for _, old in saved_checkpoints(self.save_dir)[: -self.n_saved]:
                old.unlink(missing_ok=True)
        return target


def load_checkpoint(path: str | os.PathLike, names: tuple[str, ...] = (), key: str = "resume_from") -> dict[str, Any]:
    """Read a training checkpoint (``torch.load(weights_only=True)``), naming the file in every error.

    Args:
        path: the checkpoint file.
        names: entries it must hold.
        key: the config key that named it (messages).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty, truncated or damaged file, not a mapping, or missing entries.
        pickle.UnpicklingError: the file holds objects whose loading could run code (refused, nothing ran).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{key} '{file}' does not exist.")
    from medgen.networks.checkpoint import load_weights_only

    state = load_weights_only(file, key)
    if not isinstance(state, Mapping):
        raise ValueError(f"{key} '{file}' holds a {type(state).__name__}, not a training checkpoint (a mapping).")
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"{key} '{file}' lacks {missing}; it holds {sorted(state)}.")
    return dict(state)


class ResumeTraining:
    """Load a checkpoint into the training objects when the trainer starts (an ignite handler).

    The checkpoint is ``path`` if given, else the latest one in ``checkpoint_dir`` (none: the run starts from
    scratch). The trainer's ``max_epochs`` (and ``epoch_length``) of the current run are kept, so a finished run can
    be continued for more epochs.

    Args:
        load_dict: ``{name: object with load_state_dict()}``; the trainer itself under any name.
        path: the checkpoint to resume from (``None`` or ``""``: the latest in ``checkpoint_dir``).
        checkpoint_dir: the run's checkpoint folder.
        map_location: passed on to the tensors' ``to`` (default: stay on the CPU until ``load_state_dict``).

    Attributes:
        loaded: the checkpoint file loaded, or ``None``.
    """

    def __init__(
        self,
        load_dict: Mapping[str, Any],
        path: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        if not load_dict:
            raise ValueError("load_dict must name at least one object to load.")
        self.load_dict = dict(load_dict)
        self.path = None if path in (None, "") else Path(path)
        self.checkpoint_dir = None if checkpoint_dir in (None, "") else Path(checkpoint_dir)
        self.loaded: Path | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def checkpoint(self) -> Path | None:
        """The file this run resumes from, or ``None``."""
        if self.path is not None:
            return self.path
        return None if self.checkpoint_dir is None else latest_checkpoint(self.checkpoint_dir)

    def __call__(self, engine: Engine) -> None:
        from ignite.engine import Engine as IgniteEngine

        path = self.checkpoint()
        if path is None:
            return
        state = load_checkpoint(path, tuple(self.load_dict))
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        for name, obj in self.load_dict.items():
            if isinstance(obj, IgniteEngine):
                saved = dict(state[name])
                saved.update({"max_epochs": max_epochs} if max_epochs is not None else {})
                if epoch_length is not None and saved.get("epoch_length") not in (None, epoch_length):
                    raise ValueError(
                        f"'{path}' was saved with epoch_length={saved['epoch_length']}; this run has "
                        f"epoch_length={epoch_length}: resume with the same epoch_length."
                    )
                saved.pop("max_iters", None)
                obj.load_state_dict(saved)
            else:
                obj.load_state_dict(state[name])
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"'{path}' is at epoch {engine.state.epoch}, beyond this run's max_epochs={max_epochs}.")
        self.loaded = path
