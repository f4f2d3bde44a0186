"""Reading the formats the methods' users have, with the reader chosen by the file type (MONAI ``LoadImage`` style).

:class:`LoadScan` / :class:`LoadScand` are :class:`monai.transforms.LoadImage` / ``LoadImaged`` with three more
readers registered in front of MONAI's own, each recognising its input by what the path is:

=======================================  ==============================  =========================================
input                                    reader                          result
=======================================  ==============================  =========================================
NIfTI, NRRD, MHA, ... file               MONAI's (``NibabelReader``...)  the volume in its stored units, affine
folder of DICOM files (one series)       :class:`DicomSeriesReader`      CT in HU (rescale slope/intercept
                                                                         applied by GDCM), RAS affine from the
                                                                         series geometry (oblique kept)
BraTS-style case folder                  :class:`BraTSCaseReader`        ``(C, X, Y, Z)``: the contrasts present,
                                                                         in the order t1, t1ce, t2, flair
fastMRI ``.h5`` file                     :class:`FastMRIKspaceReader`    complex k-space ``(S, Nc, H, W)`` of the
                                                                         selected slices
=======================================  ==============================  =========================================

:class:`LoadBraTSCased` splits a case folder into one key per contrast (cWDM's conditions and target) and
:class:`LoadFastMRId` adds the coil sensitivity maps of a fastMRI slice stack (read from the file when it has them,
else estimated by ESPIRiT), which together with :class:`~medgen.transforms.normalize.InvertibleKspaceStdNormalized`
is what :class:`~medgen.inferers.highfrequency.HighFrequencySpaceInferer` takes.

:func:`find_scans` lists the inputs in a folder (files, DICOM series and case folders) and :func:`scan_dataset` /
:func:`scan_dataloader` make a MONAI ``Dataset`` / ``DataLoader`` of them, for inference over many inputs.

fastMRI files need ``h5py``, an optional dependency (``pip install "medgen[fastmri]"``): it is only needed for this
one format, and MONAI treats it the same way (``monai.apps.reconstruction.fastmri_reader``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.data import DataLoader, Dataset, ITKReader, MetaTensor, NibabelReader
from monai.data.image_reader import ImageReader
from monai.transforms import LoadImage, LoadImaged, MapTransform
from monai.utils import ensure_tuple, get_equivalent_dtype, optional_import

from medgen.data.brats import BRATS_SEGMENTATION, find_brats_files, is_brats_case
from medgen.data.multicontrast import BRATS_CONTRASTS
from medgen.physics.mri import fft2c, ifft2c
from medgen.transforms.kspace import EstimateCoilSensitivity

h5py, has_h5py = optional_import("h5py")

__all__ = [
    "FASTMRI_MAPS_DATASETS",
    "SCAN_FILE_SUFFIXES",
    "BraTSCaseReader",
    "DicomSeriesReader",
    "FastMRIKspaceReader",
    "LoadBraTSCased",
    "LoadBraTSCaseD",
    "LoadBraTSCaseDict",
    "LoadFastMRId",
    "LoadFastMRID",
    "LoadFastMRIDict",
    "LoadScan",
    "LoadScand",
    "LoadScanD",
    "LoadScanDict",
    "centre_sampled_width",
    "find_scans",
    "is_dicom_series",
    "read_ismrmrd_header",
    "scan_dataloader",
    "scan_dataset",
    "scan_name",
]

PathLike = str | os.PathLike

SCAN_FILE_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".h5", ".mha", ".mhd", ".nrrd", ".nhdr")
"""File suffixes :func:`find_scans` treats as one input each."""

FASTMRI_MAPS_DATASETS: tuple[str, ...] = ("sensitivity_maps", "sens_maps", "s_maps", "smaps")
"""Dataset names under which a fastMRI-layout file may already hold coil sensitivity maps (HFS-SDE: ``s_maps``)."""

_ISMRMRD_NS = {"m": "http://www.ismrm.org/ISMRMRD"}


def _single_path(filename: Sequence[PathLike] | PathLike) -> Path | None:
    names = ensure_tuple(filename)
    return Path(names[0]) if len(names) == 1 else None


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_series(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding DICOM files (``.dcm`` or with the ``DICM`` preamble)."""
    path = Path(path)
    return path.is_dir() and any(_is_dicom_file(p) for p in sorted(path.iterdir()) if p.is_file())


