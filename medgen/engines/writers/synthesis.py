"""Writing a synthesised contrast (cWDM modality translation) with its scores inside the brain mask.

:class:`SynthesisWriter` is a :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter` whose metrics are
:func:`~medgen.engines.metrics.synthesis.masked_synthesis_metrics` in a brain mask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.synthesis import masked_synthesis_metrics
from medgen.engines.writers.reconstruction import ReconstructionWriter

__all__ = ["SynthesisWriter"]


class SynthesisWriter(ReconstructionWriter):
    """Write a synthesised contrast: ``<prefix>.nii.gz``, ``<prefix>.png`` (the preview of three orthogonal mid-planes) and
    ``<prefix>_metrics.json`` with :func:`masked_synthesis_metrics` of the synthesis and of each baseline.

    Args:
        output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range, staging_dir: as
            :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter`.
        mask: the brain mask the metrics are computed in (``None``: every voxel); a call's own ``mask`` replaces it
            for that call (one mask per case when a run writes several cases).
        win_size: SSIM window of :func:`masked_synthesis_metrics`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "synthesis",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        data_range: float = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
        mask: Any | None = None,
        win_size: int = 7,
        staging_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range, staging_dir)
        self.mask = None if mask is None else as_volume(mask, "mask") != 0
        self.win_size = int(win_size)
        self._case: tuple[Any, float, tuple[float, float] | None] = (self.mask, self.data_range, self.clip)

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """:func:`masked_synthesis_metrics` of ``volume`` in the mask and intensity window of the case being written."""
        mask, data_range, clip = self._case
        mask = torch.ones_like(as_volume(reference, "reference")) if mask is None else mask
        return masked_synthesis_metrics(volume, reference, mask, data_range, clip, self.win_size)

    def __call__(  # type: ignore[override]
        self,
        volume: torch.Tensor,
        reference: Any | None = None,
        baselines: Mapping[str, Any] | None = None,
        affine: Any | None = None,
        input: Any | None = None,
        extra: Mapping[str, Any] | None = None,
        mask: Any | None = None,
        window: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Write one synthesis as :meth:`ReconstructionWriter.__call__` does, scored in this case's region and units.

        Args:
            volume, reference, baselines, affine, input, extra: as :meth:`ReconstructionWriter.__call__`.
            mask: this case's region to score, same shape as ``volume`` (``None``: the writer's ``mask``).
            window: ``(low, high)`` intensities of this case: both volumes clipped to it, data range ``high - low``
                (``None``: the writer's ``clip`` and ``data_range``), e.g. a volume written in the input's units.
        """
        mask = self.mask if mask is None else as_volume(mask, "mask") != 0
        if window is None:
            self._case = (mask, self.data_range, self.clip)
        else:
            low, high = (float(v) for v in window)
            if not high > low:
                raise ValueError(f"window must be (low, high) with high > low, got {tuple(window)}.")
            self._case = (mask, high - low, (low, high))
        try:
            return super().__call__(volume, reference, baselines, affine, input, extra)
        finally:
            self._case = (self.mask, self.data_range, self.clip)
