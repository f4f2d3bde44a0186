"""ESPIRiT coil maps (:func:`medgen.transforms.espirit.espirit_maps`) against sigpy's ``EspiritCalib``; JSON lines.

320 x 320 Shepp-Logan phantom times 15 birdcage coils, centred orthonormal FFT plus noise (std 1e-3), complex64,
sigpy's defaults (calib 24, kernel 6, thresh 0.02, crop 0.95, 100 power iterations). 1 torch thread, CPU time
(``time.process_time``), medians of interleaved rounds in this process. Agreement: mean and minimum coherence
``|<s, s_sigpy>| / (|s| |s_sigpy|)`` over the object (phantom > 0 inside sigpy's support) and the fraction of pixels
where the two supports agree.

Usage::

    python benchmarks/bench_espirit.py [--rounds 3] [--size 320] [--coils 15] [--strides 1 2 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import emit, interleaved_medians, machine, peer

from medgen.physics.mri import fft2c
from medgen.transforms.espirit import espirit_maps
from medgen.transforms.kspace import birdcage_sensitivity_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--coils", type=int, default=15)
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    n, coils = args.size, args.coils
    image = torch.from_numpy(resize(shepp_logan_phantom(), (n, n))).to(torch.complex64)
    maps = birdcage_sensitivity_maps((n, n), num_coils=coils).to(torch.complex64)
    noise = torch.randn(coils, n, n, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    kspace = fft2c(maps * image) + 1e-3 * noise
    sigpy_mri, sigpy_version = peer("sigpy.mri", "sigpy")
    calls = {f"medgen_stride{s}": (lambda s=s: espirit_maps(kspace, grid_stride=s)) for s in args.strides}
    reference = None
    if sigpy_mri is not None:
        ksp = kspace.numpy()
        calls["sigpy"] = lambda: sigpy_mri.app.EspiritCalib(ksp, show_pbar=False).run()
        reference = torch.from_numpy(np.ascontiguousarray(calls["sigpy"]())).to(torch.complex64)
    times = interleaved_medians(calls, args.rounds)
    for stride in args.strides:
        key = f"medgen_stride{stride}"
        record = {
            "benchmark": "espirit", "case": f"espirit_{n}^2_{coils}coils_stride{stride}", "grid_stride": stride,
            "kspace": list(kspace.shape), "dtype": "complex64", "medgen_ms": times[key],
        }
        if reference is not None:
            ours = espirit_maps(kspace, grid_stride=stride)
            support = reference.abs().sum(0) > 0
            on_object = support & (image.real > 0)
            coherence = (ours.conj() * reference).sum(0).abs() / (ours.norm(dim=0) * reference.norm(dim=0)).clamp_min(
                1e-12
            )
            record["peers"] = {"sigpy EspiritCalib": {
                "ms": times["sigpy"], "version": sigpy_version, "speedup": round(times["sigpy"] / times[key], 2),
                "mean_coherence_on_object": round(float(coherence[on_object].mean()), 6),
                "min_coherence_on_object": round(float(coherence[on_object].min()), 6),
                "support_agreement": round(float(((ours.abs().sum(0) > 0) == support).float().mean()), 6),
            }}
        else:
            record["peers"] = {"sigpy EspiritCalib": {"version": sigpy_version}}
        emit({**record, **machine()})


if __name__ == "__main__":
    main()
