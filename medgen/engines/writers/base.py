"""What every output writer of a bundle run shares: prefix-named files, the no-overwrite check, atomic writes.

:class:`OutputWriter` is what every medgen writer shares: files named from a prefix in an output folder
(:meth:`OutputWriter.target`), a :meth:`OutputWriter.check` that refuses, BEFORE a long sampling or reconstruction
starts, to write over existing outputs (unless ``overwrite``) or ever over an input file, the run time since that
check, and atomic writes (a temporary file in the target folder, then :func:`os.replace`): NIfTI and orthogonal-slice
PNGs through :func:`medgen.data.save_nifti` / :func:`medgen.data.save_orthogonal_slices_png`, the JSON summary,
matplotlib figures (:func:`save_panel_grid_png`) and any other file
(:func:`~medgen.engines.writers.atomic.write_atomically`). Subclasses only say which files they write
(:meth:`OutputWriter.paths`) and what goes into them:

- :class:`~medgen.engines.writers.generated.GeneratedVolumeWriter`: a batch of unconditionally generated volumes and
  their statistics;
- :class:`~medgen.engines.writers.reconstruction.ReconstructionWriter` and its 2D variant
  :class:`~medgen.engines.writers.slices.SliceReconstructionWriter`: a reconstruction and its metrics;
- :class:`~medgen.engines.writers.kspace.KspaceReconstructionWriter`: multi-coil MRI slices and HFS-SDE's metrics;
- :class:`~medgen.engines.writers.semantic.SemanticSynthesisWriter`: label-conditioned volumes and class statistics.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.data.io import save_nifti, save_orthogonal_slices_png
from medgen.engines.writers.atomic import write_atomically

__all__ = ["OutputWriter", "as_affine", "save_panel_grid_png", "volume_statistics"]


def volume_statistics(volume: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """``min``, ``max``, ``mean``, ``std``, ``p01``, ``p99`` of a volume (and ``fraction_above_threshold``)."""
    data = np.asarray(volume, dtype=np.float64)
    stats = {
        "min": float(data.min()),
        "max": float(data.max()),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "p01": float(np.percentile(data, 1)),
        "p99": float(np.percentile(data, 99)),
    }
    if threshold is not None:
        stats["fraction_above_threshold"] = float((data > threshold).mean())
    return stats


def as_affine(affine: Any | None = None, volume: Any | None = None, index: int = 0) -> np.ndarray:
    """The 4x4 float64 voxel-to-world matrix to write with a volume.

    Args:
        affine: the affine to use (``(4, 4)`` or a batch ``(B, 4, 4)``; tensor or array), or ``None``.
        volume: with ``affine=None``: a MetaTensor whose ``affine`` is used; identity for anything else.
        index: the batch item whose affine is taken from a batch of affines (a single affine serves every item).

    Returns:
        ``(4, 4)`` float64 array.
    """
    if affine is None:
        affine = volume.affine if isinstance(volume, MetaTensor) else torch.eye(4, dtype=torch.float64)
    affines = torch.as_tensor(affine, dtype=torch.float64).detach().cpu().reshape(-1, 4, 4)
    return affines[index if affines.shape[0] > 1 else 0].numpy()


def save_panel_grid_png(
    rows: Sequence[Sequence[tuple[str, Any]]],
    path: str | os.PathLike,
    title: str | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "gray",
    panel_size: tuple[float, float] = (3.0, 3.0),
    fontsize: float = 9,
    title_fontsize: float | None = None,
) -> Path:
    """Write a PNG of titled 2D images in a grid (matplotlib, Agg backend), atomically.

    Every image is shown with axis 0 horizontal and axis 1 vertical, origin lower left (as
    :func:`medgen.data.save_orthogonal_slices_png` shows an axial slice of an RAS volume), on one display range.

    Args:
        rows: the grid, row by row, each a sequence of ``(panel title, image (H, W) array)``; all rows as long as
            the first.
        path: output file ending in ``.png``.
        title: figure title (``None``: none).
        overwrite: replace an existing ``path`` (never one listed in ``inputs``).
        inputs: paths that must not be overwritten.
        vmin, vmax: display range (``None``: matplotlib's image range).
        cmap: matplotlib colormap name.
        panel_size: ``(width, height)`` of a panel in inches; the figure adds 0.4 inch for the title.
        fontsize: size of the panel titles.
        title_fontsize: size of the figure title (``None``: matplotlib's default).

    Returns:
        the written path.

    Raises:
        ValueError: an empty grid, rows of different lengths, or ``path`` not ending in ``.png`` or an input.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError("rows must be a non-empty grid: rows of (title, image) pairs, all of the same length.")
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"path must end with .png, got {str(path)!r}.")
    columns = len(rows[0])
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * len(rows) + 0.4), dpi=100)
    for r, row in enumerate(rows):
        for c, (name, image) in enumerate(row):
            axis = figure.add_subplot(len(rows), columns, r * columns + c + 1)
            axis.imshow(np.asarray(image).T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest")
            axis.set_title(name, fontsize=fontsize)
            axis.axis("off")
    if title:
        figure.suptitle(title, **({} if title_fontsize is None else {"fontsize": title_fontsize}))
    figure.tight_layout()
    return write_atomically(path, lambda tmp: figure.savefig(str(tmp), format="png"), overwrite, inputs)


class OutputWriter:
    """Base of the bundles' output writers: prefix-named files in one folder, never over existing outputs or inputs.

    A subclass says which files it writes (:meth:`paths`, built with :meth:`target`; the default is one result's
    NIfTI, PNG and metrics JSON) and writes them in its ``__call__``; the base gives the rest. A bundle's ``run``
    calls :meth:`check` first, so a run whose outputs exist stops BEFORE the long computation, then the writer::

        writer.check()                      # FileExistsError / ValueError now, not after sampling
        writer(result, ...)                 # NIfTI + PNG + JSON, each written atomically

    Args:
        output_dir: folder of the outputs (created when writing).
        prefix: file-name prefix, e.g. ``"wdm_seed0"``.
        info: JSON-serialisable settings recorded in the JSON summary (seed, steps, checkpoint, ...).
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``); an input is never replaced.
        inputs: paths the result was computed from, never written over (empty entries such as ``None`` are skipped).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str,
        info: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> None:
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix without '/', got {prefix!r}.")
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.info = dict(info or {})
        self.overwrite = bool(overwrite)
        self.inputs = tuple(str(p) for p in inputs if p)
        self._started: float | None = None

    def target(self, suffix: str) -> Path:
        """The output ``output_dir / (prefix + suffix)``, e.g. ``target("_metrics.json")``."""
        return self.output_dir / f"{self.prefix}{suffix}"

    def paths(self, *args: Any) -> dict[str, Path | list[Path]]:
        """The files a call writes, by role (a role may name a list of files; ``args`` as :meth:`check`'s).

        This default is the layout of one result: ``{"nifti": <prefix>.nii.gz, "png": <prefix>.png, "metrics":
        <prefix>_metrics.json}``; writers of other files override it.
        """
        return {"nifti": self.target(".nii.gz"), "png": self.target(".png"), "metrics": self.target("_metrics.json")}

    def check(self, *args: Any) -> None:
        """Raise before any long computation if an output exists or is an input (and start the clock).

        Args:
            args: what decides the outputs, passed to :meth:`paths` (e.g. the number of samples).

        Raises:
            ValueError: an output path is one of ``inputs``.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        outputs: list[Path] = []
        for entry in self.paths(*args).values():
            outputs.extend(entry if isinstance(entry, list) else [entry])
        for path in outputs:
            if any(Path(p).resolve() == path.resolve() for p in self.inputs):
                raise ValueError(f"refusing to write the output over the input file '{path}'; choose another prefix.")
        existing = [p for p in outputs if p.exists()]
        if existing and not self.overwrite:
            raise FileExistsError(
                f"outputs exist: {', '.join(map(str, existing[:4]))}{' ...' if len(existing) > 4 else ''}; choose "
                "another output_dir or seed, or pass overwrite=True."
            )
        self._started = time.perf_counter()

    def seconds_since_check(self, *args: Any) -> float:
        """Seconds since :meth:`check` (run now with ``args`` if the caller did not: the outputs are checked anyway)."""
        if self._started is None:
            self.check(*args)
        return time.perf_counter() - (self._started or time.perf_counter())

    def save_nifti(self, array: np.ndarray, path: Path, affine: np.ndarray) -> Path:
        """Write ``array`` as NIfTI (float32, ``affine``) with this writer's overwrite and input rules."""
        return save_nifti(array, path, affine=affine, overwrite=self.overwrite, inputs=self.inputs)

    def save_volume(
        self,
        array: np.ndarray,
        nifti: Path,
        png: Path,
        affine: np.ndarray,
        title: str | None = None,
        display_range: tuple[float | None, float | None] = (None, None),
    ) -> dict[str, Any]:
        """Write ``array`` ``(D, H, W)`` as NIfTI and as a PNG of its orthogonal mid-slices on ``display_range``.

        Returns:
            :meth:`describe` of the written files.
        """
        self.save_nifti(array, nifti, affine)
        save_orthogonal_slices_png(
            array, png, title=title, overwrite=self.overwrite, inputs=self.inputs,
            vmin=display_range[0], vmax=display_range[1],
        )
        return self.describe(array, affine, nifti=nifti, png=png)

    @staticmethod
    def describe(array: np.ndarray, affine: np.ndarray, **files: Path) -> dict[str, Any]:
        """``{role: file name, ..., "shape": array shape, "affine": 4x4 list}``: a written volume in a JSON summary."""
        names = {role: path.name for role, path in files.items()}
        return {**names, "shape": list(array.shape), "affine": affine.tolist()}

    def write_summary(self, path: Path, content: dict[str, Any]) -> dict[str, Any]:
        """Write ``content`` as indented JSON atomically (values JSON cannot hold as ``str``) and stop the clock.

        Returns:
            ``content``.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        text = json.dumps(content, indent=2, default=str)
        write_atomically(path, lambda tmp: tmp.write_text(text), self.overwrite, self.inputs)
        self._started = None
        return content