class DicomSeriesReader(ITKReader):
    """Read a folder holding one DICOM series into a volume in physical units (CT: Hounsfield units).

    MONAI's :class:`~monai.data.ITKReader` for folders (GDCM series reading): ITK applies the rescale slope and
    intercept ``(0028,1053)/(0028,1052)`` of the files, so CT voxels are in HU; the affine comes from the series'
    positions, orientation and spacing (oblique acquisitions included), converted to RAS. This reader only claims
    folders with DICOM files, refuses a folder with several series unless ``series_name`` picks one (ITK would
    silently take the first), and adds ``modality``, ``rescale_slope``, ``rescale_intercept`` and ``series_uid`` to
    the meta data.

    Args:
        series_name: the SeriesInstanceUID to read when a folder holds several series.
        kwargs: other :class:`~monai.data.ITKReader` arguments.
    """

    _TAGS = {
        "modality": "0008|0060", "rescale_intercept": "0028|1052", "rescale_slope": "0028|1053",
        "series_uid": "0020|000e",
    }

    def __init__(self, series_name: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("series_meta", True)
        super().__init__(series_name=series_name, **kwargs)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        path = _single_path(filename)
        return path is not None and is_dicom_series(path)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        """Read the series of the folder ``data`` (other paths as :class:`~monai.data.ITKReader` does).

        Raises:
            FileNotFoundError: the folder holds no readable DICOM series.
            ValueError: the folder holds several series and ``series_name`` does not choose one of them.
        """
        path = _single_path(data)
        if path is None or not path.is_dir():
            return super().read(data, **kwargs)
        itk, _ = optional_import("itk")
        names = itk.GDCMSeriesFileNames.New()
        names.SetUseSeriesDetails(True)  # identifiers are the SeriesInstanceUID plus geometry details
        names.AddSeriesRestriction("0008|0021")
        names.SetDirectory(str(path))
        identifiers = list(names.GetSeriesUIDs())
        if not identifiers:
            raise FileNotFoundError(f"no DICOM series found in folder {str(path)!r}.")
        if self.series_name:
            chosen = [i for i in identifiers if i == self.series_name or i.startswith(self.series_name + ".")]
            if len(chosen) != 1:
                raise ValueError(
                    f"series_name {self.series_name!r} matches {len(chosen)} of the series in folder {str(path)!r}: "
                    f"{identifiers}."
                )
            identifier = chosen[0]
        elif len(identifiers) > 1:
            counts = {i: len(names.GetFileNames(i)) for i in identifiers}
            raise ValueError(
                f"folder {str(path)!r} holds {len(identifiers)} DICOM series (series: number of files) {counts}; pass "
                "series_name=<SeriesInstanceUID> to choose one."
            )
        else:
            identifier = identifiers[0]
        files = list(names.GetFileNames(identifier))
        kwargs_ = {**self.kwargs, **kwargs}
        image = itk.imread(files[0] if len(files) == 1 else files, **kwargs_)
        if self.series_meta:  # the tags of the first file, read without its pixels
            header = itk.GDCMImageIO.New()
            header.SetFileName(files[0])
            header.ReadImageInformation()
            image.SetMetaDataDictionary(header.GetMetaDataDictionary())
        return image

    def _get_meta_dict(self, img: Any) -> dict:
        meta = super()._get_meta_dict(img)
        for key, tag in self._TAGS.items():
            if tag in meta:
                value = str(meta[tag]).strip()
                meta[key] = float(value) if key.startswith("rescale") else value
        return meta


class BraTSCaseReader(ImageReader):
    """Read a BraTS-style case folder (one NIfTI per contrast) as one channel-first stack.

    Files are found by name (:func:`~medgen.data.brats.find_brats_files`: ``_t1``/``_t1ce``/``_t2``/``_flair`` or
    BraTS 2023's ``-t1n``/``-t1c``/``-t2w``/``-t2f``) and read with MONAI's :class:`~monai.data.NibabelReader`.
    Channels follow ``contrasts`` (default: every contrast present, in the order t1, t1ce, t2, flair; the
    segmentation only when named, or with :class:`LoadBraTSCased`). The meta data add ``contrasts`` (the channel
    names) and ``filenames``.

    Args:
        contrasts: canonical names to stack, in this order (each must be present; ``"seg"`` allowed); ``None``: the
            contrasts present.
        kwargs: :class:`~monai.data.NibabelReader` arguments.

    Raises:
        ValueError: an unknown contrast name.
    """

    def __init__(self, contrasts: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if contrasts is not None:
            contrasts = tuple(contrasts)
            unknown = [c for c in contrasts if c not in (*BRATS_CONTRASTS, BRATS_SEGMENTATION)]
            if unknown or not contrasts:
                raise ValueError(f"contrasts must be names from {BRATS_CONTRASTS + ('seg',)}, got {contrasts!r}.")
        self.contrasts = contrasts
        self.nibabel = NibabelReader(**kwargs)
        self._names: tuple[str, ...] = ()

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        path = _single_path(filename)
        return path is not None and is_brats_case(path)

    def files(self, folder: PathLike) -> dict[str, Path]:
        """``{contrast: path}`` of the channels this reader stacks from ``folder``.

        Raises:
            FileNotFoundError: a requested contrast is missing, or the folder has no contrast file.
        """
        found = find_brats_files(folder)
        names = self.contrasts or tuple(c for c in BRATS_CONTRASTS if c in found)
        missing = [c for c in names if c not in found]
        if missing or not names:
            raise FileNotFoundError(
                f"BraTS case {str(folder)!r} lacks {missing or list(BRATS_CONTRASTS)}; it holds "
                f"{ {name: path.name for name, path in found.items()} }."
            )
        return {name: found[name] for name in names}

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        path = _single_path(data)
        if path is None:
            raise ValueError(f"BraTSCaseReader reads one case folder at a time, got {data!r}.")
        files = self.files(path)
        self._names = tuple(files)
        return self.nibabel.read([str(p) for p in files.values()], **kwargs)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        images = ensure_tuple(img)
        shapes = {name: tuple(i.shape) for name, i in zip(self._names, images)}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"the contrasts of a case must have one shape, got {shapes}.")
        affines = [np.asarray(i.affine) for i in images]
        for name, affine in zip(self._names, affines):
            if not np.allclose(affine, affines[0], atol=1e-3):
                raise ValueError(
                    f"the contrasts of a case must share one affine; {name!r} has\n{affine}\nbut "
                    f"{self._names[0]!r} has\n{affines[0]}."
                )
        array, meta = self.nibabel.get_data(img)
        if len(images) == 1:
            array = array[None]
        meta["original_channel_dim"] = 0
        meta["contrasts"] = list(self._names)
        meta["filenames"] = [str(f) for f in self.nibabel.filenames]
        return array, meta


def read_ismrmrd_header(header: str | bytes) -> dict[str, Any]:
    """The sizes of a fastMRI file's ``ismrmrd_header`` (ISMRMRD XML).

    Args:
        header: the XML text.

    Returns:
        ``{"encoded_size": (x, y, z), "recon_size": (x, y, z), "encoded_fov_mm": (x, y, z), "recon_fov_mm": (x, y,
        z)}`` for the entries present (``x`` = readout, the k-space ``H`` axis of fastMRI's arrays; ``y`` = phase
        encoding, ``W``).
    """
    text = header.decode() if isinstance(header, bytes) else str(header)
    root = ElementTree.fromstring(text)
    out: dict[str, Any] = {}
    for space, prefix in (("encodedSpace", "encoded"), ("reconSpace", "recon")):
        for element, name, kind in (("matrixSize", "size", int), ("fieldOfView_mm", "fov_mm", float)):
            node = root.find(f"m:encoding/m:{space}/m:{element}", _ISMRMRD_NS)
            if node is not None:
                values = [node.find(f"m:{axis}", _ISMRMRD_NS) for axis in "xyz"]
                if all(v is not None and v.text for v in values):
                    out[f"{prefix}_{name}"] = tuple(kind(float(v.text)) for v in values)  # type: ignore[union-attr]
    return out


def centre_sampled_width(kspace: torch.Tensor) -> int:
    """Number of contiguous fully sampled columns (last axis) around the centre ``W // 2`` of k-space.

    A column counts as sampled if any entry (any slice, coil or row) is non-zero.

    Args:
        kspace: ``(..., H, W)`` k-space.
    """
    sampled = (kspace.abs() > 0).flatten(0, -2).any(dim=0) if kspace.ndim > 1 else kspace.abs() > 0
    centre = kspace.shape[-1] // 2
    if not bool(sampled[centre]):
        return 0
    left = centre
    while left > 0 and bool(sampled[left - 1]):
        left -= 1
    right = centre
    while right < kspace.shape[-1] - 1 and bool(sampled[right + 1]):
        right += 1
    return right - left + 1


def _check_crop(crop: Any) -> tuple[int, int] | str | None:
    if crop is None or crop == "header":
        return crop
    if (
        isinstance(crop, (tuple, list))
        and len(crop) == 2
        and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in crop)
    ):
        return int(crop[0]), int(crop[1])
    raise ValueError(f"crop must be None, 'header' or two positive ints (H, W), got {crop!r}.")


