"""Make ``tests/data/espirit_sigpy_reference.pt``: sigpy's ESPIRiT maps of a small simulated multi-coil k-space.

The k-space is a 48 x 48 Shepp-Logan phantom (scikit-image, resized) times 6 birdcage coil maps
(:func:`medgen.transforms.kspace.birdcage_sensitivity_maps`), centred orthonormal FFT, plus complex Gaussian noise of
standard deviation 1e-3 (seed 0). The file stores that k-space (complex64) and ``sigpy.mri.app.EspiritCalib`` maps and
eigenvalues of it with sigpy's defaults (calib_width 24, kernel_width 6, thresh 0.02, crop 0.95, 100 power
iterations), so tests/transforms/test_espirit.py checks medgen against sigpy without sigpy installed.

Requirements (not medgen dependencies): ``pip install --no-deps sigpy`` plus ``numba`` and ``scikit-image``. Run from
the repository root::

    python tests/data/make_espirit_reference.py

It refuses to overwrite an existing file (delete it first to regenerate).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

OUTPUT = Path(__file__).parent / "espirit_sigpy_reference.pt"
SIZE, COILS, NOISE = 48, 6, 1e-3


def main() -> None:
    import sigpy
    import sigpy.mri
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from medgen.physics.mri import fft2c
    from medgen.transforms.kspace import birdcage_sensitivity_maps

    if OUTPUT.exists():
        sys.exit(f"{OUTPUT} exists; delete it to regenerate.")
    image = torch.from_numpy(resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True)).to(torch.complex64)
    maps = birdcage_sensitivity_maps((SIZE, SIZE), num_coils=COILS).to(torch.complex64)
    noise = torch.randn(COILS, SIZE, SIZE, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    kspace = fft2c(maps * image) + NOISE * noise
    espirit, eigenvalues = sigpy.mri.app.EspiritCalib(
        kspace.numpy(), output_eigenvalue=True, show_pbar=False
    ).run()
    reference = {
        "sigpy_version": sigpy.__version__,
        "kspace": kspace,
        "image": image.real.float(),
        "maps": torch.from_numpy(np.ascontiguousarray(espirit)).to(torch.complex64),
        "eigenvalues": torch.from_numpy(np.ascontiguousarray(eigenvalues)).real.float(),
        "options": {"calib_width": 24, "kernel_width": 6, "threshold": 0.02, "crop": 0.95},
    }
    handle, tmp = tempfile.mkstemp(dir=OUTPUT.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(reference, tmp)
        os.link(tmp, OUTPUT)  # fails instead of overwriting a file created meanwhile
    finally:
        os.unlink(tmp)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
