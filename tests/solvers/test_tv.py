"""Tests for medgen.solvers.tv: differences, TV norm, TV prox and TV-PDHG (against scikit-image's Chambolle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.physics.base import inner_product
from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI, complex_to_channels
from medgen.solvers.tv import TVPDHG, finite_differences, finite_differences_adjoint, tv_norm, tv_prox
from tests.solvers.helpers import Identity, disk_phantom, generator

denoise_tv_chambolle = pytest.importorskip("skimage.restoration").denoise_tv_chambolle


def _rof_objective(x, v, lam, spatial_dims=2):
    return 0.5 * ((x - v).abs() ** 2).reshape(x.shape[0], -1).sum(1) + lam * tv_norm(x, spatial_dims)


def _noisy_disks(batch=2, size=24, noise=0.1, seed=1):
    clean = disk_phantom(size, batch)
    return clean, clean + noise * torch.randn(clean.shape, dtype=clean.dtype, generator=generator(seed))


def _chambolle(v: torch.Tensor, lam: float) -> torch.Tensor:
    """scikit-image's isotropic ROF solution of every item (channels separately), run to a tight tolerance."""
    out = np.stack([denoise_tv_chambolle(item[0].numpy(), weight=lam, eps=1e-12, max_num_iter=4000) for item in v])
    return torch.from_numpy(out)[:, None]


@pytest.mark.parametrize("boundary", ["neumann", "circular"])
@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 3, 6, 7)), (3, (1, 2, 5, 6, 4))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_differences_adjoint(boundary, spatial_dims, shape, dtype):
    x = torch.randn(shape, dtype=dtype, generator=generator(0))
    g = torch.randn((shape[0], spatial_dims, *shape[1:]), dtype=dtype, generator=generator(1))
    dx = finite_differences(x, spatial_dims, boundary)
    assert dx.shape == g.shape
    lhs, rhs = inner_product(dx, g), inner_product(x, finite_differences_adjoint(g, spatial_dims, boundary))
    assert abs(float(lhs - rhs)) <= 1e-12 * float(dx.norm() * g.norm())


def test_tv_norm_of_a_step_and_of_complex_images():
    x = torch.zeros(1, 1, 8, 10, dtype=torch.float64)
    x[..., :, 4:] = 2.0  # a vertical edge of height 8 and jump 2
    torch.testing.assert_close(tv_norm(x), torch.tensor([16.0], dtype=torch.float64))
    torch.testing.assert_close(tv_norm(x, boundary="circular"), torch.tensor([32.0], dtype=torch.float64))
    z = torch.randn(2, 1, 6, 6, dtype=torch.complex128, generator=generator(2))
    torch.testing.assert_close(tv_norm(z), tv_norm(complex_to_channels(z)))  # coupled channels = complex modulus
    torch.testing.assert_close(tv_norm(z, isotropic=False), finite_differences(z).abs().sum(dim=(1, 2, 3, 4)))


@pytest.mark.parametrize("lam", [0.05, 0.2])
def test_tv_prox_equals_scikit_image_chambolle(lam):
    _, noisy = _noisy_disks(size=16)
    reference = _chambolle(noisy, lam)
    x = tv_prox(noisy, lam, max_iter=1000, tol=1e-9)
    # both solve the same strictly convex problem: objective values agree to 1e-6, images to 1e-3 of their range
    f_ours, f_ref = _rof_objective(x, noisy, lam), _rof_objective(reference, noisy, lam)
    assert torch.all(f_ours <= f_ref * (1 + 1e-6))
    torch.testing.assert_close(x, reference, atol=1e-3, rtol=0)


def test_tv_prox_3d_equals_scikit_image_chambolle():
    volume = torch.rand(1, 1, 8, 8, 8, dtype=torch.float64, generator=generator(3))
    reference = torch.from_numpy(denoise_tv_chambolle(volume[0, 0].numpy(), weight=0.1, eps=1e-12,
                                                      max_num_iter=4000))[None, None]
    x = tv_prox(volume, 0.1, spatial_dims=3, max_iter=1000, tol=1e-9)
    assert float(_rof_objective(x, volume, 0.1, 3)) <= float(_rof_objective(reference, volume, 0.1, 3)) * (1 + 1e-6)
    torch.testing.assert_close(x, reference, atol=1e-3, rtol=0)


