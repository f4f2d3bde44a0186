"""The sampling loop every medgen inferer shares: progress bar, seeding, periodic checkpoints and exact resume.

Example::

    import torch
    from medgen.diffusion.loop import SamplingLoop, make_generator

    generator = make_generator(0, "cpu")
    state = {"x": torch.randn(1, 1, 8, 8, generator=generator)}

    def step(i, state):
        noise = torch.randn(state["x"].shape, generator=generator)
        return {"x": 0.9 * state["x"] + 0.1 * noise}

    loop = SamplingLoop(100, checkpoint_dir="runs/demo", checkpoint_every=10,
                        fingerprint={"inferer": "demo", "seed": 0, "shape": [1, 1, 8, 8]})
    result = loop.run(state, step, generator=generator)

Interrupting the run (Ctrl-C, a crash, a killed job) and calling ``run`` again with the same initial state and
fingerprint continues from the last checkpoint and gives a result bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from tqdm.auto import tqdm

from medgen.checks import check_folder

__all__ = ["SamplingLoop", "make_generator", "tensor_digest", "to_json", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "sampling_state.pt"
_PLAIN_TYPES = (bool, int, float, str, type(None))


def make_generator(seed: int | None, device: torch.device | str | None = None) -> torch.Generator | None:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``, or ``None`` when ``seed`` is ``None``.

    On the CPU, draws from ``make_generator(s, "cpu")`` equal the global-RNG draws after ``torch.manual_seed(s)``,
    which is what parity with official code (that seeds the global RNG) relies on.

    Args:
        seed: integer seed, or ``None`` for "no dedicated generator" (draws then use the global RNG).
        device: device the generator lives on; random draws of tensors on that device must use it.

    Raises:
        TypeError: ``seed`` is neither an integer nor ``None``.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
    generator = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    generator.manual_seed(seed)
    return generator


def tensor_digest(t: torch.Tensor | None) -> str | None:
    """Short content hash of a tensor with its shape and dtype, or ``None`` for ``None``.

    Part of the resume fingerprint (:meth:`SamplingInferer.sampling_loop` digests every tensor of ``extra``), so a
    checkpoint of one input is never resumed for another input of the same shape.
    """
    if t is None:
        return None
    plain = t.as_tensor() if isinstance(t, MetaTensor) else t
    data = plain.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16] + f"-{tuple(plain.shape)}-{plain.dtype}"


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data for a fingerprint: dataclasses as dicts, tuples as lists, tensors digested, dtypes
    and other objects by ``str``/``repr``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, torch.Tensor):
        return tensor_digest(value)
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    return str(value) if isinstance(value, torch.dtype) else repr(value)


def _check_checkpointable(value: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``value`` can be saved and read back with ``torch.load(weights_only=True)``."""
    if isinstance(value, (torch.Tensor, *_PLAIN_TYPES)):
        return
    if isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            _check_checkpointable(item, f"{name}[{k}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_checkpointable(item, f"{name}[{key!r}]")
        return
    raise TypeError(
        f"state{name} has type {type(value).__name__}, which a checkpoint cannot hold; "
        "use tensors, numbers, strings, None and lists/tuples/dicts of them."
    )


class SamplingLoop:
    """Run ``num_steps`` steps of a sampler with a progress bar and optional checkpoint/resume.

    The sampler is a step function ``step_fn(i, state) -> state`` over a dictionary of tensors (and plain values);
    it draws its noise from the generator it closed over (the one passed to :meth:`run`) or from ``state``. The loop
    itself holds no random state.

    With ``checkpoint_dir`` set, :meth:`run` saves ``{step, state, generator state, fingerprint, medgen version}`` to
    ``checkpoint_dir/sampling_state.pt`` every ``checkpoint_every`` steps and after the last step, atomically (a
    temporary file in the same folder, then ``os.replace``), and on start resumes from that file when its
    fingerprint matches. Nothing is written outside ``checkpoint_dir``.

    Args:
        num_steps: number of steps, ``>= 1``.
        progress: show a tqdm progress bar.
        description: label of the progress bar.
        checkpoint_dir: folder for the checkpoint file (created if missing); ``None`` disables checkpointing.
        checkpoint_every: save every this many steps; ``0`` saves only the final state (when ``checkpoint_dir``
            is set). A positive value requires ``checkpoint_dir``.
        fingerprint: JSON-serialisable mapping identifying the run (e.g. inferer name, config, input shape, seed).
            A checkpoint is resumed only if its fingerprint (and ``num_steps``) equals this one; otherwise
            :meth:`run` raises rather than overwrite another run's state.

    Raises:
        ValueError: ``num_steps < 1``, ``checkpoint_every < 0``, ``checkpoint_every > 0`` without
            ``checkpoint_dir``, or a ``checkpoint_dir`` that is (or lies under) a file.
        TypeError: ``fingerprint`` is not a JSON-serialisable mapping.
    """

    def __init__(
        self,
        num_steps: int,
        *,
        progress: bool = True,
        description: str = "sampling",
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be an integer >= 0, got {checkpoint_every!r}.")
        if checkpoint_every > 0 and checkpoint_dir is None:
            raise ValueError(f"checkpoint_every={checkpoint_every} requires checkpoint_dir, got None.")
        if fingerprint is not None and not isinstance(fingerprint, Mapping):
            raise TypeError(f"fingerprint must be a mapping or None, got {type(fingerprint).__name__}.")
        try:
            self._fingerprint_key = json.dumps(
                {"num_steps": num_steps, "fingerprint": dict(fingerprint or {})}, sort_keys=True
            )
        except TypeError as err:
            raise TypeError(f"fingerprint must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None
        self.num_steps = num_steps
        self.progress = progress
        self.description = description
        self.checkpoint_dir = check_folder(checkpoint_dir, "checkpoint_dir") if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.fingerprint = dict(fingerprint or {})

    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint_dir/sampling_state.pt``, or ``None`` without a ``checkpoint_dir``."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    def run(
        self,
        state: dict[str, Any],
        step_fn: Callable[[int, dict[str, Any]], dict[str, Any]],
        generator: torch.Generator | None = None,
        start_step: int = 0,
    ) -> dict[str, Any]:
        """Call ``state = step_fn(i, state)`` for ``i`` in ``range(start_step, num_steps)`` and return the state.

        Args:
            state: initial state (``str`` keys; tensors, numbers, strings, lists/dicts of them when checkpointing).
            step_fn: one sampler step; returns the new state dictionary.
            generator: the generator ``step_fn`` draws from; its state is checkpointed and restored. With ``None``
                the global CPU RNG state is checkpointed instead (the CUDA global RNG is not: pass a generator).
            start_step: first step to run when no checkpoint is resumed.

        Returns:
            the state after the last step.

        Raises:
            ValueError: bad ``start_step``, or ``checkpoint_dir`` holds a checkpoint of a different run.
            TypeError: ``state`` is not a ``str``-keyed dict, or holds values a checkpoint cannot store.
        """
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TypeError(f"state must be a dict with str keys, got {type(state).__name__}.")
        if not callable(step_fn):
            raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
        if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= self.num_steps:
            raise ValueError(f"start_step must be an integer in [0, {self.num_steps}], got {start_step!r}.")
        if self.checkpoint_dir is not None:
            for key, value in state.items():
                _check_checkpointable(value, f"[{key!r}]")
            resumed = self._load(state, generator)
            if resumed is not None:
                start_step, state = resumed

        with tqdm(
            total=self.num_steps, initial=start_step, desc=self.description, disable=not self.progress
        ) as bar:
            for i in range(start_step, self.num_steps):
                state = step_fn(i, state)
                if not isinstance(state, dict):
                    raise TypeError(f"step_fn must return a dict, got {type(state).__name__} at step {i}.")
                done = i + 1
                if self.checkpoint_dir is not None and (
                    done == self.num_steps or (self.checkpoint_every > 0 and done % self.checkpoint_every == 0)
                ):
                    self._save(done, state, generator)
                bar.update(1)
        return state

    def _save(self, step: int, state: dict[str, Any], generator: torch.Generator | None) -> None:
        from medgen import __version__

        assert self.checkpoint_dir is not None and self.checkpoint_path is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "step": step,
            "state": {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in state.items()},
            "generator_state": generator.get_state() if generator is not None else None,
            "global_rng_state": torch.random.get_rng_state() if generator is None else None,
            "fingerprint": self._fingerprint_key,
            "medgen_version": __version__,
        }
        tmp = self.checkpoint_dir / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
        try:
            torch.save(payload, tmp)
            os.replace(tmp, self.checkpoint_path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _load(
        self, initial_state: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[int, dict[str, Any]] | None:
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return None
        from medgen.networks.checkpoint import load_weights_only  # (networks import diffusion: imported here)

        payload = load_weights_only(path, "sampling state")
        if not isinstance(payload, dict) or payload.get("fingerprint") != self._fingerprint_key:
            saved = payload.get("fingerprint") if isinstance(payload, dict) else None
            raise ValueError(
                f"checkpoint_dir {str(self.checkpoint_dir)!r} holds the state of a different run "
                f"(saved {saved}, this run {self._fingerprint_key}); use another checkpoint_dir or remove {path}."
            )
        if (generator is None) != (payload["generator_state"] is None):
            raise ValueError(
                f"checkpoint in {str(self.checkpoint_dir)!r} was saved "
                f"{'without' if payload['generator_state'] is None else 'with'} a generator, "
                f"this run passes {'none' if generator is None else 'one'}."
            )
        if generator is not None:
            generator.set_state(payload["generator_state"])
        else:
            torch.random.set_rng_state(payload["global_rng_state"])
        state = {}
        for key, value in payload["state"].items():
            reference = initial_state.get(key)
            if isinstance(value, torch.Tensor) and isinstance(reference, torch.Tensor):
                value = value.to(reference.device)
            state[key] = value
        return int(payload["step"]), state
