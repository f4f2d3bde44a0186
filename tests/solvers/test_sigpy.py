"""Agreement with sigpy's MRI reconstructions (``sigpy.mri.app.L1WaveletRecon`` / ``TotalVariationRecon``).

``tests/data/solvers/sigpy_reference.pt`` holds sigpy 0.1.27's converged results on a tiny 4-coil problem (made by
``tests/data/solvers/make_sigpy_reference.py``), so the comparison runs without sigpy; with sigpy installed the
reference is also recomputed. sigpy's objectives are ``1/2 ||P F S x - y||^2 + lam ||W x||_1`` (Haar, every
coefficient penalised) and ``+ lam sum |D_a x|`` (anisotropic TV of circular differences); medgen's solvers take
``shrink_approximation=True`` and ``isotropic=False, boundary="circular"`` for the same problems.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.physics.mri import CartesianMRI
from medgen.solvers import TVPDHG, L1WaveletFISTA

REFERENCE = Path(__file__).parents[1] / "data" / "solvers" / "sigpy_reference.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def _operator_and_measurement(data):
    return CartesianMRI(data["mask"], data["maps"][None]), data["kspace"][None]


def test_l1_wavelet_matches_stored_sigpy(reference):
    op, y = _operator_and_measurement(reference)
    solver = L1WaveletFISTA(op, lam=reference["settings"]["l1_lamda"], wavelet="haar", shrink_approximation=True,
                            max_iter=2000, tol=1e-10)
    x = solver(y)
    scale = float(reference["l1_wavelet"].abs().max())
    torch.testing.assert_close(x[0, 0], reference["l1_wavelet"], atol=1e-7 * scale, rtol=0)


def test_tv_matches_stored_sigpy(reference):
    op, y = _operator_and_measurement(reference)
    solver = TVPDHG(op, lam=reference["settings"]["tv_lamda"], isotropic=False, boundary="circular", max_iter=3000,
                    tol=1e-10)
    x = solver(y)
    scale = float(reference["tv"].abs().max())
    torch.testing.assert_close(x[0, 0], reference["tv"], atol=1e-6 * scale, rtol=0)


def test_sigpy_reproduces_the_stored_reference(reference):
    app = pytest.importorskip("sigpy.mri.app")
    y, maps = reference["kspace"].numpy(), reference["maps"].numpy()
    settings = reference["settings"]
    l1 = app.L1WaveletRecon(y, maps, settings["l1_lamda"], wave_name="haar", max_iter=500, show_pbar=False).run()
    tv = app.TotalVariationRecon(y, maps, settings["tv_lamda"], max_iter=2000, show_pbar=False).run()
    # fewer iterations than the stored run: sigpy's own convergence sets these tolerances (relative to max |x| ~ 1.4)
    torch.testing.assert_close(torch.from_numpy(l1), reference["l1_wavelet"], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.from_numpy(tv), reference["tv"], atol=2e-3, rtol=0)
