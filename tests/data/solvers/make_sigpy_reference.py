"""Regenerate ``sigpy_reference.pt``: sigpy's L1-wavelet and TV reconstructions of a tiny multi-coil MRI problem.

Run from the repository root with sigpy installed (``pip install --no-deps sigpy`` plus ``numba``)::

    python tests/data/solvers/make_sigpy_reference.py

The problem is built with torch (seeded), the reconstructions with ``sigpy.mri.app.L1WaveletRecon`` (Haar, all
coefficients penalised) and ``sigpy.mri.app.TotalVariationRecon`` (anisotropic TV of circular differences), run long
enough to converge; ``tests/solvers/test_sigpy.py`` compares medgen's solvers with the stored results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SETTINGS = {"l1_lamda": 0.01, "tv_lamda": 0.005, "l1_iterations": 3000, "tv_iterations": 5000}


def problem() -> dict[str, torch.Tensor]:
    """A 16 x 16 complex image, 4 unit-RSS coil maps and a column mask (4 central + every 3rd column)."""
    generator = torch.Generator().manual_seed(11)
    axis = torch.linspace(-1, 1, 16, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    image = ((rows**2 + cols**2) < 0.5).double() + 0.5 * ((rows.abs() < 0.3) & (cols.abs() < 0.2)).double()
    image = image * torch.exp(1j * 0.5 * rows)
    maps = torch.randn(4, 16, 16, dtype=torch.complex128, generator=generator)
    maps = maps + 3.0  # smooth-ish, non-vanishing coils
    maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()
    mask = torch.zeros(16, 16, dtype=torch.float64)
    mask[:, ::3] = 1
    mask[:, 6:10] = 1
    kspace = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(maps * image, dim=(-2, -1)), norm="ortho"),
                                dim=(-2, -1))
    noise = 0.02 * torch.complex(torch.randn(4, 16, 16, dtype=torch.float64, generator=generator),
                                 torch.randn(4, 16, 16, dtype=torch.float64, generator=generator))
    return {"image": image, "maps": maps, "mask": mask, "kspace": (kspace + noise) * mask}


def main() -> None:
    import sigpy.mri.app as app

    data = problem()
    y, maps = data["kspace"].numpy(), data["maps"].numpy()
    l1 = app.L1WaveletRecon(y, maps, SETTINGS["l1_lamda"], wave_name="haar", max_iter=SETTINGS["l1_iterations"],
                            show_pbar=False).run()
    tv = app.TotalVariationRecon(y, maps, SETTINGS["tv_lamda"], max_iter=SETTINGS["tv_iterations"],
                                 show_pbar=False).run()
    import sigpy

    out = {**data, "l1_wavelet": torch.from_numpy(np.asarray(l1)), "tv": torch.from_numpy(np.asarray(tv)),
           "settings": SETTINGS, "sigpy_version": sigpy.__version__}
    torch.save(out, Path(__file__).with_name("sigpy_reference.pt"))


if __name__ == "__main__":
    main()
