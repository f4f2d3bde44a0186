"""The one preview style of every bundle: input | strongest baseline | output | reference | |error|.

Each column is one volume (or stack of slices) shown on its own display range; each row is one plane: the three
orthogonal mid-planes of a volume (sagittal, coronal, axial, as :data:`~medgen.engines.metrics.PLANE_NAMES` names
them), or the slices of a 2D stack. The baseline and the output carry their scores against the reference in their
titles (``PSNR 25.73 dB / SSIM 0.859``). Columns without data (no input to show, no baseline, no reference) are left
out, so an unconditional sample is one column.

:func:`preview_columns` builds the columns from what a writer has; :func:`save_preview_png` draws them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medgen.engines.metrics.reconstruction import PLANE_NAMES

__all__ = ["PreviewColumn", "preview_columns", "save_preview_png", "format_scores", "strongest_baseline"]


@dataclass(frozen=True)
class PreviewColumn:
    """One column of a preview.

    Attributes:
        title: the column's title (may hold a second line with scores).
        volume: ``(X, Y, Z)`` array (a 2D image is ``(X, Y, 1)``).
        vmin, vmax: its display range.
        cmap: matplotlib colormap.
    """

    title: str
    volume: np.ndarray
    vmin: float
    vmax: float
    cmap: str = "gray"


def format_scores(metrics: Mapping[str, Any] | None) -> str:
    """``"PSNR 25.73 dB / SSIM 0.859"`` from a metrics dict (an SSIM dict contributes its ``mean``), or ``""``."""
    if not metrics:
        return ""
    parts = []
    if isinstance(metrics.get("psnr"), (int, float)):
        parts.append(f"PSNR {metrics['psnr']:.2f} dB")
    ssim = metrics.get("ssim")
    ssim = ssim.get("mean") if isinstance(ssim, Mapping) else ssim
    if isinstance(ssim, (int, float)):
        parts.append(f"SSIM {ssim:.3f}")
    return " / ".join(parts)


def strongest_baseline(
    baselines: Mapping[str, Any], scores: Mapping[str, Mapping[str, Any]] | None = None
) -> str | None:
    """The baseline with the highest PSNR in ``scores`` (the first one without scores), or ``None``."""
    if not baselines:
        return None
    scored = [(float(scores[name]["psnr"]), name) for name in baselines if scores
              and isinstance(scores.get(name), Mapping) and isinstance(scores[name].get("psnr"), (int, float))]
    return max(scored)[1] if scored else next(iter(baselines))


def _as_volume(x: Any) -> np.ndarray:
    array = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if np.iscomplexobj(array):
        array = np.abs(array)
    array = array.astype(np.float32)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"a preview column must be one volume (X, Y, Z) or image (X, Y), got shape {array.shape}.")
    return array


def _range(volume: np.ndarray) -> tuple[float, float]:
    low, high = (float(v) for v in np.percentile(volume, [0.5, 99.5]))
    return (low, high if high > low else low + 1.0)


def preview_columns(
    output: Any,
    *,
    input: Any | None = None,
    baselines: Mapping[str, Any] | None = None,
    reference: Any | None = None,
    scores: Mapping[str, Any] | None = None,
    baseline_scores: Mapping[str, Mapping[str, Any]] | None = None,
    output_name: str = "output",
    input_name: str = "input",
    display_range: tuple[float | None, float | None] | None = None,
    input_display: tuple[float, float] | None = None,
    input_cmap: str = "gray",
) -> list[PreviewColumn]:
    """The preview's columns: input | strongest baseline | output | reference | |error|.

    Args:
        output: the run's result (``(X, Y, Z)``, leading singleton axes allowed; complex: magnitudes).
        input: what the run was given, in a displayable form (e.g. a low-resolution volume, a label map, log-k-space
            magnitudes), or ``None``.
        baselines: named baseline results on the output's grid; the strongest (highest PSNR) is shown.
        reference: the ground truth on the output's grid, or ``None``.
        scores: the output's metrics against the reference (PSNR/SSIM go into its title).
        baseline_scores: ``{name: metrics}`` of the baselines.
        output_name: the output column's title.
        input_name: the input column's title.
        display_range: display range of output, baseline and reference (default: the reference's, else the output's
            0.5 / 99.5 percentiles); the error column shows ``[0, (vmax - vmin) / 4]``.
        input_display: display range of the input (default: its own percentiles).
        input_cmap: colormap of the input (e.g. ``"tab10"`` for a label map).

    Returns:
        the columns, in order, without the ones that have no data.
    """
    out = _as_volume(output)
    ref = None if reference is None else _as_volume(reference)
    low, high = display_range if display_range is not None else (None, None)
    if low is None or high is None:
        auto = _range(ref if ref is not None else out)
        low, high = (auto[0] if low is None else low), (auto[1] if high is None else high)
    columns = []
    if input is not None:
        image = _as_volume(input)
        vmin, vmax = input_display if input_display is not None else _range(image)
        columns.append(PreviewColumn(input_name, image, vmin, vmax, input_cmap))
    name = strongest_baseline(baselines or {}, baseline_scores)
    if name is not None:
        text = format_scores((baseline_scores or {}).get(name))
        columns.append(PreviewColumn(name + (f"\n{text}" if text else ""), _as_volume(baselines[name]), low, high))
    text = format_scores(scores)
    columns.append(PreviewColumn(output_name + (f"\n{text}" if text else ""), out, low, high))
    if ref is not None:
        columns.append(PreviewColumn("reference", ref, low, high))
        if ref.shape == out.shape:
            columns.append(PreviewColumn("|output - reference|", np.abs(out - ref), 0.0, (high - low) / 4, "magma"))
    return columns


def _rows(volume: np.ndarray, slice_axis: int | None, max_rows: int) -> list[tuple[str, np.ndarray]]:
    """The 2D images of a column: three orthogonal mid-planes, or the slices along ``slice_axis``."""
    if slice_axis is None:
        return [(plane, volume.take(volume.shape[axis] // 2, axis=axis)) for axis, plane in enumerate(PLANE_NAMES)]
    count = volume.shape[slice_axis]
    picks = sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, max_rows))})
    return [(f"slice {k}", volume.take(k, axis=slice_axis)) for k in picks]


def save_preview_png(
    path: str | os.PathLike,
    columns: Sequence[PreviewColumn],
    slice_axis: int | None = None,
    title: str | None = None,
    max_rows: int = 4,
    panel_size: float = 2.6,
    save: Callable[[Path, Callable[[Path], Any]], Path] | None = None,
) -> Path:
    """Draw ``columns`` as one PNG: one row per plane (three orthogonal mid-planes, or slices along ``slice_axis``).

    Each image is shown with its first axis horizontal and its second vertical, origin lower left (for an RAS volume:
    patient left on the left), as :func:`medgen.data.save_orthogonal_slices_png` shows it; an image more than four
    times longer than wide is stretched to its panel.

    Args:
        path: the PNG file.
        columns: from :func:`preview_columns`.
        slice_axis: ``None`` for volumes (three mid-planes); the slice axis of a 2D stack (one row per slice, at
            most ``max_rows`` evenly spaced).
        title: figure title.
        max_rows: most slices shown for a 2D stack.
        panel_size: size of a panel in inches.
        save: ``save(path, write)`` writes the file through ``write(temporary_path)`` (e.g. a writer's staging);
            default: write ``path`` directly.

    Returns:
        the written path.

    Raises:
        ValueError: no columns or ``path`` not ending in ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if not columns:
        raise ValueError("columns must hold at least one column.")
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"path must end with .png, got {str(path)!r}.")
    grid = [_rows(column.volume, slice_axis, max_rows) for column in columns]
    rows = max(len(g) for g in grid)
    figure = Figure(figsize=(panel_size * len(columns) + 0.6, panel_size * rows + 0.8), dpi=100)
    for c, (column, images) in enumerate(zip(columns, grid)):
        for r, (plane, image) in enumerate(images):
            axis = figure.add_subplot(rows, len(columns), r * len(columns) + c + 1)
            shape = np.asarray(image).shape
            # a very elongated image (e.g. a sinogram of a few views) is stretched to the panel to stay readable
            aspect = "auto" if max(shape) > 4 * max(min(shape), 1) else "equal"
            axis.imshow(np.asarray(image).T, cmap=column.cmap, vmin=column.vmin, vmax=column.vmax, origin="lower",
                        interpolation="nearest", aspect=aspect)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(column.title, fontsize=8)
            if c == 0:
                axis.set_ylabel(plane, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    target = Path(path)

    def write(file: Path) -> None:
        figure.savefig(str(file), format="png")

    if save is not None:
        return save(target, write)
    target.parent.mkdir(parents=True, exist_ok=True)
    write(target)
    return target
