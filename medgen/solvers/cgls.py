"""Tikhonov-regularised least squares by conjugate gradients on the normal equations (CGLS / CG-SENSE).

:class:`CGLS` solves ``min_x ||A x - y||^2 + lam ||x - x_ref||^2`` through the normal equations
``(A^H A + lam I) x = A^H y + lam x_ref`` (CGNR; with :class:`~medgen.physics.mri.CartesianMRI` and coil maps this is
CG-SENSE, Pruessmann et al. 2001). Without Tikhonov (``lam=0``) the iteration count is the regulariser: stop it by
the discrepancy principle (``stopping="discrepancy"``) or at the best PSNR (``stopping="oracle"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_choice
from medgen.solvers.base import STOPPING_RULES, Solver, SolverSettings, check_lam
from medgen.solvers.cg import ResidualBelow, cg_iterate
from medgen.solvers.linalg import batch_norm, per_item
from medgen.solvers.stopping import State, StoppingRule

__all__ = ["CGLSSettings", "CGLS"]


@dataclass(frozen=True)
class CGLSSettings(SolverSettings):
    """Settings of :class:`CGLS` (the shared ones in :class:`~medgen.solvers.base.SolverSettings`).

    Attributes:
        lam: Tikhonov weight ``>= 0`` (a number, a ``(B,)`` tensor, or ``"discrepancy"`` / ``"oracle"`` to choose it;
            the search range multiplies ``(||A^H y|| / ||y||)^2``, a Rayleigh quotient of ``A A^H``).
        stopping: with a numeric ``lam``: ``"tolerance"`` (relative residual of the normal equations below ``tol``),
            ``"discrepancy"`` (early stopping once ``||A x - y||`` reaches the discrepancy target) or ``"oracle"``
            (the iterate of best PSNR). Must be ``"tolerance"`` when ``lam`` is a rule.
        tol: relative residual ``||A^H y + lam x_ref - (A^H A + lam) x|| / ||A^H y + lam x_ref||`` at which to stop.
    """

    max_iter: int = 50
    tol: float = 1e-6
    lam: float | torch.Tensor | str = 0.0
    stopping: str = "tolerance"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lam(self.lam)
        check_choice(self.stopping, "stopping", STOPPING_RULES)
        if isinstance(self.lam, str) and self.stopping != "tolerance":
            raise ValueError(
                f"choose lam ({self.lam!r}) or the stopping ({self.stopping!r}) by a rule, not both: with a lam rule "
                "use stopping='tolerance'."
            )


class CGLS(Solver):
    """Tikhonov-regularised least squares by conjugate gradients on the normal equations (CGLS / CG-SENSE).

    ``x = argmin ||A x - y||^2 + lam ||x - x_ref||^2``, solved as ``(A^H A + lam I) x = A^H y + lam x_ref`` with
    :func:`~medgen.solvers.cg.cg_solve`, starting from ``x0`` (default: ``x_ref``, else zero). Each iteration costs one
    ``A`` and one ``A^H`` (plus one ``A`` with ``stopping="discrepancy"``).

    Example::

        x = CGLS(CartesianMRI(mask, maps), lam=1e-3, max_iter=30)(kspace)          # CG-SENSE with Tikhonov
        x = CGLS(op, stopping="discrepancy", max_iter=100)(y, noise_std=0.01)     # early-stopped CGLS
        x = CGLS(op, lam=0.1)(y, x_ref=prior_image)                               # pulled towards a prior image

    Args:
        operator: the forward operator ``A``.
        settings: fields of :class:`CGLSSettings`.

    Call arguments beyond :meth:`~medgen.solvers.base.Solver.solve`'s: ``x_ref``, the prior image ``(B, ...)``
    shaped like ``A^H y`` (default zero).
    """

    settings_class = CGLSSettings

    def _prepare(self, y: torch.Tensor, rhs: torch.Tensor, x_ref: torch.Tensor | None = None) -> dict[str, Any]:
        return {"x_ref": self._check_image(x_ref, "x_ref", rhs)}

    def _lambda_scale(self, y: torch.Tensor, rhs: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        y_norm = batch_norm(y)
        return (batch_norm(rhs) / torch.where(y_norm > 0, y_norm, torch.ones_like(y_norm))) ** 2

    def _convergence_rule(self, rhs: torch.Tensor, lam: torch.Tensor, context: dict[str, Any]) -> StoppingRule:
        return ResidualBelow(self.settings.tol, self._normal_rhs(rhs, lam, context))

    @staticmethod
    def _normal_rhs(rhs: torch.Tensor, lam: torch.Tensor, context: dict[str, Any]) -> torch.Tensor:
        x_ref = context["x_ref"]
        return rhs if x_ref is None else rhs + per_item(lam, x_ref) * x_ref

    def _run(
        self,
        y: torch.Tensor,
        rhs: torch.Tensor,
        lam: torch.Tensor | None,
        x_init: torch.Tensor | None,
        rules: Sequence[StoppingRule],
        context: dict[str, Any],
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        weight = per_item(lam, rhs)

        def normal_op(x: torch.Tensor) -> torch.Tensor:
            return self.operator.normal(x) + weight * x

        start = context["x_ref"] if x_init is None else x_init
        return cg_iterate(normal_op, self._normal_rhs(rhs, lam, context), start, self.settings.max_iter, rules)
