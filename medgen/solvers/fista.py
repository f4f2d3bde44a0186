"""L1-wavelet regularised reconstruction by FISTA, and the wavelet-domain soft-thresholding prox it uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medgen.checks import check_bool, check_choice
from medgen.solvers.base import Solver, SolverSettings, check_lam, check_positive
from medgen.solvers.linalg import operator_norm_bound, per_item
from medgen.solvers.proximal import soft_threshold
from medgen.solvers.stopping import State, StoppingRule, iterate
from medgen.solvers.wavelets import OrthonormalWavelet

__all__ = ["wavelet_soft_threshold", "L1WaveletSettings", "L1WaveletFISTA"]


def wavelet_soft_threshold(
    x: torch.Tensor,
    threshold: float | torch.Tensor,
    transform: OrthonormalWavelet,
    shrink_approximation: bool = False,
) -> torch.Tensor:
    """The proximal map of ``threshold * ||detail(W x)||_1``: ``W^H soft(W x)`` with the approximation kept.

    Exact because ``W`` is orthonormal. Complex images shrink the modulus of each coefficient and keep its phase.

    Args:
        x: images ``(B, ..., *spatial)``, real or complex.
        threshold: ``>= 0``, a number or ``(B,)`` tensor.
        transform: the wavelet ``W``.
        shrink_approximation: also threshold the coarsest approximation (the L1 norm of all coefficients, as sigpy's
            ``L1WaveletRecon``).

    Returns:
        tensor like ``x``.
    """
    coefficients = transform(x)
    if isinstance(threshold, torch.Tensor) and threshold.ndim == 1:
        threshold = per_item(threshold, x)
    shrunk = soft_threshold(coefficients, threshold)
    if not shrink_approximation:
        shrunk = torch.where(transform.detail_mask(x.shape, x.device), shrunk, coefficients)
    return transform.adjoint(shrunk)


@dataclass(frozen=True)
class L1WaveletSettings(SolverSettings):
    """Settings of :class:`L1WaveletFISTA` (the shared ones in :class:`~medgen.solvers.base.SolverSettings`).

    Attributes:
        lam: L1 weight ``>= 0`` (a number, a ``(B,)`` tensor, or ``"discrepancy"`` / ``"oracle"`` to choose it; the
            search range multiplies ``max |A^H y|``).
        wavelet: orthogonal PyWavelets wavelet name.
        levels: wavelet levels (``None``: the most the image size and filter allow).
        spatial_dims: number of trailing spatial axes (2 or 3; 1 works too).
        shrink_approximation: also penalise the coarsest approximation coefficients.
        operator_norm: ``||A||`` if known (used as is); ``None``: estimated by power iteration, times 1.01.
    """

    max_iter: int = 200
    tol: float = 1e-4
    lam: float | torch.Tensor | str = "discrepancy"
    wavelet: str = "db4"
    levels: int | None = None
    spatial_dims: int = 2
    shrink_approximation: bool = False
    operator_norm: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lam(self.lam)
        check_choice(self.spatial_dims, "spatial_dims", (1, 2, 3))
        OrthonormalWavelet(self.wavelet, self.levels, self.spatial_dims)  # validates wavelet and levels
        check_bool(self.shrink_approximation, "shrink_approximation")
        check_positive(self.operator_norm, "operator_norm", optional=True)


class L1WaveletFISTA(Solver):
    """L1-wavelet reconstruction ``argmin_x 1/2 ||A x - y||^2 + lam ||detail(W x)||_1`` by FISTA.

    ``W`` is an :class:`~medgen.solvers.wavelets.OrthonormalWavelet` over the last ``spatial_dims`` axes; the
    coarsest approximation is not penalised (unless ``shrink_approximation``). FISTA (Beck & Teboulle 2009) with the
    constant step ``1 / L``, ``L = ||A||^2``::

        x_k+1 = prox_{lam / L}(z_k - A^H (A z_k - y) / L)      (prox: :func:`wavelet_soft_threshold`)
        t_k+1 = (1 + sqrt(1 + 4 t_k^2)) / 2;   z_k+1 = x_k+1 + (t_k - 1) / t_k+1 (x_k+1 - x_k)

    one ``A`` and one ``A^H`` per iteration; ``L`` per item. Complex images are thresholded in modulus (phase kept).
    With ``A`` the identity and ``operator_norm=1`` the first iterate is already the exact minimiser.

    Example::

        x = L1WaveletFISTA(CartesianMRI(mask, maps), lam="discrepancy", wavelet="db4")(kspace)

    Args:
        operator: the forward operator ``A``.
        settings: fields of :class:`L1WaveletSettings`.
    """

    settings_class = L1WaveletSettings

    def _prepare(self, y: torch.Tensor, rhs: torch.Tensor, **problem: Any) -> dict[str, Any]:
        super()._prepare(y, rhs, **problem)
        s = self.settings
        transform = OrthonormalWavelet(s.wavelet, s.levels, s.spatial_dims)
        if rhs.ndim < s.spatial_dims + 1:
            raise ValueError(f"A^H y must be (B, ..., *spatial) with {s.spatial_dims} spatial axes, got {rhs.shape}.")
        transform.levels_for(rhs.shape)  # raises on sizes the wavelet cannot take
        return {"operator_norm": operator_norm_bound(self.operator, rhs, s.operator_norm), "transform": transform}

    def _run(
        self,
        y: torch.Tensor,
        rhs: torch.Tensor,
        lam: torch.Tensor | None,
        x_init: torch.Tensor | None,
        rules: Sequence[StoppingRule],
        context: dict[str, Any],
    ) -> tuple[State, torch.Tensor, torch.Tensor]:
        transform = context["transform"]
        lipschitz = context["operator_norm"] ** 2
        step = per_item(1 / lipschitz, rhs)
        threshold = lam / lipschitz
        shrink_approximation = self.settings.shrink_approximation

        def fista_step(state: State) -> State:
            z, t = state["z"], state["t"]
            gradient = self.operator.adjoint(self.operator(z) - y)
            x = wavelet_soft_threshold(z - step * gradient, threshold, transform, shrink_approximation)
            t_next = (1 + torch.sqrt(1 + 4 * t**2)) / 2
            z_next = x + per_item((t - 1) / t_next, x) * (x - state["x"])
            return {"x": x, "z": z_next, "t": t_next}

        x = torch.zeros_like(rhs) if x_init is None else x_init.clone()
        state = {"x": x, "z": x.clone(), "t": torch.ones_like(lipschitz)}
        return iterate(fista_step, state, self.settings.max_iter, rules)
