"""medgen's physics operators against peer libraries; one JSON line per case.

1 torch thread, CPU time (``time.process_time``), medians of interleaved rounds, all in this process, float32 /
complex64; the outputs of medgen and each peer are compared on the same input (relative L2 difference).

* ``ct``: :class:`ParallelBeamCT` at 256 x 256 with 363 detector bins (ASTRA's geometry: rotation axis at the image
  centre), 36 and 180 views, batch 1 and 6: ``forward`` and the exact ``adjoint`` against astra-toolbox's CPU
  'linear' projector (FP/BP algorithms on preallocated data objects, one slice at a time) and scikit-image's
  ``radon`` (forward only). The first call builds the cached sparse matrices: ``cache_build_s`` and ``cache_mib``.
* ``mri``: :class:`CartesianMRI` with 15 birdcage coils at 320 x 320 (equispaced 4x mask, 24 ACS lines): ``forward``
  and ``adjoint`` against sigpy's ``Sense`` linop, with one batched FFT of the coil images as the limit.
* ``zaxis``: :class:`ZAxisAverage` (factor 4) of a 256^3 volume, with a tensor copy as the limit.

Fields: ``medgen_ms``; per peer ``ms``, ``version``, ``speedup`` (peer time / medgen time) and ``rel_l2_diff``;
``limit`` with ``ratio`` = medgen time / limit time where a limit applies.

Usage::

    python benchmarks/bench_physics.py [--rounds 7] [--cases ct mri zaxis]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch
from common import emit, interleaved_medians, machine, peer, relative_l2

from medgen.physics.ct import ParallelBeamCT
from medgen.physics.mri import CartesianMRI
from medgen.physics.zaxis import ZAxisAverage
from medgen.transforms.kspace import birdcage_sensitivity_maps, equispaced_mask

CASES = ("ct", "mri", "zaxis")


def _peer_entry(times: dict[str, float], key: str, medgen_key: str, version: str, diff: float | None) -> dict:
    if key not in times:
        return {"version": version}
    return {"ms": times[key], "version": version, "speedup": round(times[key] / times[medgen_key], 2),
            "rel_l2_diff": diff}


class _AstraParallel:
    """astra-toolbox's CPU 'linear' projector on preallocated data objects (one 2D slice per run)."""

    def __init__(self, astra: Any, size: int, angles: np.ndarray, detectors: int) -> None:
        self.astra = astra
        volume = astra.create_vol_geom(size, size)
        projection = astra.create_proj_geom("parallel", 1.0, detectors, angles)
        self.projector = astra.create_projector("linear", projection, volume)
        self.volume_id = astra.data2d.create("-vol", volume, 0)
        self.sinogram_id = astra.data2d.create("-sino", projection, 0)
        self.algorithms = {}
        for kind in ("FP", "BP"):
            config = astra.astra_dict(kind)
            config["ProjectorId"] = self.projector
            config["ProjectionDataId"] = self.sinogram_id
            config["VolumeDataId" if kind == "FP" else "ReconstructionDataId"] = self.volume_id
            self.algorithms[kind] = astra.algorithm.create(config)

    def forward(self, images: np.ndarray) -> list[np.ndarray]:
        out = []
        for image in images:
            self.astra.data2d.store(self.volume_id, image)
            self.astra.algorithm.run(self.algorithms["FP"])
            out.append(self.astra.data2d.get(self.sinogram_id))  # (views, detectors)
        return out

    def backward(self, sinograms: np.ndarray) -> list[np.ndarray]:
        out = []
        for sinogram in sinograms:
            self.astra.data2d.store(self.sinogram_id, sinogram)
            self.astra.algorithm.run(self.algorithms["BP"])
            out.append(self.astra.data2d.get(self.volume_id))
        return out


