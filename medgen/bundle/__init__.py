"""The edge of a bundle run: what a user passes is checked in one place before a network is loaded.

- :class:`BundleEdge` (:mod:`medgen.bundle.edge`): the first and last item of every bundle's ``run``: checks keys,
  files, values, shapes, memory, the output folder and the checkpoint folder, hands on the checked inputs, and
  closes the run with a summary;
- :mod:`medgen.bundle.arguments`: the keys given to ``monai.bundle run`` and the refusal of undeclared ones;
- :mod:`medgen.bundle.inputs`: reading input files and checking what they hold;
- :mod:`medgen.bundle.resources`: memory estimate against what is available, a writable output folder;
- :mod:`medgen.bundle.record`: the identity of a run kept beside its checkpoints, so only the same run continues;
- :mod:`medgen.bundle.summary`: the closing summary;
- :mod:`medgen.bundle.cascade`: :class:`TwoStageInferer`, a low-resolution stage conditioning a high-resolution one;
- :mod:`medgen.bundle.errors`: :class:`BundleInputError` and its one-line display on the command line.
"""

from __future__ import annotations

from medgen.bundle.errors import BundleInputError, bundle_input_error, show_bundle_errors_briefly
from medgen.bundle.arguments import GivenArguments, check_keys, closest_key, given_arguments
from medgen.bundle.inputs import (
    check_affine,
    check_nifti_header,
    check_not_all_zero,
    check_values,
    read_file,
    read_npz,
)
from medgen.bundle.resources import available_memory, check_memory, check_output_dir, format_bytes, largest_slice
from medgen.bundle.record import RunRecord, check_run_record, file_digest
from medgen.bundle.summary import format_summary
from medgen.bundle.edge import INPUT_KINDS, BundleEdge, default_image_reader, run_folder
from medgen.bundle.cascade import TwoStageInferer

__all__ = [
    "BundleEdge",
    "INPUT_KINDS",
    "default_image_reader",
    "run_folder",
    "BundleInputError",
    "bundle_input_error",
    "show_bundle_errors_briefly",
    "GivenArguments",
    "given_arguments",
    "check_keys",
    "closest_key",
    "read_file",
    "read_npz",
    "check_values",
    "check_affine",
    "check_nifti_header",
    "check_not_all_zero",
    "available_memory",
    "check_memory",
    "check_output_dir",
    "format_bytes",
    "largest_slice",
    "RunRecord",
    "check_run_record",
    "file_digest",
    "format_summary",
    "TwoStageInferer",
]