def _centre_crop_kspace(kspace: torch.Tensor, size: tuple[int, int], undersampled: bool) -> torch.Tensor:
    """Crop the IMAGE of centred k-space ``(..., H, W)`` to ``size`` about its centre (HFS-SDE's ``crop``: start
    ``n // 2 - c // 2``), axis by axis with 1-D centred orthonormal transforms, and return its k-space."""
    for axis, target in ((-2, size[0]), (-1, size[1])):
        n = kspace.shape[axis]
        if target == n:
            continue
        if target > n:
            raise ValueError(f"crop size {size} is larger than the k-space size {tuple(kspace.shape[-2:])}.")
        if axis == -1 and undersampled:
            raise ValueError(
                "cropping the phase-encoding axis (W) of undersampled k-space would alias the missing columns into "
                "the measured ones; crop only the readout axis, e.g. crop=(H_crop, W) with W the k-space width."
            )
        image = ifft2c(kspace, dims=(axis,))  # a 1-D centred transform along this axis
        start = n // 2 - target // 2
        image = image.narrow(axis, start, target)
        kspace = fft2c(image, dims=(axis,))
    return kspace


class FastMRIKspaceReader(ImageReader):
    """Read multi-coil k-space from a fastMRI ``.h5`` file (only the selected slices are read from disk).

    fastMRI's layout: dataset ``kspace`` complex ``(slices, coils, H, W)`` (``H`` readout, ``W`` phase encoding),
    centred (DC at index ``n // 2``) for the orthonormal centred FFT :func:`~medgen.physics.mri.ifft2c` (fastMRI's
    ``ifft2c``), an ``ismrmrd_header`` XML dataset and attributes (``acquisition``, ``max``, ``norm``,
    ``patient_id``); test/challenge files add a ``mask`` dataset of the sampled columns. The output is that array
    for the selected slices, ``(S, Nc, H, W)`` complex, which is the batch layout of
    :class:`~medgen.inferers.highfrequency.HighFrequencySpaceInferer` (its meta's ``original_channel_dim`` is 0, so
    ``ensure_channel_first`` leaves it as it is).

    Args:
        slices: which slices to read: an int, a sequence of ints, a :class:`slice`, or ``None`` for all; negative
            indices count from the end.
        dataset: the dataset to read (``"kspace"``, or a maps dataset such as ``"s_maps"``).
        crop: ``None`` (as stored), ``(H, W)``, or ``"header"`` (the header's ``reconSpace`` matrix, e.g. 320 x 320):
            the image is centre-cropped and transformed back, as HFS-SDE prepares fastMRI (only the readout axis may
            be cropped when the file is undersampled, i.e. has a ``mask``).

    Raises:
        ValueError: a bad ``slices`` or ``crop``.
    """

    def __init__(self, slices: int | Sequence[int] | slice | None = None, dataset: str = "kspace", crop: Any = None):
        super().__init__()
        if not (
            slices is None
            or isinstance(slices, slice)
            or (isinstance(slices, (int, np.integer)) and not isinstance(slices, bool))
            or (
                isinstance(slices, Sequence)
                and len(slices) > 0
                and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in slices)
            )
        ):
            raise ValueError(f"slices must be None, an int, a non-empty sequence of ints or a slice, got {slices!r}.")
        if not isinstance(dataset, str) or not dataset:
            raise ValueError(f"dataset must be a dataset name, got {dataset!r}.")
        self.slices = slices
        self.dataset = dataset
        self.crop = _check_crop(crop)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        path = _single_path(filename)
        return path is not None and path.name.lower().endswith(".h5") and path.is_file()

    def _indices(self, count: int, path: Path) -> list[int]:
        if self.slices is None:
            return list(range(count))
        if isinstance(self.slices, slice):
            indices = list(range(count))[self.slices]
        else:
            indices = [int(s) for s in ensure_tuple(self.slices)]
        bad = [s for s in indices if not -count <= s < count]
        if bad or not indices:
            raise ValueError(f"slices {self.slices!r} select nothing valid in {str(path)!r}, which has {count} slices.")
        return [s % count for s in indices]

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> dict[str, Any]:
        """Read the selected slices of ``dataset`` and the file's header and attributes.

        Raises:
            ImportError: ``h5py`` is not installed.
            KeyError: the file has no ``dataset``.
            ValueError: the dataset is not ``(slices, coils, H, W)``, or ``slices`` are out of range.
        """
        if not has_h5py:
            raise ImportError('reading fastMRI .h5 files needs h5py: pip install "medgen[fastmri]" (or h5py).')
        path = _single_path(data)
        if path is None:
            raise ValueError(f"FastMRIKspaceReader reads one file at a time, got {data!r}.")
        with h5py.File(path, "r") as handle:
            if self.dataset not in handle:
                raise KeyError(f"{str(path)!r} has no dataset {self.dataset!r}; it holds {sorted(handle.keys())}.")
            stored = handle[self.dataset]
            if stored.ndim != 4:
                raise ValueError(
                    f"dataset {self.dataset!r} of {str(path)!r} must be multi-coil (slices, coils, H, W), got shape "
                    f"{stored.shape}."
                )
            indices = self._indices(stored.shape[0], path)
            unique = sorted(set(indices))  # h5py reads increasing, distinct indices only
            block = stored[unique]
            array = block if unique == indices else block[[unique.index(i) for i in indices]]
            content: dict[str, Any] = {
                "array": np.asarray(array),
                "indices": indices,
                "num_slices": int(stored.shape[0]),
                "filename": str(path),
                "attributes": {key: handle.attrs[key] for key in handle.attrs},
            }
            if "ismrmrd_header" in handle:
                content["header"] = handle["ismrmrd_header"][()]
            if "mask" in handle:
                content["mask"] = np.asarray(handle["mask"][()], dtype=np.float32)
        return content

    def get_data(self, img: dict[str, Any]) -> tuple[np.ndarray, dict]:
        array = img["array"]
        if not np.iscomplexobj(array):
            raise ValueError(f"dataset {self.dataset!r} must be complex, got {array.dtype}.")
        meta: dict[str, Any] = {
            "slice_indices": list(img["indices"]),
            "num_slices": img["num_slices"],
            "original_channel_dim": 0,
            "dataset": self.dataset,
        }
        for key, value in img["attributes"].items():
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, np.generic):
                value = value.item()
            meta[key] = value
        sizes = read_ismrmrd_header(img["header"]) if "header" in img else {}
        meta.update(sizes)
        undersampled = "mask" in img
        if undersampled:
            meta["sampling_mask"] = img["mask"]
        kspace = torch.from_numpy(np.ascontiguousarray(array))
        crop = self.crop
        if crop == "header":
            if "recon_size" not in sizes:
                raise ValueError("crop='header' needs the ismrmrd_header's reconSpace matrix size, which is missing.")
            crop = sizes["recon_size"][:2]
        if crop is not None:
            kspace = _centre_crop_kspace(kspace, crop, undersampled)
            meta["crop"] = list(crop)
        meta["spatial_shape"] = np.asarray(kspace.shape[-2:])
        return kspace.numpy(), meta


