"""Writing the results of a bundle run: one base for every output writer, and the generated-volume writer.

:class:`OutputWriter` is what every medgen writer shares: files named from a prefix in an output folder
(:meth:`OutputWriter.target`), a :meth:`OutputWriter.check` that refuses, BEFORE a long sampling or reconstruction
starts, to write over existing outputs (unless ``overwrite``) or ever over an input file, the run time since that
check, and atomic writes (a temporary file in the target folder, then :func:`os.replace`): NIfTI and orthogonal-slice
PNGs through :func:`medgen.data.save_nifti` / :func:`medgen.data.save_orthogonal_slices_png`, the JSON summary,
matplotlib figures (:func:`save_panel_grid_png`) and any other file (:func:`write_atomically`). Subclasses only say
which files they write (:meth:`OutputWriter.paths`) and what goes into them:

- :class:`GeneratedVolumeWriter` (here): a batch of unconditionally generated volumes and their statistics;
- :class:`~medgen.engines.reconstruction.ReconstructionWriter` and its 2D variant
  :class:`~medgen.engines.slice_reconstruction.SliceReconstructionWriter`: a reconstruction and its metrics;
- :class:`~medgen.engines.kspace.KspaceReconstructionWriter`: multi-coil MRI slices and HFS-SDE's metrics;
- :class:`~medgen.engines.semantic_writer.SemanticSynthesisWriter`: label-conditioned volumes and class statistics.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.data.io import save_nifti, save_orthogonal_slices_png
from medgen.engines.ema import unwrap_network
from medgen.engines.trainer import distributed_rank

__all__ = [
    "GeneratedVolumeWriter",
    "OutputWriter",
    "as_affine",
    "save_panel_grid_png",
    "save_state_dict",
    "volume_statistics",
    "write_atomically",
]


def write_atomically(
    path: str | os.PathLike,
    write: Callable[[Path], Any],
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a file through ``write(temporary_path)`` and rename it to ``path`` (an interrupted write leaves nothing).

    The temporary file ``.<name>.<random>.tmp<suffix>`` sits in the target folder (same file system, so
    :func:`os.replace` is atomic) and keeps the suffix (``numpy.savez`` appends ``.npz`` otherwise).

    Args:
        path: the file to write (its folder is created).
        write: writes the content to the path it is given.
        overwrite: replace an existing ``path``.
        inputs: paths that must never be written over, whatever ``overwrite`` says.

    Returns:
        the written path.

    Raises:
        ValueError: ``path`` is one of ``inputs``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    if any(Path(item).resolve() == target.resolve() for item in inputs):
        raise ValueError(f"refusing to write the output over the input file '{target}'; choose another path.")
    if target.exists() and not overwrite:
        raise FileExistsError(f"'{target}' exists; pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def save_state_dict(network: torch.nn.Module, path: str | os.PathLike, main_process_only: bool = True) -> Path | None:
    """Save ``network``'s plain ``state_dict`` (wrappers removed) to ``path`` atomically (temporary file + rename).

    Used by bundles to write ``models/model.pt`` only after training completed (an interrupted run never replaces
    the previous weights).

    Args:
        network: the module (``DataParallel``/``DistributedDataParallel`` are unwrapped).
        path: the ``.pt`` file to write (its folder is created).
        main_process_only: under ``torch.distributed``, only rank 0 writes.

    Returns:
        the written path, or ``None`` on a rank that does not write.

    Raises:
        TypeError: ``network`` is not an ``nn.Module``.
    """
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    if main_process_only and distributed_rank() != 0:
        return None
    state = {k: v.detach().cpu() for k, v in unwrap_network(network).state_dict().items()}
    return write_atomically(path, lambda tmp: torch.save(state, tmp), overwrite=True)


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


class GeneratedVolumeWriter(OutputWriter):
    """Write a batch of generated volumes into ``output_dir`` without overwriting anything.

    Files for a batch of ``B`` samples: ``<prefix>_<k>.nii.gz`` and ``<prefix>_<k>.png`` for ``k = 0..B-1`` and
    ``<prefix>_stats.json`` holding ``info``, the elapsed time since :meth:`check` and per-sample statistics
    (:func:`volume_statistics`), shape and affine.

    Args:
        output_dir: folder of the outputs (created).
        prefix: file-name prefix, e.g. ``"wdm_seed0"``.
        info: JSON-serialisable settings recorded in the statistics file (seed, steps, checkpoint, ...).
        threshold: voxels above it are counted in ``fraction_above_threshold`` (``None``: not computed).
        overwrite: replace existing outputs (default: refuse with ``FileExistsError``).
        inputs: files the outputs must never replace (e.g. a conditioning volume).

    Raises:
        ValueError: an empty prefix or one holding a path separator.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        prefix: str = "sample",
        info: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> None:
        super().__init__(output_dir, prefix, info, overwrite, inputs)
        self.threshold = threshold

    def paths(self, num_samples: int) -> dict[str, Path | list[Path]]:
        """The files a batch of ``num_samples`` is written to: ``{"nifti": [...], "png": [...], "stats": path}``."""
        return {
            "nifti": [self.target(f"_{k}.nii.gz") for k in range(num_samples)],
            "png": [self.target(f"_{k}.png") for k in range(num_samples)],
            "stats": self.target("_stats.json"),
        }

    def check(self, num_samples: int) -> None:
        """Raise before any long computation if an output of a ``num_samples`` batch exists (and start the clock).

        Raises:
            ValueError: ``num_samples < 1`` or an output is an input.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
        super().check(num_samples)

    def __call__(self, volumes: torch.Tensor) -> dict[str, Any]:
        """Write ``volumes`` ``(B, C, D, H, W)`` (a MetaTensor's affine is written to the NIfTI headers).

        Returns:
            the content written to the statistics JSON.

        Raises:
            ValueError: ``volumes`` is not a 5D tensor.
            FileExistsError: an output exists and ``overwrite`` is False.
        """
        if not isinstance(volumes, torch.Tensor) or volumes.ndim != 5:
            raise ValueError(
                "volumes must be a (B, C, D, H, W) tensor, got "
                f"{tuple(volumes.shape) if isinstance(volumes, torch.Tensor) else type(volumes).__name__}."
            )
        num_samples = int(volumes.shape[0])
        elapsed = self.seconds_since_check(num_samples)
        paths = self.paths(num_samples)
        data = (volumes.as_tensor() if isinstance(volumes, MetaTensor) else volumes).detach().cpu().float().numpy()
        samples = []
        for k in range(num_samples):
            entry = self.save_volume(
                data[k], paths["nifti"][k], paths["png"][k], as_affine(None, volumes, k),  # type: ignore[index]
                title=f"{self.prefix} #{k}",
            )
            samples.append({**entry, **volume_statistics(data[k], self.threshold)})
        content = {**self.info, "seconds": round(elapsed, 3), "threshold": self.threshold, "samples": samples}
        return self.write_summary(self.target("_stats.json"), content)
