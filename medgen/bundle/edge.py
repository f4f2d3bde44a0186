"""The edge of a bundle run: everything a user passes is checked in one place before a network is loaded.

A bundle's ``run`` starts with ``$@edge.check()`` and ends with ``$@edge.finish()``::

    "edge": {
        "_target_": "medgen.bundle.BundleEdge",
        "bundle": "tpdm_brain_mri",
        "output_dir": "@output_dir",
        "inputs": {"input_path": "@input_path", "reference_path": "@reference_path"},
        "optional": ["reference_path"],
        "reader": "@load_image",
        "output_shape": "$lambda shapes: ...",
        "reference_key": "reference_path",
        "memory_estimate": "$lambda shape: {...}",
        "device": "@device",
        "checkpoint_dir": "@checkpoint_dir",
        "writer": "@writer"
    },
    "run": ["$@edge.check()", "$@evaluator.run()", "$@edge.finish()"]

:meth:`BundleEdge.check` checks, in this order, and raises :class:`~medgen.bundle.errors.BundleInputError` naming
the key or file, what was expected and what came:

1. every key given on the command line is one the config declares (:func:`~medgen.bundle.arguments.check_keys`);
2. ``output_dir`` is a folder that can be written (probed), and the writer's outputs do not exist yet (the writer's
   own ``check``; it also cleans up what killed runs left in the folder);
3. every weight file exists, is readable and not empty (it is not loaded here);
4. every input file is read with its reader (the one place a new reader is plugged in: ``reader`` or ``readers``)
   and its content checked by its kind (:data:`INPUT_KINDS`): dtype, finite values, affine, label range, coil maps;
5. the reference has the shape of the output the run will produce (``output_shape``);
6. the estimated peak memory (``memory_estimate``) fits the device or ``max_memory_gb``, and the output folder's
   file system has room for the outputs (checked from the NIfTI headers before the data are read, when the inputs
   are 3D NIfTI files, so a too large input is refused without being loaded);
6b. the config items named in ``components`` (e.g. the inferer) are built, so a bad setting fails here; their
   errors name the user's key (``steps``), not the constructor's argument it feeds (``timestep_respacing``);
7. ``checkpoint_dir``: an interrupted run there is continued only if it is the same run
   (:func:`~medgen.bundle.record.check_run_record` names every difference);
8. fewer ``steps`` than the bundle's quality was measured with print a warning quoting the measurement.

The checked inputs are then available as ``@edge.data`` (``{key: value}``), so the pipeline reads each file once.
:meth:`BundleEdge.finish` prints the closing summary (files, metrics against each baseline, steps, seed, time) and
removes ``checkpoint_dir`` (the run is complete; nothing is left to resume).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.bundle.arguments import build_component, check_keys, given_arguments
from medgen.bundle.errors import BundleInputError, show_bundle_errors_briefly
from medgen.bundle.inputs import (
    check_affine,
    check_nifti_header,
    check_not_all_zero,
    check_values,
    describe,
    read_file,
    read_npz,
)
from medgen.bundle.record import NOT_RESULT_KEYS, RunRecord, check_run_record
from medgen.bundle.resources import check_memory, check_output_dir, format_bytes
from medgen.bundle.summary import format_summary

__all__ = ["BundleEdge", "INPUT_KINDS", "default_image_reader", "run_folder"]

INPUT_KINDS = ("image", "label_map", "kspace", "complex_image")
"""How an input is checked:

- ``"image"``: a real volume (channel first, as MONAI's ``LoadImage(ensure_channel_first=True)`` gives it) with a
  finite, invertible affine; returned as float32;
- ``"label_map"``: an ``"image"`` of non-negative integer labels below ``num_classes``;
- ``"kspace"``: a mapping (a ``.npz`` archive by default) with complex ``kspace`` ``(S, Nc, H, W)``, coil
  ``sensitivity_maps`` of the same shape (not all zero) and an optional ``affine``;
- ``"complex_image"``: a mapping with a complex or real ``image`` ``(S, 1, H, W)`` and an optional ``affine``.
"""

_MAIN_ARRAY = {"kspace": "kspace", "complex_image": "image"}


def run_folder(bundle_root: str | os.PathLike, output_dir: str | os.PathLike, prefix: str) -> str:
    """The default checkpoint folder of an inference run: ``<bundle_root>/runs/<prefix>-<8 hex digits>``.

    The digits hash the absolute output folder, so runs writing to different folders never share a checkpoint
    folder, and the same command finds its interrupted run again. Keeping the run's state out of the output folder
    leaves that folder untouched until the outputs are committed.
    """
    import hashlib

    digest = hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:8]
    return str(Path(bundle_root) / "runs" / f"{prefix}-{digest}")


def default_image_reader() -> Callable[[str], Any]:
    """MONAI's ``LoadImage`` keeping the file's dtype (so a complex image is seen, not cast), channel first."""
    from monai.transforms import LoadImage

    return LoadImage(image_only=True, ensure_channel_first=True, dtype=None)


def _npz_reader(required: Sequence[str]) -> Callable[[str, str], dict[str, np.ndarray]]:
    return lambda key, path: read_npz(key, path, required)


class BundleEdge:
    """Check what a user gives a bundle before anything long starts, hand the checked inputs on, and close the run.

    Args:
        bundle: the bundle's name (messages, summary).
        output_dir: the output folder.
        inputs: ``{config key: file path}`` of the input files (``None`` or ``""``: not given).
        optional: keys of ``inputs`` that may be left out (e.g. a reference).
        kinds: ``{config key: kind}`` (:data:`INPUT_KINDS`); default ``"image"``.
        reader: reads an image file (default :func:`default_image_reader`); THE place to plug in another reader.
        readers: ``{config key: reader}`` for single inputs (e.g. a k-space file format); mapping kinds default to a
            ``.npz`` reader.
        folders: keys of ``inputs`` that may name a folder holding one scan (a DICOM series, a BraTS case folder)
            instead of a file; their reader reads the folder.
        num_classes: label maps must hold labels below it.
        input_shapes: ``{config key: expected shape}`` of inputs the task constrains (``None`` entries: any size),
            e.g. a sinogram's ``[1, views, detectors, None]``.
        weights: ``{config key: file path}`` of the weight files the run will load (checked, not loaded).
        output_shape: the shape of the run's output as a function of ``{key: shape}`` of the inputs read (a mapping
            input's shape is that of its main array), or a fixed shape; the reference must have it.
        reference_key: the key of the reference input in ``inputs``.
        memory_estimate: ``(output shape, {key: input shape}) -> {what: bytes}``, the run's peak memory by term.
        memory_advice: what lowers the estimate besides ``max_memory_gb`` (e.g. ``"lower batch_size"``).
        max_memory_gb: the user's memory limit (``None``: what the device has available).
        device: where the run computes.
        output_volumes: float32 volumes of the output shape the run writes (for the disk-space check).
        checkpoint_dir: the run's checkpoint folder (``None``: the run cannot resume).
        state_pattern: glob (under ``checkpoint_dir``) of the checkpoint files that make a run resumable.
        writer: the run's output writer (:class:`~medgen.engines.writers.base.OutputWriter`): its ``check`` runs here
            and :meth:`finish` reports what it wrote.
        writer_args: arguments of the writer's ``check`` (e.g. the number of samples).
        steps: the run's number of sampling steps (for the warning below).
        validated_steps: the fewest steps the bundle's quality was measured with; fewer steps print a warning
            quoting ``validated_quality``.
        validated_quality: what was measured (e.g. ``"25.73 dB PSNR with 200 steps; 20 steps gave 4.89 dB"``).
        remove_checkpoint_dir: :meth:`finish` removes ``checkpoint_dir`` (inference: nothing is left to resume;
            training keeps its checkpoints).
        settings: the run's result-changing settings for the restart check (default: taken from the config the
            ``monai.bundle run`` command built).
        components: config ids built during the check (the inferer, ...; only under ``monai.bundle run``, whose
            parser builds them once for the whole run). An error building one is reported with the config keys the
            failing arguments come from.

    Raises:
        ValueError: an unknown kind.
    """

    def __init__(
        self,
        bundle: str,
        output_dir: str | os.PathLike,
        inputs: Mapping[str, Any] | None = None,
        optional: Sequence[str] = (),
        kinds: Mapping[str, str] | None = None,
        reader: Callable[[str], Any] | None = None,
        readers: Mapping[str, Callable[[str], Any]] | None = None,
        folders: Sequence[str] = (),
        num_classes: int | None = None,
        input_shapes: Mapping[str, Sequence[int | None]] | None = None,
        weights: Mapping[str, Any] | None = None,
        output_shape: Callable[[Mapping[str, tuple[int, ...]]], Sequence[int]] | Sequence[int] | None = None,
        reference_key: str | None = None,
        memory_estimate: Callable[[tuple[int, ...], Mapping[str, Any]], Mapping[str, float]] | None = None,
        memory_advice: str = "",
        max_memory_gb: float | None = None,
        device: torch.device | str = "cpu",
        output_volumes: int = 1,
        checkpoint_dir: str | os.PathLike | None = None,
        state_pattern: str = "**/sampling_state.pt",
        writer: Any = None,
        writer_args: Sequence[Any] = (),
        steps: int | None = None,
        validated_steps: int | None = None,
        validated_quality: str = "",
        remove_checkpoint_dir: bool = True,
        settings: Mapping[str, Any] | None = None,
        components: Sequence[str] = (),
    ) -> None:
        self.bundle = str(bundle)
        self.output_dir = output_dir
        self.inputs = dict(inputs or {})
        self.optional = set(optional)
        self.kinds = {key: "image" for key in self.inputs} | dict(kinds or {})
        for key, kind in self.kinds.items():
            if kind not in INPUT_KINDS:
                raise ValueError(f"kinds[{key!r}] must be one of {INPUT_KINDS}, got {kind!r}.")
        self.reader = reader
        self.readers = dict(readers or {})
        self.folders = set(folders)
        self.num_classes = num_classes
        self.input_shapes = {key: tuple(shape) for key, shape in (input_shapes or {}).items()}
        self.weights = dict(weights or {})
        self.output_shape = output_shape
        self.reference_key = reference_key
        self.memory_estimate = memory_estimate
        self.memory_advice = memory_advice
        self.max_memory_gb = max_memory_gb
        self.device = device
        self.output_volumes = int(output_volumes)
        self.checkpoint_dir = None if checkpoint_dir in (None, "") else Path(checkpoint_dir)
        self.state_pattern = state_pattern
        self.writer = writer
        self.writer_args = tuple(writer_args)
        self.steps = steps
        self.validated_steps = validated_steps
        self.validated_quality = validated_quality
        self.remove_checkpoint_dir = bool(remove_checkpoint_dir)
        self.settings = None if settings is None else dict(settings)
        self.components = tuple(components)
        self.resumed = False
        self.expected_shape: tuple[int, ...] | None = None
        self.memory: dict[str, Any] | None = None
        self._data: dict[str, Any] | None = None
        self._started: float | None = None

    # ------------------------------------------------------------------------------------------------ checks
    def check(self) -> None:
        """Run every check of the module docstring, in order (reading the inputs once)."""
        show_bundle_errors_briefly()
        self._started = time.perf_counter()
        given = given_arguments()
        if given is not None:
            check_keys(given.config_files, given.overrides)
        check_output_dir(self.output_dir)
        if self.writer is not None:
            try:
                self.writer.check(*self.writer_args)
            except FileExistsError:
                raise
            except ValueError as e:  # e.g. num_samples < 1, or an output that would replace an input
                raise BundleInputError(str(e)) from e
        for key, path in self.weights.items():
            self._check_weight(key, path)
        headers = self._header_shapes()
        if headers is not None:  # too large an input is refused from its header, before it is read
            self._check_shapes_and_memory(headers)
        shapes = {key: self._shape(key, value) for key, value in self.data.items()}
        self._check_shapes_and_memory(shapes)
        if given is not None and given.parser is not None:
            for config_id in self.components:
                build_component(given.parser, given.config, config_id)
        self._check_checkpoint_dir(given.config if given is not None else {})
        self._warn_about_steps()

    def _check_shapes_and_memory(self, shapes: Mapping[str, tuple[int, ...] | None]) -> None:
        for key, expected in self.input_shapes.items():
            self._check_input_shape(key, shapes.get(key), expected)
        self.expected_shape = self._expected_shape(shapes)
        self._check_reference(shapes)
        if self.expected_shape is not None:
            if self.memory_estimate is not None:
                estimate = self.memory_estimate(self.expected_shape, shapes)
                self.memory = check_memory(estimate, self.device, self.max_memory_gb, advice=self.memory_advice)
            needed = 4.0 * math.prod(self.expected_shape) * self.output_volumes + 4 * 1024**2
            check_output_dir(self.output_dir, needed_bytes=needed)

    def _header_shapes(self) -> dict[str, tuple[int, ...] | None] | None:
        """``{key: (1, *shape)}`` read from the headers of 3D NIfTI inputs without reading their data, or ``None``
        when an input's shape needs its data (another format, a mapping kind, a 4D image, an unreadable header)."""
        import nibabel as nib

        shapes: dict[str, tuple[int, ...] | None] = {}
        for key, path in self.inputs.items():
            if path in (None, ""):
                if key not in self.optional:
                    return None
                shapes[key] = None
                continue
            if self.kinds[key] in _MAIN_ARRAY or not str(path).lower().endswith((".nii", ".nii.gz")):
                return None
            try:
                shape = tuple(int(s) for s in nib.load(str(path)).shape)
            except Exception:  # noqa: BLE001 (reading the file reports it, naming it)
                return None
            if len(shape) != 3:
                return None
            shapes[key] = (1, *shape)
        return shapes

    def _warn_about_steps(self) -> None:
        steps, validated = self.steps, self.validated_steps
        if isinstance(steps, int) and isinstance(validated, int) and steps < validated:
            quality = f" ({self.validated_quality})" if self.validated_quality else ""
            print(f"{self.bundle}: warning: steps={steps} is below the {validated} steps this bundle's quality was "
                  f"measured with{quality}; expect a worse result.", file=sys.stderr, flush=True)

    @staticmethod
    def _check_weight(key: str, path: Any) -> None:
        if path in (None, ""):
            raise BundleInputError(f"{key} is not set; give the weights file with --{key} <path>.")
        file = Path(path)
        if not file.is_file():
            hint = " (official checkpoints are converted into the bundle's models/ folder with `medgen convert`)"
            raise BundleInputError(f"{describe(key, path)} does not exist{hint}.")
        if file.stat().st_size == 0:
            raise BundleInputError(f"{describe(key, path)} is empty (0 bytes).")
        if not os.access(file, os.R_OK):
            raise BundleInputError(f"{describe(key, path)} is not readable (permission denied).")

    @property
    def data(self) -> dict[str, Any]:
        """``{key: checked input}`` (read and checked on first use; a key left out maps to ``None``)."""
        if self._data is None:
            self._data = {key: self._read(key, path) for key, path in self.inputs.items()}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def _read(self, key: str, path: Any) -> Any:
        if path in (None, ""):
            if key in self.optional:
                return None
            raise BundleInputError(f"{key} is not set; give the file with --{key} <path>.")
        kind = self.kinds[key]
        if kind in _MAIN_ARRAY:
            required = ("kspace", "sensitivity_maps") if kind == "kspace" else ("image",)
            reader = self.readers.get(key)
            value = read_file(key, path, reader, f"{kind} data") if reader is not None else read_npz(key, path,
                                                                                                      required)
            return self._check_mapping(key, path, kind, value, required)
        reader = self.readers.get(key) or self.reader or default_image_reader()
        value = read_file(key, path, reader, "an image", folder=key in self.folders)
        check_nifti_header(key, path)
        return self._check_image(key, path, kind, value)

    def _check_image(self, key: str, path: Any, kind: str, image: Any) -> Any:
        from monai.data import MetaTensor

        check_values(image, key, path, integer=kind == "label_map", num_classes=self.num_classes,
                     what="labels" if kind == "label_map" else "voxels")
        if isinstance(image, MetaTensor):
            check_affine(image.affine, key, path)
        if isinstance(image, torch.Tensor) and image.dtype != torch.float32:
            image = image.to(torch.float32)
        return image

    def _check_mapping(self, key: str, path: Any, kind: str, value: Any, required: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise BundleInputError(f"{describe(key, path)} must hold named arrays {list(required)}, got "
                                   f"{type(value).__name__}.")
        missing = [name for name in required if name not in value]
        if missing:
            raise BundleInputError(f"{describe(key, path)} lacks {missing}; it holds {sorted(value)}.")
        arrays = {name: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                  for name, v in value.items()}
        main = _MAIN_ARRAY[kind]
        what = {"kspace": "k-space samples", "image": "pixels", "sensitivity_maps": "coil sensitivities"}
        for name in required:
            check_values(arrays[name], f"{key}[{name!r}]", path, allow_complex=True, what=what.get(name, "values"))
        if kind == "kspace":
            kspace, maps = arrays["kspace"], arrays["sensitivity_maps"]
            if kspace.ndim != 4:
                raise BundleInputError(f"{describe(key, path)}: kspace must be (slices, coils, H, W), got shape "
                                       f"{tuple(kspace.shape)}.")
            if tuple(maps.shape) != tuple(kspace.shape):
                raise BundleInputError(f"{describe(key, path)}: sensitivity_maps {tuple(maps.shape)} must have the "
                                       f"shape of kspace {tuple(kspace.shape)}.")
            check_not_all_zero(maps, f"{key}['sensitivity_maps']", path, "coil sensitivities")
            for s in range(kspace.shape[0]):
                check_not_all_zero(kspace[s], f"{key}['kspace'] slice {s}", path, "k-space samples")
        if "affine" in arrays:
            arrays["affine"] = check_affine(arrays["affine"], f"{key}['affine']", path)
        if arrays[main].ndim < 2:
            raise BundleInputError(f"{describe(key, path)}: {main} must be an array of images, got shape "
                                   f"{tuple(arrays[main].shape)}.")
        return arrays

    def _shape(self, key: str, value: Any) -> tuple[int, ...] | None:
        if value is None:
            return None
        if isinstance(value, Mapping):
            return tuple(int(s) for s in value[_MAIN_ARRAY[self.kinds[key]]].shape)
        return tuple(int(s) for s in value.shape)

    def _check_input_shape(self, key: str, shape: tuple[int, ...] | None, expected: tuple[int | None, ...]) -> None:
        if shape is None:
            return
        if len(shape) != len(expected) or any(e is not None and int(e) != s for e, s in zip(expected, shape)):
            wanted = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
            name = describe(key, self.inputs.get(key))
            raise BundleInputError(f"{name} has shape {shape}; this task takes {wanted}.")

    def _expected_shape(self, shapes: Mapping[str, tuple[int, ...] | None]) -> tuple[int, ...] | None:
        if self.output_shape is None:
            return None
        if callable(self.output_shape):
            try:
                shape = self.output_shape(shapes)
            except BundleInputError:
                raise
            except Exception as e:  # noqa: BLE001 (an input the task cannot take)
                listed = ", ".join(f"{k} {s}" for k, s in shapes.items() if s is not None)
                raise BundleInputError(f"the inputs ({listed}) do not fit this task: {type(e).__name__}: {e}") from e
        else:
            shape = self.output_shape
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape):
            listed = ", ".join(f"{k} {s}" for k, s in shapes.items() if s is not None)
            raise BundleInputError(f"the inputs ({listed}) give an empty output of shape {shape}.")
        return shape

    def _check_reference(self, shapes: Mapping[str, tuple[int, ...] | None]) -> None:
        key = self.reference_key
        if key is None or shapes.get(key) is None or self.expected_shape is None:
            return
        if tuple(shapes[key]) != self.expected_shape:
            inputs = ", ".join(f"{k} {s}" for k, s in shapes.items() if s is not None and k != key)
            raise BundleInputError(
                f"{describe(key, self.inputs[key])} has shape {tuple(shapes[key])}, but this run's output will have "
                f"shape {self.expected_shape} (from {inputs}); the reference must be on the output's grid."
            )

    def _check_checkpoint_dir(self, config: Mapping[str, Any]) -> None:
        if self.checkpoint_dir is None:
            return
        check_output_dir(self.checkpoint_dir, key="checkpoint_dir")
        settings = self.settings if self.settings is not None else config
        files = {**self.inputs, **self.weights}
        record = RunRecord.create(settings, files, NOT_RESULT_KEYS | set(files))  # files: compared by content
        has_state = self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.glob(self.state_pattern))
        self.resumed = check_run_record(self.checkpoint_dir, record, has_state)
        if self.resumed:
            print(f"{self.bundle}: continuing the interrupted run saved in '{self.checkpoint_dir}'", flush=True)

    # ------------------------------------------------------------------------------------------------ finish
    def finish(self, result: Mapping[str, Any] | None = None, files: Sequence[Any] | None = None) -> str:
        """Close a completed run: remove ``checkpoint_dir`` (unless ``remove_checkpoint_dir=False``) and print the
        summary.

        Args:
            result: what the run recorded (default: the writer's last result); its ``metrics`` and ``baselines`` are
                shown, and ``steps``, ``seed``, ``iterations``, ``final_loss``.
            files: the files the run wrote (default: what the writer committed).

        Returns:
            the summary printed.
        """
        writer = self.writer
        if result is None and writer is not None:
            result = getattr(writer, "last_result", None)
        if files is None:
            files = list(getattr(writer, "written", []) or [])
        if self.remove_checkpoint_dir and self.checkpoint_dir is not None and self.checkpoint_dir.is_dir():
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        seconds = time.perf_counter() - self._started if self._started is not None else 0.0
        summary = format_summary(self.bundle, [f for f in files if f], result, seconds, self.resumed)
        if self.memory is not None:
            summary += f"\n  peak memory estimated before the run: {format_bytes(self.memory['estimate_bytes'])}"
        print(summary, flush=True)
        return summary