def _default_readers() -> list[ImageReader]:
    return [DicomSeriesReader(), BraTSCaseReader(), FastMRIKspaceReader()]


class LoadScan(LoadImage):
    """:class:`monai.transforms.LoadImage` that also recognises DICOM series folders, BraTS case folders and fastMRI
    ``.h5`` files (see the module docstring); every other file goes to MONAI's readers as usual.

    Real data are cast to ``dtype``; complex data (k-space) to the complex dtype of the same precision.

    Args:
        reader: a reader (instance, class or name) to use instead of choosing by file type; one reader is used alone
            (its errors are raised), several are tried in turn as ``LoadImage`` does.
        image_only: return only the MetaTensor (default) or ``(image, meta)``.
        dtype: floating dtype of the result (``None``: as stored).
        ensure_channel_first: move/add the channel axis first (for the k-space stack a no-op).
        kwargs: other :class:`monai.transforms.LoadImage` arguments.
    """

    def __init__(
        self,
        reader: ImageReader | str | type | None = None,
        image_only: bool = True,
        dtype: DtypeLike | None = np.float32,
        ensure_channel_first: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(reader, image_only, None, ensure_channel_first, **kwargs)
        self.output_dtype = dtype
        # one given reader is used alone, so its errors reach the caller (LoadImage would try every other reader)
        self.chosen_reader = self.readers[-1] if reader is not None and len(ensure_tuple(reader)) == 1 else None
        if reader is None:
            for extra in _default_readers():  # registered last = tried first; each claims only its own inputs
                self.register(extra)

    def __call__(self, filename: Sequence[PathLike] | PathLike, reader: ImageReader | None = None) -> Any:
        out = super().__call__(filename, reader or self.chosen_reader)
        image = out if self.image_only else out[0]
        if self.output_dtype is not None:
            real = get_equivalent_dtype(self.output_dtype, torch.Tensor)
            complex_ = torch.complex128 if real == torch.float64 else torch.complex64
            image = image.to(complex_ if image.is_complex() else real)
        return image if self.image_only else (image, out[1])


class LoadScand(LoadImaged):
    """Dictionary-based wrapper of :class:`LoadScan` (a :class:`monai.transforms.LoadImaged` with its loader).

    Args:
        keys: keys holding paths.
        reader, dtype, image_only, ensure_channel_first: see :class:`LoadScan`.
        allow_missing_keys: don't raise for missing keys.
        kwargs: other :class:`monai.transforms.LoadImaged` arguments.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reader: ImageReader | str | type | None = None,
        dtype: DtypeLike | None = np.float32,
        image_only: bool = True,
        ensure_channel_first: bool = False,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            keys,
            reader,
            dtype,
            image_only=image_only,
            ensure_channel_first=ensure_channel_first,
            allow_missing_keys=allow_missing_keys,
            **kwargs,
        )
        self._loader = LoadScan(reader, image_only, dtype, ensure_channel_first)


class LoadBraTSCased(MapTransform):
    """Load a BraTS-style case folder into one key per contrast: ``d[prefix + name]`` for each name present.

    Each contrast is a channel-first ``(1, X, Y, Z)`` MetaTensor (affine, file name), cast to ``dtype``; the
    segmentation (``seg``, if present and in ``names``) is cast to ``seg_dtype``. All files of a case must share
    shape and affine.

    Args:
        keys: key(s) holding the case folder path.
        names: canonical names to load (default: the four contrasts and ``seg``).
        required: names that must be present (e.g. cWDM's three conditions); missing ones raise.
        prefix: prefix of the output keys (default none: ``d["t1"]``, ...).
        dtype: dtype of the contrasts.
        seg_dtype: dtype of the segmentation.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: an unknown name, or a required name not in ``names``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        names: Sequence[str] = (*BRATS_CONTRASTS, BRATS_SEGMENTATION),
        required: Sequence[str] = (),
        prefix: str = "",
        dtype: DtypeLike = np.float32,
        seg_dtype: DtypeLike = np.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        valid = (*BRATS_CONTRASTS, BRATS_SEGMENTATION)
        names, required = tuple(names), tuple(required)
        unknown = [n for n in (*names, *required) if n not in valid]
        if unknown:
            raise ValueError(f"names must be taken from {valid}, got unknown {unknown}.")
        outside = [n for n in required if n not in names]
        if outside:
            raise ValueError(f"required names {outside} are not among the loaded names {names}.")
        self.names, self.required, self.prefix = names, required, prefix
        self.loader = LoadImage(NibabelReader(), image_only=True, dtype=None, ensure_channel_first=True)
        self.dtype, self.seg_dtype = dtype, seg_dtype

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            folder = d[key]
            files = find_brats_files(folder)
            missing = [n for n in self.required if n not in files]
            if missing:
                raise FileNotFoundError(
                    f"BraTS case {str(folder)!r} lacks the required {missing}; it holds "
                    f"{ {n: p.name for n, p in files.items()} }."
                )
            loaded = {}
            for name in self.names:
                if name in files:
                    dtype = self.seg_dtype if name == BRATS_SEGMENTATION else self.dtype
                    loaded[name] = self.loader(files[name]).to(get_equivalent_dtype(dtype, torch.Tensor))
            if not loaded:
                raise FileNotFoundError(f"BraTS case {str(folder)!r} has none of {self.names}.")
            first = next(iter(loaded))
            for name, image in loaded.items():
                if image.shape != loaded[first].shape or not torch.allclose(
                    image.affine, loaded[first].affine, atol=1e-3
                ):
                    raise ValueError(
                        f"the files of case {str(folder)!r} must share shape and affine; {name!r} has shape "
                        f"{tuple(image.shape)} and affine\n{image.affine}\nbut {first!r} has {tuple(loaded[first].shape)} "
                        f"and\n{loaded[first].affine}."
                    )
            d.update({self.prefix + name: image for name, image in loaded.items()})
        return d


class LoadFastMRId(MapTransform):
    """Load fastMRI k-space slices and their coil sensitivity maps: ``d[key]`` and ``d[maps_key]``, both
    ``(S, Nc, H, W)`` complex MetaTensors.

    The maps are read from the file when it holds a maps dataset (:data:`FASTMRI_MAPS_DATASETS`, or
    ``maps_dataset``), with the same slices and crop; otherwise they are estimated from the k-space by ESPIRiT
    (:class:`~medgen.transforms.kspace.EstimateCoilSensitivity` ``method="espirit"``) on a calibration block of
    ``acs_lines`` (default: the contiguous sampled columns around the centre, at most 24) per slice. HFS-SDE computes
    its maps with BART ``ecalib -m1 -W -c0``: one set of maps, no crop below an eigenvalue threshold, hence
    ``espirit_crop=0``. Normalise with :class:`~medgen.transforms.normalize.InvertibleKspaceStdNormalized` next.

    Args:
        keys: key(s) holding the ``.h5`` path; replaced by the k-space.
        maps_key: output key of the maps (one per key).
        slices, crop: see :class:`FastMRIKspaceReader`.
        maps_dataset: name of a maps dataset to read (``None``: the first of :data:`FASTMRI_MAPS_DATASETS` present,
            else estimate).
        acs_lines: ESPIRiT calibration width (``None``: inferred from the sampled centre, at most 24).
        kernel_width: ESPIRiT kernel width.
        svd_threshold: ESPIRiT singular-value threshold.
        espirit_crop: ESPIRiT eigenvalue threshold below which the maps are 0 (HFS-SDE: 0).
        grid_stride: ESPIRiT eigen-decomposition grid stride.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        maps_key: str = "sensitivity_maps",
        slices: int | Sequence[int] | slice | None = None,
        crop: Any = None,
        maps_dataset: str | None = None,
        acs_lines: int | None = None,
        kernel_width: int = 6,
        svd_threshold: float = 0.02,
        espirit_crop: float = 0.0,
        grid_stride: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"LoadFastMRId loads one k-space key (its maps go to maps_key), got keys {self.keys}.")
        self.maps_key = maps_key
        self.reader = FastMRIKspaceReader(slices, "kspace", crop)
        self.slices, self.crop, self.maps_dataset = slices, crop, maps_dataset
        self.acs_lines = acs_lines
        self.espirit = dict(
            kernel_width=kernel_width, svd_threshold=svd_threshold, crop=espirit_crop, grid_stride=grid_stride
        )
        EstimateCoilSensitivity(acs_lines or kernel_width, method="espirit", **self.espirit)  # validates the options

    def _maps_dataset(self, path: str) -> str | None:
        if not has_h5py:
            return None
        with h5py.File(path, "r") as handle:
            if self.maps_dataset is not None:
                if self.maps_dataset not in handle:
                    raise KeyError(f"{path!r} has no maps dataset {self.maps_dataset!r}; it holds {sorted(handle)}.")
                return self.maps_dataset
            return next((name for name in FASTMRI_MAPS_DATASETS if name in handle), None)

    def estimate_maps(self, kspace: torch.Tensor) -> torch.Tensor:
        """ESPIRiT maps ``(S, Nc, H, W)`` of k-space ``(S, Nc, H, W)``, one calibration per slice.

        Raises:
            ValueError: the sampled centre is narrower than the kernel (or than a given ``acs_lines``).
        """
        available = centre_sampled_width(kspace)
        width = min(24, available, *kspace.shape[-2:]) if self.acs_lines is None else self.acs_lines
        if self.acs_lines is not None and self.acs_lines > available:
            raise ValueError(
                f"acs_lines={self.acs_lines} but only {available} contiguous columns around the k-space centre are "
                "sampled; ESPIRiT needs a fully sampled calibration block."
            )
        if width < self.espirit["kernel_width"]:
            raise ValueError(
                f"only {available} contiguous columns around the k-space centre are sampled, fewer than ESPIRiT's "
                f"kernel_width={self.espirit['kernel_width']}: coil maps cannot be estimated; supply maps in the file."
            )
        estimate = EstimateCoilSensitivity(width, method="espirit", **self.espirit)
        plain = kspace.as_tensor() if isinstance(kspace, MetaTensor) else kspace
        return estimate(plain.movedim(0, 1)).movedim(1, 0).contiguous()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            kspace = LoadScan(self.reader, dtype=None)(path)
            dataset = self._maps_dataset(path)
            if dataset is not None:
                maps = LoadScan(FastMRIKspaceReader(self.slices, dataset, self.crop), dtype=None)(path)
                if maps.shape != kspace.shape:
                    raise ValueError(
                        f"maps dataset {dataset!r} of {path!r} has shape {tuple(maps.shape)}, the k-space "
                        f"{tuple(kspace.shape)}."
                    )
                maps = maps.to(kspace.dtype)
            else:
                maps = MetaTensor(self.estimate_maps(kspace), meta=dict(kspace.meta))
            maps.meta["maps_source"] = dataset or "espirit"
            d[key], d[self.maps_key] = kspace, maps
        return d


def scan_name(path: PathLike) -> str:
    """A name for a scan's outputs: the file name without its image suffix, or the folder name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in sorted(SCAN_FILE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_scans(paths: PathLike | Sequence[PathLike], recursive: bool = False) -> list[str]:
    """The inputs named by ``paths``: each file, DICOM series folder and BraTS case folder is one scan.

    A path that is itself a scan (a file, a series or a case folder) is kept; any other folder is searched for files
    with :data:`SCAN_FILE_SUFFIXES` and for series/case sub-folders (``recursive``: at any depth).

    Args:
        paths: one path or several.
        recursive: search sub-folders of sub-folders.

    Returns:
        sorted scan paths (as strings), without duplicates, in the order of ``paths``.

    Raises:
        FileNotFoundError: a path does not exist, or nothing is found.
    """
    found: list[str] = []
    for item in ensure_tuple(paths):
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"input {str(path)!r} does not exist.")
        if path.is_file() or is_dicom_series(path) or is_brats_case(path):
            found.append(str(path))
            continue
        for child in sorted(path.iterdir()):
            if child.is_file() and child.name.lower().endswith(SCAN_FILE_SUFFIXES):
                found.append(str(child))
            elif child.is_dir() and (is_dicom_series(child) or is_brats_case(child)):
                found.append(str(child))
            elif child.is_dir() and recursive:
                try:
                    found.extend(find_scans(child, recursive=True))
                except FileNotFoundError:
                    pass
    unique = list(dict.fromkeys(found))
    if not unique:
        raise FileNotFoundError(f"no scans (files {SCAN_FILE_SUFFIXES}, DICOM series or BraTS cases) in {paths!r}.")
    return unique


def scan_dataset(
    paths: PathLike | Sequence[PathLike],
    transform: Callable[[dict], Any] | None = None,
    key: str = "image",
    recursive: bool = False,
) -> Dataset:
    """A MONAI :class:`~monai.data.Dataset` of the scans in ``paths``: items ``{key: path, "name": scan_name}``.

    Args:
        paths: files and/or folders (see :func:`find_scans`).
        transform: the per-item pipeline (e.g. ``Compose([LoadScand(key, ensure_channel_first=True), ...])``).
        key: the key holding each path.
        recursive: search folders recursively.
    """
    items = [{key: path, "name": scan_name(path)} for path in find_scans(paths, recursive)]
    return Dataset(items, transform)


def scan_dataloader(
    paths: PathLike | Sequence[PathLike],
    transform: Callable[[dict], Any] | None = None,
    key: str = "image",
    batch_size: int = 1,
    num_workers: int = 0,
    recursive: bool = False,
) -> DataLoader:
    """A MONAI :class:`~monai.data.DataLoader` over :func:`scan_dataset` (in order, no shuffling).

    ``batch_size > 1`` needs scans of one size after ``transform``; invert per item after ``decollate_batch``.
    """
    return DataLoader(scan_dataset(paths, transform, key, recursive), batch_size=batch_size, num_workers=num_workers)


LoadScanD = LoadScanDict = LoadScand
LoadBraTSCaseD = LoadBraTSCaseDict = LoadBraTSCased
LoadFastMRID = LoadFastMRIDict = LoadFastMRId
