"""Stopping rules and the batched iteration loop every solver runs.

A solver's iteration is a function ``step(state) -> state`` over a dict of batched tensors (``state["x"]`` is the
image, other entries are momenta, dual variables or cached residuals). :func:`iterate` runs it with per-item stopping:
an item that meets a rule is frozen (its tensors stop changing) while the others go on, so each item of a batch ends
exactly where it would end alone.

Rules (an item stops as soon as ANY rule says so):

- :class:`RelativeChange`: ``||x_k+1 - x_k|| <= tol ||x_k+1||`` (convergence).
- :class:`DiscrepancyReached`: ``||A x_k - y|| <= target`` (Morozov's discrepancy principle used as a stopping rule,
  for methods regularised by their iteration count: SIRT, CG on the normal equations).
- :class:`BestIterate`: never stops an item; it keeps the iterate closest to a reference (the ``oracle`` mode of the
  iteration count) and hands it back at the end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch

from medgen.checks import check_positive_int
from medgen.solvers.linalg import batch_norm, per_item

__all__ = ["State", "StoppingRule", "RelativeChange", "DiscrepancyReached", "BestIterate", "iterate"]

State = dict[str, torch.Tensor]
"""A solver's iteration state: batched tensors ``(B, ...)``; ``"x"`` is the current image."""


class StoppingRule(ABC):
    """Decides, per item, when an iteration stops."""

    @abstractmethod
    def check(self, state: State, previous: State | None, active: torch.Tensor, iteration: int) -> torch.Tensor:
        """Whether each item should stop at ``state``.

        Args:
            state: the state after ``iteration`` steps (``iteration = 0``: the initial state).
            previous: the state one step before, ``None`` for the initial state.
            active: ``(B,)`` bool, the items still iterating (``state`` of the others is not their result).
            iteration: number of steps taken.

        Returns:
            ``(B,)`` bool.
        """

    def finish(self, state: State) -> State:
        """The final state handed back (default: ``state`` itself)."""
        return state


class RelativeChange(StoppingRule):
    """Stop an item when ``||x_k+1 - x_k|| <= tol * ||x_k+1||`` (a zero image stops when it stops changing).

    Args:
        tol: relative tolerance, ``>= 0`` (``0``: never stops before ``max_iter`` unless the iterate is stationary).
    """

    def __init__(self, tol: float) -> None:
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol!r}.")
        self.tol = float(tol)

    def check(self, state: State, previous: State | None, active: torch.Tensor, iteration: int) -> torch.Tensor:
        if previous is None:
            return torch.zeros_like(active)
        change = batch_norm(state["x"] - previous["x"])
        return change <= self.tol * batch_norm(state["x"])


class DiscrepancyReached(StoppingRule):
    """Stop an item when its data residual ``||A x - y||`` falls to ``target`` (the discrepancy principle).

    Args:
        target: ``(B,)`` residual norm at which to stop, e.g. :func:`~medgen.solvers.parameter.discrepancy_target`.
        residual_norm: ``state -> (B,)`` data residual of a state.
    """

    def __init__(self, target: torch.Tensor, residual_norm: Callable[[State], torch.Tensor]) -> None:
        self.target = target
        self.residual_norm = residual_norm

    def check(self, state: State, previous: State | None, active: torch.Tensor, iteration: int) -> torch.Tensor:
        return self.residual_norm(state) <= self.target


class BestIterate(StoppingRule):
    """Keep each item's iterate with the lowest ``score`` (e.g. the squared error against a reference).

    It never stops an item; :meth:`finish` returns the state whose ``"x"`` is the best iterate seen, and
    :attr:`best_iteration` holds the step count at which each item's best was reached.

    Args:
        score: ``x -> (B,)``, lower is better.
    """

    def __init__(self, score: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.score = score
        self.best_x: torch.Tensor | None = None
        self.best_score: torch.Tensor | None = None
        self.best_iteration: torch.Tensor | None = None

    def check(self, state: State, previous: State | None, active: torch.Tensor, iteration: int) -> torch.Tensor:
        x = state["x"]
        score = self.score(x)
        if self.best_x is None:
            self.best_x, self.best_score = x.clone(), score
            self.best_iteration = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        else:
            better = active & (score < self.best_score)
            self.best_x = torch.where(per_item(better, x) > 0, x, self.best_x)
            self.best_score = torch.where(better, score, self.best_score)
            self.best_iteration = torch.where(better, torch.full_like(self.best_iteration, iteration),
                                              self.best_iteration)
        return torch.zeros_like(active)

    def finish(self, state: State) -> State:
        if self.best_x is None:
            return state
        return {**state, "x": self.best_x}


def iterate(
    step: Callable[[State], State],
    state: State,
    max_iter: int,
    rules: Sequence[StoppingRule],
) -> tuple[State, torch.Tensor, torch.Tensor]:
    """Run ``step`` up to ``max_iter`` times with per-item stopping.

    Every rule is checked on the initial state and after every step; an item stops when any rule says so, and from
    then on all its state tensors keep their values. The loop ends when every item has stopped or after ``max_iter``
    steps; then each rule's :meth:`StoppingRule.finish` may substitute the result (the oracle's best iterate).

    Args:
        step: one iteration, ``state -> new state`` with the same keys and shapes.
        state: the initial state.
        max_iter: maximum number of steps, ``>= 1``.
        rules: the stopping rules.

    Returns:
        ``(state, iterations, stopped)``: the final state, ``(B,)`` steps taken by each item (long), and ``(B,)`` bool
        whether each item stopped by a rule before ``max_iter``.
    """
    check_positive_int(max_iter, "max_iter")
    x = state["x"]
    batch = x.shape[0]
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    stopped = torch.zeros_like(active)
    for rule in rules:
        stopped |= rule.check(state, None, active, 0)
    active &= ~stopped
    iterations = torch.zeros(batch, dtype=torch.long, device=x.device)
    for k in range(1, max_iter + 1):
        if not bool(active.any()):
            break
        new = step(state)
        stop = torch.zeros_like(active)
        for rule in rules:
            stop |= rule.check(new, state, active, k)
        state = {key: torch.where(per_item(active, value) > 0, value, state[key]) for key, value in new.items()}
        iterations += active.long()
        stopped |= active & stop
        active &= ~stop
    for rule in rules:
        state = rule.finish(state)
    return state, iterations, stopped