def test_tv_prox_box_zero_lambda_and_per_item_lambda():
    _, noisy = _noisy_disks()
    torch.testing.assert_close(tv_prox(noisy, 0.0, box=(0.0, 1.0)), noisy.clamp(0, 1))
    boxed = tv_prox(noisy, 0.1, box=(0.0, 0.5), max_iter=50)
    assert float(boxed.min()) >= 0.0 and float(boxed.max()) <= 0.5
    lam = torch.tensor([0.05, 0.2], dtype=torch.float64)
    both = tv_prox(noisy, lam, max_iter=200, tol=1e-8)
    for b in range(2):
        torch.testing.assert_close(both[b : b + 1], tv_prox(noisy[b : b + 1], float(lam[b]), max_iter=200, tol=1e-8))


def test_pdhg_denoising_equals_scikit_image_and_decreases_the_objective():
    _, noisy = _noisy_disks(size=16)
    lam = 0.1
    reference = _chambolle(noisy, lam)
    f_ref = _rof_objective(reference, noisy, lam)
    objectives = []
    for iterations in (10, 50, 200, 1500):
        x = TVPDHG(Identity(), lam=lam, max_iter=iterations, tol=0.0, operator_norm=1.0)(noisy)
        objectives.append(_rof_objective(x, noisy, lam))
    gaps = [((f - f_ref) / f_ref) for f in objectives]
    for earlier, later in zip(gaps, gaps[1:]):
        assert torch.all(later < earlier)
    assert torch.all(gaps[-1].abs() < 1e-5)
    torch.testing.assert_close(x, reference, atol=5e-3, rtol=0)


def test_pdhg_sparse_view_ct_box_and_batch_independence():
    op = ParallelBeamCT(16, 8)
    truth = disk_phantom(16, 2)
    y = op(truth)
    solver = TVPDHG(op, lam=torch.tensor([1e-3, 1e-2], dtype=torch.float64), box=(0.0, 1.0), max_iter=150)
    x = solver(y)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert solver.info.psnr is None
    for b in range(2):
        alone = TVPDHG(op, lam=float(solver.info.lam[b]), box=(0.0, 1.0), max_iter=150)(y[b : b + 1])
        torch.testing.assert_close(x[b : b + 1], alone, atol=1e-10, rtol=0)
    error = ((x - truth) ** 2).mean()
    assert float(error) < float(((op.pseudo_inverse(y).clamp(0, 1) - truth) ** 2).mean())


def test_pdhg_complex_mri_equals_the_channel_layout():
    mask = torch.zeros(16, 16, dtype=torch.float64)
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    phase = torch.exp(1j * torch.linspace(0, 1, 16, dtype=torch.float64))[None, None, None, :]
    image = disk_phantom(16, 1) * phase
    complex_op = CartesianMRI(mask)
    channel_op = CartesianMRI(mask, channels=True)
    y = complex_op(image)
    settings = dict(lam=1e-3, max_iter=200, tol=0.0)
    x = TVPDHG(complex_op, **settings)(y)
    x_channels = TVPDHG(channel_op, **settings)(complex_to_channels(y))
    assert x.is_complex()
    torch.testing.assert_close(complex_to_channels(x), x_channels, atol=1e-9, rtol=0)
    assert float((x - image).abs().max()) < float((complex_op.adjoint(y) - image).abs().max())


def test_pdhg_3d_float32():
    volume = disk_phantom(8, 1, torch.float32)[:, :, :, :, None].expand(1, 1, 8, 8, 8).clone()
    noisy = volume + 0.1 * torch.randn(volume.shape, generator=generator(4))
    x = TVPDHG(Identity(), lam=0.05, spatial_dims=3, max_iter=1000, tol=1e-6)(noisy)
    assert x.dtype == torch.float32
    expected = tv_prox(noisy.double(), 0.05, spatial_dims=3, max_iter=2000, tol=1e-10)
    torch.testing.assert_close(x.double(), expected, atol=2e-3, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        TVPDHG(Identity(), lam=0.1, spatial_dims=4)
    with pytest.raises(ValueError, match="box"):
        TVPDHG(Identity(), lam=0.1, box=(0, 0))
    with pytest.raises(ValueError, match="boundary"):
        TVPDHG(Identity(), lam=0.1, boundary="reflect")
    with pytest.raises(ValueError, match="step_ratio"):
        TVPDHG(Identity(), lam=0.1, step_ratio=0)
    with pytest.raises(TypeError, match="box"):
        TVPDHG(Identity(), lam=0.1, box=(0, 1))(torch.zeros(1, 1, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="3 spatial axes"):
        TVPDHG(Identity(), lam=0.1, spatial_dims=3)(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="lam"):
        tv_prox(torch.zeros(1, 1, 4, 4), "oracle")
    with pytest.raises(TypeError, match="box"):
        tv_prox(torch.zeros(1, 1, 4, 4, dtype=torch.complex64), 0.1, box=(0, 1))
