"""Writing slice-wise (2D) reconstructions from a bundle run: NIfTI + preview PNG + a JSON of per-slice metrics.

:class:`SliceReconstructionWriter` is :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter` (same files,
same no-overwrite and all-or-nothing rules) with the 2D metrics of :func:`~medgen.engines.metrics.slices.slice_metrics`
and a preview of the slices instead of three mid-planes. :func:`save_slice_comparison_png` draws named 2D images side
by side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgen.engines.metrics.base import as_volume
from medgen.engines.metrics.slices import check_slice_axis, slice_metrics
from medgen.engines.writers.base import save_panel_grid_png
from medgen.engines.writers.reconstruction import ReconstructionWriter

__all__ = ["SliceReconstructionWriter", "save_slice_comparison_png"]


def save_slice_comparison_png(
    panels: Mapping[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    overwrite: bool = False,
    inputs: tuple[str | os.PathLike, ...] | list[str | os.PathLike] = (),
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "gray",
) -> Path:
    """Write a PNG with named 2D images side by side (matplotlib, Agg backend), atomically.

    Args:
        panels: ``{name: image (H, W)}`` shown left to right, each with axis 0 horizontal and axis 1 vertical (origin
            lower left, as :func:`medgen.data.save_orthogonal_slices_png` shows an axial slice).
        path: output file ending in ``.png``.
        title: figure title.
        overwrite: replace an existing ``path`` (never one listed in ``inputs``).
        inputs: paths that must not be overwritten.
        vmin, vmax: display range (``None``: the 0.5 / 99.5 percentiles of all panels).
        cmap: matplotlib colormap name.

    Returns:
        the written path.

    Raises:
        ValueError: no panels or a panel that is not 2D; FileExistsError as :func:`medgen.data.save_nifti`.
    """
    if not panels:
        raise ValueError("panels must hold at least one named image.")
    images = {}
    for name, image in panels.items():
        array = as_volume(image[..., None] if getattr(image, "ndim", 0) == 2 else image, str(name)).numpy()
        if array.ndim != 3 or array.shape[-1] != 1:
            raise ValueError(f"panel {name!r} must be a 2D image (H, W), got shape {tuple(array.shape)}.")
        images[str(name)] = array[..., 0].astype(np.float32)
    everything = np.concatenate([a.ravel() for a in images.values()])
    lo = float(np.percentile(everything, 0.5)) if vmin is None else vmin
    hi = float(np.percentile(everything, 99.5)) if vmax is None else vmax
    return save_panel_grid_png(
        [list(images.items())], path, title=title, overwrite=overwrite, inputs=inputs, vmin=lo, vmax=hi, cmap=cmap
    )


class SliceReconstructionWriter(ReconstructionWriter):
    """Write one slice-wise reconstruction into ``output_dir``: all three files or none, never over a file.

    Files (as :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter`): ``<prefix>.nii.gz`` (float32, the
    MetaTensor's affine or ``affine``), ``<prefix>.png`` and ``<prefix>_metrics.json`` holding ``info``, the seconds
    since :meth:`check`, the volume's shape, affine and statistics, and, with a reference, :func:`slice_metrics` of the
    reconstruction and of each baseline. The preview shows input | strongest baseline | output | reference | |error|
    for the slices along ``slice_axis`` (at most four, evenly spaced).

    Args:
        output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range, staging_dir, write_std: as
            :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter`.
        slice_axis: the axis of the ``(D, H, W)`` volume holding the slices (``-1``: the last, e.g. axial slices of an
            RAS volume).
        win_size: SSIM window of :func:`slice_metrics`.

    Raises:
        ValueError: an empty prefix, one holding a path separator, or a bad ``slice_axis``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "reconstruction",
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
        data_range: float | None = 1.0,
        clip: tuple[float, float] | None = (0.0, 1.0),
        display_range: tuple[float, float] | None = (0.0, 1.0),
        slice_axis: int = -1,
        win_size: int = 11,
        staging_dir: str | os.PathLike | None = None,
        write_std: bool = False,
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs, data_range, clip, display_range,
                         staging_dir, write_std)
        self.slice_axis = check_slice_axis(slice_axis)
        self.win_size = int(win_size)

    def metrics(self, volume: Any, reference: Any) -> dict[str, Any]:
        """:func:`slice_metrics` with this writer's settings."""
        return slice_metrics(volume, reference, self.slice_axis, self.metric_range(reference), self.clip, self.win_size)
