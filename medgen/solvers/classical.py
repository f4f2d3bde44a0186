"""Classical reconstructions by name: the bundles' baselines and the inferers' warm starts.

:func:`make_solver` builds a solver from a method name with its regularisation chosen by a rule: the reference-free
discrepancy principle (``"discrepancy"``, what a user can run) or the oracle (``"oracle"``, highest PSNR against a
reference: the upper bound of benchmarks). :class:`ClassicalBaseline` runs one method with both rules::

    baseline = ClassicalBaseline("tv_pdhg", ParallelBeamCT.padis(64, views=8), box=(0, 1), max_iter=300)
    results = baseline(sinogram, reference=image)   # {"tv_pdhg": reference-free, "tv_pdhg_oracle": oracle}
    baseline.info["tv_pdhg"]                        # the chosen lambda, iterations, residual, ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from medgen.checks import check_choice
from medgen.physics.base import LinearOperator
from medgen.solvers.base import Solver
from medgen.solvers.cgls import CGLS
from medgen.solvers.fista import L1WaveletFISTA
from medgen.solvers.sirt import SIRT
from medgen.solvers.tv import TVPDHG

__all__ = ["CLASSICAL_METHODS", "CLASSICAL_RULES", "make_solver", "ClassicalBaseline", "run_baselines"]

CLASSICAL_METHODS: dict[str, tuple[type[Solver], str]] = {
    "cgls": (CGLS, "lam"),
    "sirt": (SIRT, "stopping"),
    "tv_pdhg": (TVPDHG, "lam"),
    "l1_wavelet": (L1WaveletFISTA, "lam"),
}
"""``{name: (solver class, the setting its rule goes to)}``: CG-SENSE/CGLS with Tikhonov (lambda by the rule), SIRT
(regularised by its iteration count), TV-PDHG and L1-wavelet FISTA (lambda by the rule)."""

CLASSICAL_RULES = ("discrepancy", "oracle")
"""How a named method chooses its regularisation: reference-free, or against a reference."""


def make_solver(method: str, operator: LinearOperator, rule: str = "discrepancy", **settings: Any) -> Solver:
    """The solver ``method`` of :data:`CLASSICAL_METHODS` for ``operator`` with its regularisation chosen by ``rule``.

    Args:
        method: a name of :data:`CLASSICAL_METHODS`.
        operator: the forward operator.
        rule: ``"discrepancy"`` (reference-free) or ``"oracle"`` (needs ``reference`` in the solve).
        settings: further settings of the solver (e.g. ``max_iter``, ``box``, ``spatial_dims``).

    Raises:
        ValueError: an unknown ``method`` or ``rule``, or settings the solver refuses.
        TypeError: ``operator`` is not a ``LinearOperator``, or an unknown setting.
    """
    check_choice(method, "method", tuple(CLASSICAL_METHODS))
    check_choice(rule, "rule", CLASSICAL_RULES)
    solver_class, parameter = CLASSICAL_METHODS[method]
    if parameter in settings:
        raise ValueError(f"{parameter} of {method!r} is chosen by rule={rule!r}; do not pass {parameter}.")
    return solver_class(operator, **{parameter: rule}, **settings)


class ClassicalBaseline:
    """A classical reconstruction, reference-free and (given a reference) oracle-tuned: the bundles' baselines.

    Args:
        method: a name of :data:`CLASSICAL_METHODS`.
        operator: the forward operator ``A``.
        name: the result's key (default ``method``); the oracle result is ``<name>_oracle``.
        settings: settings of the solver (see :func:`make_solver`), shared by both rules.

    Attributes:
        info: ``{key: solver info as JSON (lambda, iterations, residual, ...)}`` of the last call (no run time, so
            that a run's summary repeats exactly; ``benchmarks/bench_classical.py`` measures the time).

    Raises:
        ValueError, TypeError: as :func:`make_solver`, at construction (before any solve).
    """

    def __init__(self, method: str, operator: LinearOperator, name: str | None = None, **settings: Any) -> None:
        self.solvers = {rule: make_solver(method, operator, rule, **settings) for rule in CLASSICAL_RULES}
        self.method = method
        self.name = method if name is None else str(name)
        self.info: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"ClassicalBaseline({self.solvers['discrepancy']!r}, name={self.name!r})"

    def __call__(self, measurement: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruct ``measurement`` ``(B, ...)`` reference-free, and by the oracle when ``reference`` is given.

        Args:
            measurement: ``y`` in the operator's range.
            reference: the ground truth shaped like ``A^H y`` (a real reference with complex images is compared in
                magnitude), or ``None``.

        Returns:
            ``{name: x}`` and, with a reference, ``{name + "_oracle": x}``: images shaped like ``A^H y``.
        """
        self.info = {}
        results = {}
        for rule, solver in self.solvers.items():
            if rule == "oracle" and reference is None:
                continue
            key = self.name if rule == "discrepancy" else f"{self.name}_{rule}"
            results[key], info = solver.solve(measurement, reference=reference if rule == "oracle" else None)
            self.info[key] = info.to_dict()
        return results


def run_baselines(
    baselines: Sequence[ClassicalBaseline],
    measurement: torch.Tensor,
    reference: torch.Tensor | None = None,
    transform: Callable[[torch.Tensor], Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run several baselines on one measurement: their images (through ``transform``) and their info, by key.

    Args:
        baselines: the baselines (their keys must differ).
        measurement, reference: as :meth:`ClassicalBaseline.__call__`.
        transform: applied to every image (e.g. back to the caller's layout or units), or ``None``.

    Returns:
        ``(images, info)``: ``{key: image}`` and ``{key: solver info}`` of every baseline and rule.

    Raises:
        TypeError: an entry is not a :class:`ClassicalBaseline`.
        ValueError: two baselines share a name.
    """
    images: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    names = [getattr(b, "name", None) for b in baselines]
    for baseline in baselines:
        if not isinstance(baseline, ClassicalBaseline):
            raise TypeError(f"baselines must hold ClassicalBaseline objects, got {type(baseline).__name__}.")
    if len(set(names)) != len(names):
        raise ValueError(f"baselines must have different names, got {names}.")
    for baseline in baselines:
        for key, image in baseline(measurement, reference).items():
            images[key] = image if transform is None else transform(image)
        info.update(baseline.info)
    return images, info
