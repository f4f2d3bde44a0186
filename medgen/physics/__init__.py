"""Linear forward operators A, A^H (and pseudo-inverses) shared by transforms and inferers."""

from __future__ import annotations

from medgen.physics.base import (
    LinearOperator,
    ComposedOperator,
    inner_product,
)
from medgen.physics.zaxis import (
    ZAxisAverage,
    decoupling_matrix,
)
from medgen.physics.mri import (
    fft2c,
    ifft2c,
    fft2_tpdm,
    ifft2_tpdm,
    complex_to_channels,
    channels_to_complex,
    CartesianMRI,
)
from medgen.physics.ct import (
    ParallelBeamCT,
    FBP_FILTERS,
    fbp_filter_response,
)
from medgen.physics.mask import (
    Inpainting,
)
from medgen.physics.blur import (
    Blur,
    Downsample,
    gaussian_kernel,
    uniform_kernel,
)

__all__ = [
    "LinearOperator",
    "ComposedOperator",
    "inner_product",
    "ZAxisAverage",
    "decoupling_matrix",
    "fft2c",
    "ifft2c",
    "fft2_tpdm",
    "ifft2_tpdm",
    "complex_to_channels",
    "channels_to_complex",
    "CartesianMRI",
    "ParallelBeamCT",
    "FBP_FILTERS",
    "fbp_filter_response",
    "Inpainting",
    "Blur",
    "Downsample",
    "gaussian_kernel",
    "uniform_kernel",
]
