"""Tests for medgen.solvers.stopping: per-item stopping and the iteration loop."""

from __future__ import annotations

import torch

from medgen.solvers.stopping import BestIterate, DiscrepancyReached, RelativeChange, iterate


def test_items_stop_independently_and_stay_frozen():
    state = {"x": torch.tensor([[4.0], [4.0]], dtype=torch.float64), "rate": torch.tensor([0.5, 0.9],
                                                                                           dtype=torch.float64)}

    def step(s):
        return {"x": s["x"] * s["rate"][:, None], "rate": s["rate"]}

    final, iterations, stopped = iterate(step, state, 500, [DiscrepancyReached(
        torch.tensor([1.0, 1.0], dtype=torch.float64), lambda s: s["x"][:, 0])])
    # first k with 4 * rate^k <= 1: k = 2 for 0.5, k = 14 for 0.9
    assert iterations.tolist() == [2, 14] and stopped.tolist() == [True, True]
    torch.testing.assert_close(final["x"][:, 0], torch.tensor([1.0, 4 * 0.9**14], dtype=torch.float64))


def test_relative_change_and_max_iter():
    state = {"x": torch.tensor([[1.0], [1.0]], dtype=torch.float64)}

    def step(s):
        return {"x": s["x"] + torch.tensor([[1e-9], [1.0]], dtype=torch.float64)}

    final, iterations, stopped = iterate(step, state, 5, [RelativeChange(1e-6)])
    assert iterations.tolist() == [1, 5] and stopped.tolist() == [True, False]
    torch.testing.assert_close(final["x"][:, 0], torch.tensor([1 + 1e-9, 6.0], dtype=torch.float64))


def test_best_iterate_returns_the_closest_iterate():
    target = torch.tensor([[3.0], [-2.0]], dtype=torch.float64)
    state = {"x": torch.zeros(2, 1, dtype=torch.float64)}
    oracle = BestIterate(lambda x: ((x - target) ** 2)[:, 0])
    final, iterations, _ = iterate(lambda s: {"x": s["x"] + 1.0}, state, 6, [oracle])
    assert iterations.tolist() == [6, 6]
    torch.testing.assert_close(final["x"], torch.tensor([[3.0], [0.0]], dtype=torch.float64))
    assert oracle.best_iteration.tolist() == [3, 0]
