"""SIRT: the simultaneous iterative reconstruction technique (row- and column-sum normalised Landweber)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_box, check_choice
from medgen.solvers.base import STOPPING_RULES, Solver, SolverSettings, check_positive
from medgen.solvers.linalg import batch_norm
from medgen.solvers.proximal import project_box
from medgen.solvers.stopping import State, StoppingRule, iterate

__all__ = ["SIRTSettings", "SIRT"]


@dataclass(frozen=True)
class SIRTSettings(SolverSettings):
    """Settings of :class:`SIRT` (the shared ones in :class:`~medgen.solvers.base.SolverSettings`).

    Attributes:
        relaxation: step ``omega`` in ``(0, 2)``.
        box: optional ``(low, high)`` bounds projected onto after every step (real images only).
        stopping: ``"tolerance"`` (relative change below ``tol``), ``"discrepancy"`` (stop at
            ``||A x - y||`` <= the discrepancy target) or ``"oracle"`` (the iterate of best PSNR; benchmarks only).
    """

    max_iter: int = 200
    tol: float = 1e-5
    relaxation: float = 1.0
    box: tuple[float, float] | None = None
    stopping: str = "tolerance"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.relaxation, "relaxation")
        if not self.relaxation < 2:
            raise ValueError(f"relaxation must be a number in (0, 2), got {self.relaxation!r}.")
        object.__setattr__(self, "box", check_box(self.box))
        check_choice(self.stopping, "stopping", STOPPING_RULES)


class SIRT(Solver):
    """SIRT: ``x <- P_box(x + omega C A^T R (y - A x))`` with ``R = 1 / (A 1)`` and ``C = 1 / (A^T 1)``.

    ``R`` and ``C`` are the inverse row and column sums of ``A`` (zero where a sum is zero, e.g. rays missing the
    image), computed by applying ``A`` and ``A^T`` to ones. Without a box it converges (for ``0 < omega < 2``) to the
    solution of ``min ||A x - y||_R^2`` nearest to the start in the ``C^-1`` norm; on a consistent system that is a
    solution of ``A x = y``. Regularised by its iteration count (``stopping``). Each iteration costs one ``A`` and
    one ``A^T``; the residual it needs is also the one the discrepancy rule reads.

    SIRT is defined for operators with non-negative entries (projections, averages, blurs): ``A 1`` and ``A^T 1``
    must be real and non-negative, which is checked.

    Example::

        x = SIRT(ParallelBeamCT.padis(64, views=8, num_detectors=128), max_iter=200, box=(0, 1))(sinogram)

    Args:
        operator: the forward operator ``A`` (real, non-negative row and column sums).
        settings: fields of :class:`SIRTSettings`.
    """

    settings_class = SIRTSettings

    def _prepare(self, y: torch.Tensor, rhs: torch.Tensor, **problem: Any) -> dict[str, Any]:
        super()._prepare(y, rhs, **problem)
        if y.is_complex() or rhs.is_complex():
            raise TypeError("SIRT needs a real operator (real measurements and images); use CGLS for complex data.")
        row_sums = self.operator(torch.ones_like(rhs))
        column_sums = self.operator.adjoint(torch.ones_like(y))
        scale = max(float(row_sums.abs().max()), float(column_sums.abs().max()), 1e-30)
        if float(row_sums.min()) < -1e-6 * scale or float(column_sums.min()) < -1e-6 * scale:
            raise ValueError(
                f"SIRT needs an operator with non-negative row and column sums (A 1 >= 0, A^T 1 >= 0); "
                f"{type(self.operator).__name__} has negative ones."
            )
        eps = 1e-6 * scale
        return {
            "row_weights": torch.where(row_sums > eps, 1 / row_sums.clamp_min(eps), torch.zeros_like(row_sums)),
            "column_weights": torch.where(
                column_sums > eps, 1 / column_sums.clamp_min(eps), torch.zeros_like(column_sums)
            ),
        }

    def _state_residual(self, state: State, y: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        return batch_norm(state["residual"])

    def _run(
        self,
        y: torch.Tensor,
        rhs: torch.Tensor,
        lam: torch.Tensor | None,
        x_init: torch.Tensor | None,
        rules: Sequence[StoppingRule],
        context: dict[str, Any],
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        box = self.settings.box
        omega = self.settings.relaxation
        rows, columns = context["row_weights"], context["column_weights"]
        x = project_box(torch.zeros_like(rhs) if x_init is None else x_init, box)

        def step(state: State) -> State:
            update = columns * self.operator.adjoint(rows * state["residual"])
            new = project_box(state["x"] + omega * update, box)
            return {"x": new, "residual": y - self.operator(new)}

        return iterate(step, {"x": x, "residual": y - self.operator(x)}, self.settings.max_iter, rules)

