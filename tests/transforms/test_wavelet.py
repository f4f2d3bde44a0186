"""Tests for medgen.transforms.wavelet: parity with WDM's DWT_3D/IDWT_3D, PyWavelets oracle, MONAI transforms."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medgen.transforms.wavelet import (
    SUBBAND_NAMES,
    HaarDWT3D,
    HaarDWT3DD,
    HaarDWT3Dd,
    HaarDWT3DDict,
    HaarIDWT3D,
    HaarIDWT3Dd,
    dwt3d,
    dwt_affine,
    haar_dwt3d,
    haar_idwt3d,
    idwt3d,
)
from tests.conftest import load_parity

PYWT_KEYS = ["".join("a" if ch == "L" else "d" for ch in name) for name in SUBBAND_NAMES]


@pytest.fixture(scope="module")
def ref():
    return load_parity("wdm_dwt3d")


def _pywt_stack(volume: np.ndarray, wavelet: str, mode: str) -> np.ndarray:
    coeffs = pywt.dwtn(volume, wavelet, mode=mode)
    return np.stack([coeffs[k] for k in PYWT_KEYS])


# ---------------------------------------------------------------------------------------------------------------
# parity with the official WDM code (float32)
# ---------------------------------------------------------------------------------------------------------------
def test_parity_subbands_and_recon(ref):
    assert list(ref["subband_order"]) == list(SUBBAND_NAMES)
    coeffs = haar_dwt3d(ref["x"])
    assert coeffs.shape == ref["subbands"].shape == (2, 8, 8, 8, 8)
    assert (coeffs - ref["subbands"]).abs().max() <= 1e-6
    assert (haar_idwt3d(ref["subbands"]) - ref["recon"]).abs().max() <= 1e-6
    assert (haar_idwt3d(coeffs) - ref["x"]).abs().max() <= 1e-6


def test_parity_wdm_stacked_lll_over_3(ref):
    stacked = haar_dwt3d(ref["x"], lll_scale=3.0)
    assert (stacked - ref["wdm_stacked"]).abs().max() <= 1e-6
    # only LLL is scaled, and the inverse multiplies it back
    assert torch.allclose(stacked[:, 1:], ref["subbands"][:, 1:], atol=1e-6)
    assert (haar_idwt3d(stacked, lll_scale=3.0) - ref["x"]).abs().max() <= 1e-6


def test_parity_noncubic(ref):
    coeffs = haar_dwt3d(ref["x_noncubic"])
    assert coeffs.shape == ref["subbands_noncubic"].shape == (1, 8, 4, 6, 8)
    assert (coeffs - ref["subbands_noncubic"]).abs().max() <= 1e-6
    assert (haar_idwt3d(ref["subbands_noncubic"]) - ref["recon_noncubic"]).abs().max() <= 1e-6


def test_depth_larger_than_height_width_works(ref):
    # the official code crashes here (recorded error string); medgen handles any depth
    assert "RuntimeError" in ref["depth_gt_hw_error"]
    x = ref["x_depth_gt_hw"]
    coeffs = haar_dwt3d(x)
    assert coeffs.shape == (1, 8, 8, 6, 4)
    expected = _pywt_stack(x[0, 0].double().numpy(), "haar", "periodization")
    np.testing.assert_allclose(coeffs[0].double().numpy(), expected, atol=1e-6)
    assert (haar_idwt3d(coeffs) - x).abs().max() <= 1e-6


def test_odd_size_round_trips_and_matches_pywt_on_padded_volume(ref):
    x = ref["x_odd"]  # (1, 1, 8, 8, 7)
    official_recon_err = (ref["recon_odd"] - x).abs().max()
    assert official_recon_err > 0.1  # the official output is wrong; we do not reproduce it
    coeffs = haar_dwt3d(x)
    assert coeffs.shape == (1, 8, 4, 4, 4)
    padded = np.pad(x[0, 0].double().numpy(), ((0, 0), (0, 0), (0, 1)), mode="edge")
    np.testing.assert_allclose(coeffs[0].double().numpy(), _pywt_stack(padded, "haar", "periodization"), atol=1e-6)
    # pywt's own odd-length handling (symmetric mode) agrees with replicate padding for Haar
    np.testing.assert_allclose(
        coeffs[0].double().numpy(), _pywt_stack(x[0, 0].double().numpy(), "haar", "symmetric"), atol=1e-6
    )
    assert (haar_idwt3d(coeffs, output_size=x.shape[2:]) - x).abs().max() <= 1e-6


def test_zero_padding_matches_pywt_zero_mode():
    x = torch.randn(1, 1, 5, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    coeffs = haar_dwt3d(x, padding_mode="zeros")
    np.testing.assert_allclose(coeffs[0].numpy(), _pywt_stack(x[0, 0].numpy(), "haar", "zero"), atol=1e-12)
    assert torch.allclose(haar_idwt3d(coeffs, output_size=(5, 6, 7)), x, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------
def test_subband_semantics_on_a_block():
    # a ramp along W only has energy in LLL and LLH
    block = torch.zeros(1, 1, 2, 2, 2, dtype=torch.float64)
    block[..., 0] = 1.0
    coeffs = haar_dwt3d(block)[0, :, 0, 0, 0]
    expected = torch.zeros(8, dtype=torch.float64)
    expected[0] = expected[1] = 4 / (2 * 2**0.5)
    assert torch.allclose(coeffs, expected)


def test_orthonormal_energy_and_noise_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, 32, generator=g, dtype=torch.float64)
    c = haar_dwt3d(x)
    assert torch.allclose(c.pow(2).sum(), x.pow(2).sum())
    assert abs(c.std().item() - 1.0) < 0.02


def test_layouts_and_cwdm_stacking_is_concatenation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 4, 8, generator=g)
    per_volume = torch.cat([haar_dwt3d(x[:, i : i + 1], lll_scale=3.0) for i in range(3)], dim=1)
    assert torch.equal(haar_dwt3d(x, lll_scale=3.0, layout="channel"), per_volume)
    # subband-major equals torch.cat(official tuple, dim=1): [LLL(all C), LLH(all C), ...]
    sub = haar_dwt3d(x, layout="subband")
    chan = haar_dwt3d(x, layout="channel")
    assert torch.equal(sub.reshape(2, 8, 3, 3, 2, 4).transpose(1, 2).reshape(2, 24, 3, 2, 4), chan)
    assert torch.allclose(haar_idwt3d(sub, layout="subband"), x, atol=1e-6)


def test_autograd_and_complex_and_dtype():
    x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: haar_dwt3d(v, lll_scale=3.0), (x,))
    z = torch.randn(1, 1, 4, 6, 8, dtype=torch.complex64)
    cz = haar_dwt3d(z)
    assert cz.dtype == torch.complex64
    assert torch.allclose(cz.real, haar_dwt3d(z.real), atol=1e-6)
    assert torch.allclose(haar_idwt3d(cz), z, atol=1e-6)
    assert haar_dwt3d(torch.zeros(1, 1, 2, 2, 2, dtype=torch.float16)).dtype == torch.float16


def test_bad_inputs():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        haar_dwt3d(np.zeros((1, 1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, D, H, W\)"):
        haar_dwt3d(torch.zeros(1, 2, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        haar_dwt3d(torch.zeros(1, 1, 2, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="padding_mode='error'"):
        haar_dwt3d(torch.zeros(1, 1, 3, 2, 2), padding_mode="error")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        haar_dwt3d(torch.zeros(1, 1, 2, 2, 2), padding_mode="reflect")
    with pytest.raises(ValueError, match="lll_scale"):
        haar_dwt3d(torch.zeros(1, 1, 2, 2, 2), lll_scale=0.0)
    with pytest.raises(ValueError, match="divisible by 8"):
        haar_idwt3d(torch.zeros(1, 7, 2, 2, 2))
    with pytest.raises(ValueError, match="output_size"):
        haar_idwt3d(torch.zeros(1, 8, 2, 2, 2), output_size=(2, 4, 4))
    with pytest.raises(ValueError, match="wavelet must be a discrete"):
        dwt3d(torch.zeros(1, 1, 2, 2, 2), wavelet="nope")


# ---------------------------------------------------------------------------------------------------------------
# other PyWavelets wavelets
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wavelet", ["db2", "sym4", "coif1", "bior2.2"])
@pytest.mark.parametrize("shape", [(8, 12, 10), (4, 6, 2), (7, 5, 6)])
def test_generic_wavelet_matches_pywt_and_reconstructs(wavelet, shape):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, *shape, generator=g, dtype=torch.float64)
    coeffs = dwt3d(x, wavelet)
    for b in range(2):
        for ch in range(2):
            # pywt's periodization extends odd lengths by repeating the last sample, like padding_mode="replicate"
            expected = _pywt_stack(x[b, ch].numpy(), wavelet, "periodization")
            np.testing.assert_allclose(coeffs[b, 8 * ch : 8 * ch + 8].numpy(), expected, atol=1e-10)
    recon = idwt3d(coeffs, wavelet, output_size=shape)
    assert torch.allclose(recon, x, atol=1e-9)
    subband_major = dwt3d(x, wavelet, 3.0, layout="subband")
    assert torch.allclose(idwt3d(subband_major, wavelet, 3.0, shape, "subband"), x, atol=1e-9)


@pytest.mark.parametrize("wavelet", ["haar", "db3", "bior3.5"])
def test_inverse_matches_pywt_idwtn(wavelet):
    # arbitrary coefficients (not the transform of a volume): the synthesis operator itself against PyWavelets
    coeffs = torch.randn(1, 8, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = pywt.idwtn(dict(zip(PYWT_KEYS, coeffs[0].numpy())), wavelet, mode="periodization")
    np.testing.assert_allclose(idwt3d(coeffs, wavelet)[0, 0].numpy(), expected, atol=1e-10)


def test_generic_haar_equals_fast_haar():
    x = torch.randn(1, 2, 6, 8, 4)
    assert torch.equal(dwt3d(x, "haar", lll_scale=3.0), haar_dwt3d(x, lll_scale=3.0))


# ---------------------------------------------------------------------------------------------------------------
# MONAI transforms
# ---------------------------------------------------------------------------------------------------------------
def _meta_volume(shape=(2, 9, 10, 7)) -> MetaTensor:
    affine = torch.tensor([[0.0, -1.5, 0, 10], [2, 0, 0, -5], [0, 0, 3, 7], [0, 0, 0, 1]], dtype=torch.float64)
    data = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    return MetaTensor(data, affine=affine, meta={"filename_or_obj": "vol.nii.gz"})


def test_array_transform_affine_and_inverse():
    img = _meta_volume()
    dwt = HaarDWT3D(lll_scale=3.0)
    out = dwt(img)
    assert isinstance(out, MetaTensor) and out.shape == (16, 5, 5, 4)
    assert torch.allclose(out.as_tensor(), haar_dwt3d(img.as_tensor()[None], 3.0)[0])
    # spacing doubles, origin moves to the centre of the first 2x2x2 block (index 0.5, 0.5, 0.5 of the input)
    expected_affine = img.affine @ dwt_affine()
    assert torch.allclose(out.affine, expected_affine)
    centre = img.affine @ torch.tensor([0.5, 0.5, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(out.affine[:, 3], centre)
    assert torch.allclose(out.pixdim, torch.tensor([4.0, 3.0, 6.0], dtype=torch.float64))
    assert out.meta["filename_or_obj"] == "vol.nii.gz"
    back = dwt.inverse(out)
    assert back.shape == img.shape
    assert torch.allclose(back.as_tensor(), img.as_tensor(), atol=1e-6)
    assert torch.allclose(back.affine, img.affine)
    assert len(back.applied_operations) == 0


def test_idwt_transform_and_its_inverse():
    coeffs = _meta_volume((16, 3, 4, 5))
    idwt = HaarIDWT3D(lll_scale=3.0, output_size=(6, 8, 10))
    vol = idwt(coeffs)
    assert vol.shape == (2, 6, 8, 10)
    assert torch.allclose(vol.affine, coeffs.affine @ dwt_affine(inverse=True))
    again = idwt.inverse(vol)
    assert torch.allclose(again.as_tensor(), coeffs.as_tensor(), atol=1e-5)
    assert torch.allclose(again.affine, coeffs.affine)


def test_dict_transforms_in_compose_inverse():
    img = _meta_volume()
    label = _meta_volume((1, 9, 10, 7))
    pipeline = Compose([HaarDWT3Dd(["image", "label"], lll_scale=3.0)])
    out = pipeline({"image": img, "label": label, "other": 1})
    assert out["image"].shape == (16, 5, 5, 4) and out["label"].shape == (8, 5, 5, 4)
    back = pipeline.inverse(out)
    assert torch.allclose(back["image"].as_tensor(), img.as_tensor(), atol=1e-6)
    assert torch.allclose(back["label"].affine, label.affine)
    assert back["other"] == 1
    idwt = HaarIDWT3Dd("image", lll_scale=3.0, output_size=(9, 10, 7))
    assert torch.allclose(idwt({"image": out["image"]})["image"].as_tensor(), img.as_tensor(), atol=1e-6)
    assert HaarDWT3DD is HaarDWT3DDict is HaarDWT3Dd


def test_transform_accepts_numpy_and_rejects_batched():
    arr = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    out = HaarDWT3D()(arr)
    assert out.shape == (8, 2, 2, 2)
    block_sums = arr.reshape(2, 2, 2, 2, 2, 2).sum(axis=(1, 3, 5))
    np.testing.assert_allclose(np.asarray(out[0]), block_sums / 8**0.5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        HaarDWT3D()(torch.zeros(1, 1, 4, 4, 4))


# ---------------------------------------------------------------------------------------------------------------
# the blocked butterfly: every block shape, dtype path, memory layout and the autograd adjoint
# ---------------------------------------------------------------------------------------------------------------
def _reference_dwt(x: torch.Tensor, layout: str) -> torch.Tensor:
    """float64 PyWavelets oracle in the requested layout."""
    b, c = x.shape[:2]
    stack = np.stack(
        [np.stack([_pywt_stack(x[i, j].double().numpy(), "haar", "periodization") for j in range(c)]) for i in range(b)]
    )  # (B, C, 8, d, h, w)
    out = torch.from_numpy(stack)
    if layout == "subband":
        out = out.transpose(1, 2)
    return out.reshape(b, 8 * c, *out.shape[3:])


@pytest.mark.parametrize("block_bytes", [1, 2**11, 2**40])  # one slab per block, several, whole volumes
@pytest.mark.parametrize("layout", ["channel", "subband"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_blocked_paths_match_pywt(monkeypatch, block_bytes, layout, dtype):
    import medgen.transforms.wavelet as wavelet

    monkeypatch.setattr(wavelet, "_CPU_BLOCK_BYTES", block_bytes)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 10, 6, 8, generator=g).to(dtype)
    expected = _reference_dwt(x, layout)
    tol = 2e-3 if dtype == torch.float16 else 1e-5
    coeffs = haar_dwt3d(x, layout=layout)
    assert coeffs.dtype == dtype
    torch.testing.assert_close(coeffs.double(), expected, atol=tol, rtol=tol)
    scaled = haar_dwt3d(x, lll_scale=3.0, layout=layout).double()
    torch.testing.assert_close(scaled[:, :3] if layout == "subband" else scaled[:, ::8], (
        expected[:, :3] if layout == "subband" else expected[:, ::8]) / 3.0, atol=tol, rtol=tol)
    recon = haar_idwt3d(scaled.to(dtype), lll_scale=3.0, layout=layout)
    torch.testing.assert_close(recon.double(), x.double(), atol=4 * tol, rtol=4 * tol)


def test_complex_blocked_equals_real_and_imaginary_parts(monkeypatch):
    import medgen.transforms.wavelet as wavelet

    monkeypatch.setattr(wavelet, "_CPU_BLOCK_BYTES", 2**11)
    g = torch.Generator().manual_seed(6)
    z = torch.complex(torch.randn(1, 2, 6, 4, 8, generator=g), torch.randn(1, 2, 6, 4, 8, generator=g))
    for layout in ("channel", "subband"):
        cz = haar_dwt3d(z, lll_scale=3.0, layout=layout)
        torch.testing.assert_close(cz.real, haar_dwt3d(z.real, lll_scale=3.0, layout=layout))
        torch.testing.assert_close(cz.imag, haar_dwt3d(z.imag, lll_scale=3.0, layout=layout))
        torch.testing.assert_close(haar_idwt3d(cz, lll_scale=3.0, layout=layout), z, atol=1e-5, rtol=1e-5)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 6, 8, 10, generator=g)
    channels_last = x.contiguous(memory_format=torch.channels_last_3d)
    # the W stride is not 1 here, so the real-arithmetic W butterfly runs instead of the complex product: rounding only
    torch.testing.assert_close(haar_dwt3d(channels_last), haar_dwt3d(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(haar_dwt3d(x[:, 1:3]), haar_dwt3d(x)[:, 8:24], atol=0, rtol=0)
    coeffs = haar_dwt3d(x, layout="subband")
    transposed = coeffs.transpose(3, 4).contiguous().transpose(3, 4)
    torch.testing.assert_close(haar_idwt3d(transposed, layout="subband"), x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["channel", "subband"])
def test_gradients_are_the_adjoints(layout):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 2, 4, 2, 6, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(1, 16, 2, 1, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: haar_dwt3d(v, lll_scale=3.0, layout=layout), (x,))
    assert torch.autograd.gradcheck(lambda v: haar_idwt3d(v, lll_scale=3.0, layout=layout), (c,))
    assert torch.autograd.gradgradcheck(lambda v: haar_idwt3d(v, lll_scale=3.0, layout=layout), (c,))
    # <A x, c> = <x, A^T c> with A^T = the gradient
    y = haar_dwt3d(x, lll_scale=3.0, layout=layout)
    (grad,) = torch.autograd.grad((y * c).sum(), x)
    torch.testing.assert_close((grad * x).sum(), (y * c).sum())
