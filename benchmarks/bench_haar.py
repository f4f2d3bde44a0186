"""One-level 3D Haar DWT/IDWT (:func:`haar_dwt3d` / :func:`haar_idwt3d`) against peers; one JSON line per case.

Cases (float32 unless said, 1 torch thread, CPU time, medians of interleaved rounds, all in this process):

* ``peers``: ``(B, 1, n, n, n)`` for n in 128, 256 and B in 1, 2 against ptwt's ``wavedec3``/``waverec3``
  (level 1, haar), WDM's official ``DWT_3D``/``IDWT_3D`` layer (when ``--wdm-repo`` or ``$WDM_REPO`` points to a
  checkout of pfriedri/wdm-3d; it is imported from there, never copied) and a plain tensor copy (``clone``, the limit).
  The outputs are compared (maximum absolute difference, same subband order).
* ``layouts``: ``(1, 2, n, n, n)`` in both channel layouts, float32 and complex64, against the tensor copy.

Fields: ``medgen_ms``; per peer ``ms``, ``version``, ``speedup`` (peer time / medgen time) and ``max_abs_diff``;
``limit`` (the tensor copy) with ``ratio`` = medgen time / copy time.

Usage::

    python benchmarks/bench_haar.py [--rounds 7] [--sizes 128 256] [--wdm-repo /path/to/wdm-3d]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
from common import emit, interleaved_medians, machine, peer

from medgen.transforms.wavelet import SUBBAND_NAMES, haar_dwt3d, haar_idwt3d

PTWT_KEYS = ["".join("a" if ch == "L" else "d" for ch in name) for name in SUBBAND_NAMES[1:]]


def load_wdm(repo: str | None) -> tuple[Any, str]:
    """WDM's ``DWT_IDWT_layer`` module from a checkout of pfriedri/wdm-3d, or ``(None, reason)``."""
    if not repo:
        return None, "unavailable: pass --wdm-repo or set WDM_REPO to a checkout of pfriedri/wdm-3d"
    if not os.path.isfile(os.path.join(repo, "DWT_IDWT", "DWT_IDWT_layer.py")):
        return None, f"unavailable: {repo}/DWT_IDWT/DWT_IDWT_layer.py not found"
    sys.path.insert(0, repo)
    try:
        from DWT_IDWT import DWT_IDWT_layer
    except Exception as error:
        return None, f"unavailable: {type(error).__name__}: {error}"
    finally:
        sys.path.remove(repo)
    return DWT_IDWT_layer, "pfriedri/wdm-3d DWT_IDWT_layer.py"


def peer_cases(sizes: list[int], rounds: int, wdm_repo: str | None) -> None:
    ptwt, ptwt_version = peer("ptwt")
    wdm, wdm_version = load_wdm(wdm_repo)
    for n in sizes:
        for batch in (1, 2):
            x = torch.randn(batch, 1, n, n, n, generator=torch.Generator().manual_seed(0))
            coeffs = haar_dwt3d(x)
            calls = {"copy": x.clone, "dwt": lambda: haar_dwt3d(x), "idwt": lambda: haar_idwt3d(coeffs)}
            diffs: dict[str, float] = {}
            if ptwt is not None:
                packed = ptwt.wavedec3(x[:, 0], "haar", level=1, mode="zero")
                ptwt_coeffs = torch.stack([packed[0]] + [packed[1][key] for key in PTWT_KEYS], dim=1)
                diffs["ptwt_dwt"] = float((ptwt_coeffs - coeffs).abs().max())
                diffs["ptwt_idwt"] = float((ptwt.waverec3(packed, "haar")[:, None] - x).abs().max())
                calls["ptwt_dwt"] = lambda: ptwt.wavedec3(x[:, 0], "haar", level=1, mode="zero")
                calls["ptwt_idwt"] = lambda: ptwt.waverec3(packed, "haar")
            if wdm is not None:
                forward, inverse = wdm.DWT_3D("haar"), wdm.IDWT_3D("haar")
                bands = forward(x)
                diffs["wdm_dwt"] = float((torch.cat(bands, dim=1) - coeffs).abs().max())
                diffs["wdm_idwt"] = float((inverse(*bands) - x).abs().max())
                calls["wdm_dwt"] = lambda: forward(x)
                calls["wdm_idwt"] = lambda: inverse(*bands)
            with torch.no_grad():
                times = interleaved_medians(calls, rounds)
            for op in ("dwt", "idwt"):
                peers: dict[str, Any] = {}
                for name, version in (("ptwt", ptwt_version), ("wdm", wdm_version)):
                    key = f"{name}_{op}"
                    if key in times:
                        peers[name] = {
                            "ms": times[key],
                            "version": version,
                            "speedup": round(times[key] / times[op], 2),
                            "max_abs_diff": diffs[key],
                        }
                    else:
                        peers[name] = {"version": version}
                emit({
                    "benchmark": "haar", "case": f"{op}_{n}^3_batch{batch}", "op": op, "shape": list(x.shape),
                    "dtype": "float32", "layout": "channel", "medgen_ms": times[op], "peers": peers,
                    "limit": {"name": "tensor copy (clone)", "ms": times["copy"],
                              "ratio": round(times[op] / times["copy"], 2)},
                    **machine(),
                })


def layout_cases(sizes: list[int], rounds: int) -> None:
    for n in sizes:
        for dtype in (torch.float32, torch.complex64):
            x = torch.randn(1, 2, n, n, n, dtype=dtype, generator=torch.Generator().manual_seed(1))
            calls: dict[str, Any] = {"copy": x.clone}
            coeffs = {}
            for layout in ("channel", "subband"):
                coeffs[layout] = haar_dwt3d(x, layout=layout)
                calls[f"dwt_{layout}"] = lambda layout=layout: haar_dwt3d(x, layout=layout)
                calls[f"idwt_{layout}"] = lambda layout=layout: haar_idwt3d(coeffs[layout], layout=layout)
            with torch.no_grad():
                times = interleaved_medians(calls, rounds)
            for layout in ("channel", "subband"):
                for op in ("dwt", "idwt"):
                    key = f"{op}_{layout}"
                    emit({
                        "benchmark": "haar", "case": f"{key}_{n}^3_{str(dtype).split('.')[-1]}", "op": op,
                        "shape": list(x.shape), "dtype": str(dtype).split(".")[-1], "layout": layout,
                        "medgen_ms": times[key],
                        "round_trip_max_abs_err": float((haar_idwt3d(coeffs[layout], layout=layout) - x).abs().max()),
                        "limit": {"name": "tensor copy (clone)", "ms": times["copy"],
                                  "ratio": round(times[key] / times["copy"], 2)},
                        **machine(),
                    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--cases", nargs="+", default=["peers", "layouts"], choices=["peers", "layouts"])
    parser.add_argument("--wdm-repo", default=os.environ.get("WDM_REPO"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "peers" in args.cases:
        peer_cases(args.sizes, args.rounds, args.wdm_repo)
    if "layouts" in args.cases:
        layout_cases(args.sizes, args.rounds)


if __name__ == "__main__":
    main()
