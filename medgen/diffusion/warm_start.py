"""Warm starts: begin the reverse diffusion from a noised classical reconstruction at an intermediate noise level.

Come-closer-diffuse-faster (Chung, Sim and Ye, CVPR 2022, arXiv 2112.05146): a good estimate ``x0`` (a classical
reconstruction) noised to the level ``sigma_k`` of step ``k`` is a sample of (nearly) the marginal the sampler expects
there, so the steps before ``k`` (and their network calls) can be skipped. :class:`WarmStart` holds the settings and
does what every reconstruction inferer shares; the inferer supplies its schedule's noise levels and how its process
noises an image (``x0 + sigma z`` for VE/EDM, :meth:`~medgen.diffusion.sde.SDE.perturb` for VP/HFS)::

    warm = WarmStart("cgls", sigma=0.5)                     # or a tensor estimate, or start_step=k
    start = warm.first_step(noise_levels)                   # 0: the cold path, unchanged
    if start:
        x = perturb(warm.estimate(operator, y), start)       # noised to the level of step ``start``
    loop.run({"x": x}, step, generator=generator, start_step=start)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from medgen.physics.base import LinearOperator

__all__ = ["WarmStart"]


@dataclass(frozen=True)
class WarmStart:
    """Where and from what the reverse diffusion starts.

    Attributes:
        estimate: ``None`` (cold start: the sampler's own initialisation), the name of a classical method of
            :data:`medgen.solvers.CLASSICAL_METHODS` (run on the call's measurement with its regularisation chosen by
            the reference-free discrepancy principle), or a tensor in the inferer's image layout and units (see each
            inferer).
        sigma: start at the first step whose noise level (data units) is at most this; or
        start_step: start at this step (``0``: the full schedule, which is exactly the cold path). Exactly one of
            ``sigma`` and ``start_step`` is given with an estimate, neither without.
        solver_settings: settings of the named classical method (e.g. ``{"max_iter": 100}``).

    Raises:
        ValueError: an unknown method name, a non-positive ``sigma``, a negative ``start_step``, both or neither of
            them with an estimate, or either without one.
        TypeError: an estimate that is neither ``None``, a string nor a tensor.
    """

    estimate: str | torch.Tensor | None = None
    sigma: float | None = None
    start_step: int | None = None
    solver_settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from medgen.solvers.classical import CLASSICAL_METHODS

        if self.estimate is None:
            if self.sigma is not None or self.start_step is not None:
                raise ValueError(
                    f"warm_start_sigma ({self.sigma!r}) and warm_start_step ({self.start_step!r}) need a warm_start "
                    "estimate (a classical method name or a tensor), got warm_start=None."
                )
            return
        if isinstance(self.estimate, str):
            if self.estimate not in CLASSICAL_METHODS:
                raise ValueError(
                    f"warm_start must be None, a tensor or one of {tuple(CLASSICAL_METHODS)}, got {self.estimate!r}."
                )
        elif not isinstance(self.estimate, torch.Tensor):
            raise TypeError(f"warm_start must be None, a method name or a tensor, got {type(self.estimate).__name__}.")
        if (self.sigma is None) == (self.start_step is None):
            raise ValueError(
                "a warm start needs exactly one of warm_start_sigma and warm_start_step, got "
                f"warm_start_sigma={self.sigma!r}, warm_start_step={self.start_step!r}."
            )
        if self.sigma is not None and (
            isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not 0 < self.sigma < math.inf
        ):
            raise ValueError(f"warm_start_sigma must be a finite number > 0, got {self.sigma!r}.")
        if self.start_step is not None and (
            isinstance(self.start_step, bool) or not isinstance(self.start_step, int) or self.start_step < 0
        ):
            raise ValueError(f"warm_start_step must be an integer >= 0, got {self.start_step!r}.")
        if not isinstance(self.solver_settings, Mapping):
            raise TypeError(f"solver_settings must be a mapping, got {type(self.solver_settings).__name__}.")

    @property
    def active(self) -> bool:
        """Whether an estimate is given (the start may still be step 0, the cold path)."""
        return self.estimate is not None

    def first_step(self, noise_levels: Sequence[float] | torch.Tensor) -> int:
        """The step the loop starts at, given the noise level (data units) at the start of every step.

        Args:
            noise_levels: decreasing noise levels, one per loop step.

        Returns:
            ``0`` without an estimate; else ``start_step``, or the first step whose level is at most ``sigma``.

        Raises:
            ValueError: ``start_step`` is not below the number of steps, or ``sigma`` is below the last level.
        """
        levels = [float(v) for v in (noise_levels.tolist() if isinstance(noise_levels, torch.Tensor) else noise_levels)]
        if not self.active:
            return 0
        if self.start_step is not None:
            if self.start_step >= len(levels):
                raise ValueError(f"warm_start_step must be below the {len(levels)} steps, got {self.start_step}.")
            return self.start_step
        for step, level in enumerate(levels):
            if level <= self.sigma:
                return step
        raise ValueError(
            f"warm_start_sigma={self.sigma} is below the last step's noise level {levels[-1]:.4g}; choose a larger one."
        )

    def reconstruct(self, operator: LinearOperator, y: torch.Tensor) -> torch.Tensor:
        """The estimate: the given tensor (on ``y``'s device, in its real dtype), or the named classical method's
        reference-free reconstruction of ``y`` (``(B, ...)``, shaped like ``A^H y``)."""
        if isinstance(self.estimate, torch.Tensor):
            dtype = self.estimate.dtype if self.estimate.is_complex() else y.real.dtype
            return self.estimate.detach().to(device=y.device, dtype=dtype)
        from medgen.solvers.classical import make_solver

        assert isinstance(self.estimate, str)
        return make_solver(self.estimate, operator, "discrepancy", **dict(self.solver_settings))(y)

    def to_json(self) -> dict[str, Any] | None:
        """The settings for a run fingerprint (a tensor estimate as its digest), ``None`` without an estimate."""
        from medgen.diffusion.loop import to_json

        if not self.active:
            return None
        return {"estimate": to_json(self.estimate), "sigma": self.sigma, "start_step": self.start_step,
                "solver_settings": to_json(dict(self.solver_settings))}
