"""Classical reconstructions for any :class:`~medgen.physics.base.LinearOperator`: batched, real or complex, CPU/CUDA.

Solvers (``solver = Cls(operator, **settings); x = solver(y)``; ``solver.info`` records iterations, residuals and the
chosen lambda; lambdas and iteration counts are chosen by a fixed value, the reference-free discrepancy principle, or
an oracle against a reference for benchmarks):

- :class:`CGLS`: Tikhonov least squares by CG on the normal equations (CG-SENSE with coil maps).
- :class:`SIRT`: row/column-sum normalised Landweber with an optional box.
- :class:`TVPDHG`: TV-regularised reconstruction (2D/3D, isotropic, box) by Chambolle-Pock PDHG.
- :class:`L1WaveletFISTA`: L1-wavelet reconstruction by FISTA.

By name (:data:`CLASSICAL_METHODS`): :func:`make_solver` and :class:`ClassicalBaseline` (reference-free and oracle
results together: the bundles' baselines).

Building blocks: :func:`cg_solve`, :func:`tv_prox`, :func:`tv_norm`, :func:`finite_differences` (and adjoint),
:func:`soft_threshold`, :func:`wavelet_soft_threshold`, :class:`OrthonormalWavelet`, :func:`project_box`,
:func:`operator_norm`, :func:`estimate_noise_std`, the stopping rules and :func:`iterate`.
"""

from __future__ import annotations

from medgen.solvers.base import LAMBDA_RULES, STOPPING_RULES, Solver, SolverInfo, SolverSettings
from medgen.solvers.cg import CGResult, cg_solve
from medgen.solvers.classical import CLASSICAL_METHODS, CLASSICAL_RULES, ClassicalBaseline, make_solver, run_baselines
from medgen.solvers.cgls import CGLS, CGLSSettings
from medgen.solvers.fista import L1WaveletFISTA, L1WaveletSettings, wavelet_soft_threshold
from medgen.solvers.linalg import (
    batch_inner_product,
    batch_norm,
    num_measurements,
    operator_norm,
    operator_norm_bound,
)
from medgen.solvers.parameter import (
    discrepancy_search,
    discrepancy_target,
    estimate_noise_std,
    oracle_search,
    psnr_per_item,
)
from medgen.solvers.proximal import project_box, soft_threshold
from medgen.solvers.sirt import SIRT, SIRTSettings
from medgen.solvers.stopping import BestIterate, DiscrepancyReached, RelativeChange, StoppingRule, iterate
from medgen.solvers.tv import (
    TVPDHG,
    TVPDHGSettings,
    finite_differences,
    finite_differences_adjoint,
    tv_norm,
    tv_prox,
)
from medgen.solvers.wavelets import OrthonormalWavelet, max_wavelet_levels

__all__ = [
    "LAMBDA_RULES",
    "STOPPING_RULES",
    "Solver",
    "SolverInfo",
    "SolverSettings",
    "CGLS",
    "CGLSSettings",
    "CGResult",
    "cg_solve",
    "SIRT",
    "SIRTSettings",
    "TVPDHG",
    "TVPDHGSettings",
    "L1WaveletFISTA",
    "L1WaveletSettings",
    "CLASSICAL_METHODS",
    "CLASSICAL_RULES",
    "ClassicalBaseline",
    "make_solver",
    "run_baselines",
    "finite_differences",
    "finite_differences_adjoint",
    "tv_norm",
    "tv_prox",
    "soft_threshold",
    "project_box",
    "wavelet_soft_threshold",
    "OrthonormalWavelet",
    "max_wavelet_levels",
    "batch_inner_product",
    "batch_norm",
    "operator_norm",
    "operator_norm_bound",
    "num_measurements",
    "estimate_noise_std",
    "discrepancy_target",
    "discrepancy_search",
    "oracle_search",
    "psnr_per_item",
    "StoppingRule",
    "RelativeChange",
    "DiscrepancyReached",
    "BestIterate",
    "iterate",
]