def ct_cases(rounds: int) -> None:
    astra, astra_version = peer("astra", "astra-toolbox")
    skimage_transform, skimage_version = peer("skimage.transform", "scikit-image")
    size, detectors = 256, 363
    for views in (36, 180):
        angles = torch.arange(views, dtype=torch.float64) * (math.pi / views)
        op = ParallelBeamCT(size, angles, num_detectors=detectors, rotation_center=((size - 1) / 2,) * 2,
                            detector_center=(detectors - 1) / 2)
        start = time.process_time()
        op._matrices(torch.device("cpu"), torch.float32)
        build_s = time.process_time() - start
        forward, adjoint = op._matrices(torch.device("cpu"), torch.float32)
        cache_mib = sum(m.values().nbytes + m.col_indices().nbytes + m.crow_indices().nbytes
                        for m in (forward, adjoint)) / 2**20
        for batch in (1, 6):
            g = torch.Generator().manual_seed(views + batch)
            x = torch.rand(batch, 1, size, size, generator=g)
            y = torch.rand(batch, 1, detectors, views, generator=g)
            calls = {"forward": lambda: op(x), "adjoint": lambda: op.adjoint(y)}
            diffs: dict[str, float] = {}
            if astra is not None:
                projector = _AstraParallel(astra, size, angles.numpy(), detectors)
                images = x[:, 0].numpy()
                sinograms = np.ascontiguousarray(y[:, 0].transpose(1, 2).numpy())  # (views, detectors)
                astra_sinograms = np.stack(projector.forward(images)).transpose(0, 2, 1)
                diffs["astra_forward"] = relative_l2(astra_sinograms, op(x)[:, 0])
                diffs["astra_adjoint"] = relative_l2(np.stack(projector.backward(sinograms)), op.adjoint(y)[:, 0])
                calls["astra_forward"] = lambda: projector.forward(images)
                calls["astra_adjoint"] = lambda: projector.backward(sinograms)
            if skimage_transform is not None:
                degrees = np.degrees(angles.numpy())
                images64 = x[:, 0].double().numpy()
                radon = skimage_transform.radon
                # scikit-image's centre is pixel n // 2: compare with medgen's default geometry, which is that one
                skimage_geometry = ParallelBeamCT(size, angles, num_detectors=detectors, max_matrix_bytes=0).double()
                diffs["skimage_forward"] = relative_l2(
                    np.stack([radon(image, theta=degrees, circle=False) for image in images64]),
                    skimage_geometry(x.double())[:, 0],
                )
                calls["skimage_forward"] = lambda: [radon(image, theta=degrees, circle=False) for image in images64]
            with torch.no_grad():
                times = interleaved_medians(calls, rounds)
            for direction in ("forward", "adjoint"):
                peers = {"astra-toolbox linear (CPU)": _peer_entry(times, f"astra_{direction}", direction,
                                                                   astra_version, diffs.get(f"astra_{direction}"))}
                if direction == "forward":
                    peers["scikit-image radon"] = _peer_entry(
                        times, "skimage_forward", "forward", skimage_version, diffs.get("skimage_forward")
                    )
                emit({
                    "benchmark": "physics", "case": f"ct_{direction}_256^2_{views}views_batch{batch}",
                    "op": f"ParallelBeamCT.{direction}", "image": [batch, 1, size, size],
                    "sinogram": [batch, 1, detectors, views], "medgen_ms": times[direction], "peers": peers,
                    "cache_mib": round(cache_mib, 1), "cache_build_s": round(build_s, 2),
                    "cache_nnz": int(forward.values().numel()), **machine(),
                })


def mri_cases(rounds: int) -> None:
    sigpy_mri, sigpy_version = peer("sigpy.mri", "sigpy")
    size, coils = 320, 15
    maps = birdcage_sensitivity_maps((size, size), num_coils=coils).to(torch.complex64)[None]
    mask = equispaced_mask(size, 4, acs_lines=24)
    op = CartesianMRI(mask, maps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, size, size, dtype=torch.complex64, generator=g)
    y = torch.randn(1, coils, size, size, dtype=torch.complex64, generator=g) * op.mask
    coil_images = torch.randn(1, coils, size, size, dtype=torch.complex64, generator=g)
    calls = {"forward": lambda: op(x), "adjoint": lambda: op.adjoint(y),
             "fft": lambda: torch.fft.fft2(coil_images, norm="ortho")}
    diffs: dict[str, float] = {}
    if sigpy_mri is not None:
        sense = sigpy_mri.linop.Sense(maps[0].numpy(), weights=op.mask.expand(size, size).numpy().astype(np.float32))
        sense_h = sense.H
        image, kspace = x[0, 0].numpy(), y[0].numpy()
        diffs["sigpy_forward"] = relative_l2(sense(image), op(x)[0])
        diffs["sigpy_adjoint"] = relative_l2(sense_h(kspace), op.adjoint(y)[0, 0])
        calls["sigpy_forward"] = lambda: sense(image)
        calls["sigpy_adjoint"] = lambda: sense_h(kspace)
    with torch.no_grad():
        times = interleaved_medians(calls, rounds)
    for direction in ("forward", "adjoint"):
        emit({
            "benchmark": "physics", "case": f"mri_{direction}_320^2_15coils", "op": f"CartesianMRI.{direction}",
            "image": [1, 1, size, size], "kspace": [1, coils, size, size], "dtype": "complex64",
            "medgen_ms": times[direction],
            "peers": {"sigpy Sense": _peer_entry(times, f"sigpy_{direction}", direction, sigpy_version,
                                                 diffs.get(f"sigpy_{direction}"))},
            "limit": {"name": "one batched FFT of the 15 coil images", "ms": times["fft"],
                      "ratio": round(times[direction] / times["fft"], 2)},
            **machine(),
        })


def zaxis_cases(rounds: int) -> None:
    op = ZAxisAverage(4, axis=-1)
    x = torch.randn(1, 1, 256, 256, 256, generator=torch.Generator().manual_seed(0))
    y = op(x)
    with torch.no_grad():
        times = interleaved_medians({"forward": lambda: op(x), "adjoint": lambda: op.adjoint(y), "copy": x.clone},
                                    rounds)
    for direction in ("forward", "adjoint"):
        emit({
            "benchmark": "physics", "case": f"zaxis_{direction}_256^3_factor4", "op": f"ZAxisAverage.{direction}",
            "volume": list(x.shape), "medgen_ms": times[direction],
            "limit": {"name": "tensor copy of the volume (clone)", "ms": times["copy"],
                      "ratio": round(times[direction] / times["copy"], 2)},
            **machine(),
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    torch.set_num_threads(args.threads)
    for case in args.cases:
        {"ct": ct_cases, "mri": mri_cases, "zaxis": zaxis_cases}[case](args.rounds)


if __name__ == "__main__":
    main()
