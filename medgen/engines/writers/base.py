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
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.checks import check_finite, check_folder
from medgen.data.io import save_nifti
from medgen.engines.writers.atomic import write_atomically
from medgen.engines.writers.preview import PreviewColumn, save_preview_png
from medgen.engines.writers.staging import OutputStaging, recover_staging

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

    Raises:
        ValueError: the affine holds NaN/Inf or its 3x3 part is singular (a NIfTI could not place the volume).
    """
    if affine is None:
        affine = volume.affine if isinstance(volume, MetaTensor) else torch.eye(4, dtype=torch.float64)
    affines = torch.as_tensor(affine, dtype=torch.float64).detach().cpu().reshape(-1, 4, 4)
    chosen = affines[index if affines.shape[0] > 1 else 0]
    if not bool(torch.isfinite(chosen).all()) or float(torch.linalg.det(chosen[:3, :3]).abs()) == 0.0:
        raise ValueError(f"affine must be a finite, invertible 4x4 voxel-to-world matrix, got {chosen.tolist()}.")
    return chosen.numpy()


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
    """Base of the bundles' output writers: prefix-named files in one folder, all written or none, never over a file.

    A subclass says which files it writes (:meth:`paths`, built with :meth:`target`; the default is one result's
    NIfTI, PNG and metrics JSON) and writes them in its ``__call__`` inside :meth:`transaction`; the base gives the
    rest. A bundle's ``run`` calls :meth:`check` first, so a run whose outputs exist stops BEFORE the long
    computation, then the writer::

        writer.check()                      # FileExistsError / ValueError now, not after sampling
        writer(result, ...)                 # NIfTI + PNG + JSON, committed together

    Inside a transaction every file is written into a hidden staging folder of ``output_dir`` and all of them are
    moved into place at its end (:class:`~medgen.engines.writers.staging.OutputStaging`): a failure, a full disk
    (``OSError`` "No space left on device") or a kill leaves ``output_dir`` as it was; :meth:`check` undoes what a
    killed run left. After a call, :attr:`written` lists the files and :attr:`last_result` the JSON summary.

    Args:
        output_dir: folder of the outputs (created when writing).
        prefix: file-name prefix, e.g. ``"wdm_seed0"``.
        info: JSON-serialisable settings recorded in the JSON summary (seed, steps, checkpoint, ...).
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``); an input is never replaced.
        inputs: paths the result was computed from, never written over (empty entries such as ``None`` are skipped).
        staging_dir: where the files are staged before the commit when it is on ``output_dir``'s file system (e.g.
            the run's checkpoint folder: ``output_dir`` is then not touched before the commit); default
            ``output_dir``.

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
        staging_dir: str | os.PathLike | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix without '/', got {prefix!r}.")
        self.output_dir = Path(output_dir)
        self.prefix = prefix
        self.info = dict(info or {})
        self.overwrite = bool(overwrite)
        self.inputs = tuple(str(p) for p in inputs if p)
        self.staging_dir = None if staging_dir in (None, "") else Path(staging_dir)
        self.written: list[Path] = []
        self.last_result: dict[str, Any] | None = None
        self._staging: OutputStaging | None = None
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

    def _check_targets(self, outputs: Sequence[Path]) -> None:
        for path in outputs:
            if any(Path(p).resolve() == path.resolve() for p in self.inputs):
                raise ValueError(f"refusing to write the output over the input file '{path}'; choose another prefix.")
        existing = [p for p in outputs if p.exists()]
        if existing and not self.overwrite:
            raise FileExistsError(
                f"outputs exist: {', '.join(map(str, existing[:4]))}{' ...' if len(existing) > 4 else ''}; choose "
                "another output_dir or seed, or pass overwrite=True."
            )

    def check(self, *args: Any) -> None:
        """Raise before any long computation if an output exists or is an input (and start the clock).

        Also undoes and removes what killed runs left in ``output_dir`` and ``staging_dir`` (their staging folders).

        Args:
            args: what decides the outputs, passed to :meth:`paths` (e.g. the number of samples).

        Raises:
            ValueError: an output path is one of ``inputs``, or ``output_dir``/``staging_dir`` is (under) a file.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        check_folder(self.output_dir, "output_dir")
        if self.staging_dir is not None:
            check_folder(self.staging_dir, "staging_dir")
        recover_staging(self.output_dir)
        if self.staging_dir is not None:
            recover_staging(self.staging_dir)
        outputs: list[Path] = []
        for entry in self.paths(*args).values():
            outputs.extend(entry if isinstance(entry, list) else [entry])
        self._check_targets(outputs)
        self._started = time.perf_counter()

    def seconds_since_check(self, *args: Any) -> float:
        """Seconds since :meth:`check` (run now with ``args`` if the caller did not: the outputs are checked anyway)."""
        if self._started is None:
            self.check(*args)
        return time.perf_counter() - (self._started or time.perf_counter())

    @contextmanager
    def transaction(self) -> Iterator[OutputStaging]:
        """Write a call's files together: staged inside the block, committed at its end, removed on any error.

        Raises:
            OSError: ``ENOSPC`` "No space left on device" naming the file, when the disk filled (nothing written).
        """
        staging = OutputStaging(self.output_dir, self.prefix, self.overwrite, self.staging_dir)
        self._staging = staging
        try:
            with staging:
                yield staging
        finally:
            self._staging = None
        self.written = list(staging.committed)

    def write_file(self, path: Path, write: Callable[[Path], Any]) -> Path:
        """Write the output ``path`` through ``write(file)``: into the staging folder inside :meth:`transaction`,
        atomically in place outside it; never over an input, nor over an existing file unless ``overwrite``.

        Returns:
            ``path``.
        """
        self._check_targets([path])
        if self._staging is None:
            return write_atomically(path, write, self.overwrite, self.inputs)
        write(self._staging.path_for(path))
        return path

    def save_nifti(self, array: np.ndarray, path: Path, affine: np.ndarray) -> Path:
        """Write ``array`` as NIfTI (float32, ``affine``), refusing NaN or infinite values."""
        check_finite(np.asarray(array), f"the result to be written to '{path.name}' (nothing was written)")
        return self.write_file(path, lambda file: save_nifti(array, file, affine=affine, overwrite=True))

    def save_preview(
        self, path: Path, columns: Sequence[PreviewColumn], slice_axis: int | None = None, title: str | None = None
    ) -> Path:
        """Write the preview ``columns`` (:func:`~medgen.engines.writers.preview.save_preview_png`) as ``path``."""
        return save_preview_png(path, columns, slice_axis, title if title is not None else self.prefix,
                                save=self.write_file)

    @staticmethod
    def describe(array: np.ndarray, affine: np.ndarray, **files: Path) -> dict[str, Any]:
        """``{role: file name, ..., "shape": array shape, "affine": 4x4 list}``: a written volume in a JSON summary."""
        names = {role: path.name for role, path in files.items()}
        return {**names, "shape": list(array.shape), "affine": affine.tolist()}

    def write_summary(self, path: Path, content: dict[str, Any]) -> dict[str, Any]:
        """Write ``content`` as indented JSON (values JSON cannot hold as ``str``), keep it as :attr:`last_result` and
        stop the clock.

        Returns:
            ``content``.
        """
        text = json.dumps(content, indent=2, default=str)
        self.write_file(path, lambda file: file.write_text(text))
        self.last_result = content
        self._started = None
        return content
