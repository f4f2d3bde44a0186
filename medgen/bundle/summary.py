"""The closing summary of a bundle run on stdout: files written, metrics against each baseline, steps, seed, time."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_summary"]


def _score(metrics: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(metrics.get("psnr"), (int, float)):
        parts.append(f"PSNR {metrics['psnr']:6.2f} dB")
    ssim = metrics.get("ssim")
    if isinstance(ssim, Mapping):
        ssim = ssim.get("mean")
    if isinstance(ssim, (int, float)):
        parts.append(f"SSIM {ssim:.4f}")
    if isinstance(metrics.get("nmse"), (int, float)):
        parts.append(f"NMSE {metrics['nmse']:.4f}")
    return "  ".join(parts)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_summary(
    bundle: str,
    files: Sequence[str | os.PathLike],
    result: Mapping[str, Any] | None,
    seconds: float,
    resumed: bool = False,
) -> str:
    """The lines printed when a bundle run ends.

    Args:
        bundle: the bundle's name.
        files: the files written.
        result: what the run recorded (e.g. a writer's JSON summary): ``steps``, ``seed``, ``iterations``,
            ``final_loss``, ``metrics`` and ``baselines`` (``{name: metrics}``) are shown when present.
        seconds: the run's wall time.
        resumed: the run continued an interrupted one.

    Returns:
        the summary (several lines, no trailing newline).
    """
    result = result or {}
    settings = ", ".join(f"{key} {_value(result[key])}" for key in ("steps", "seed", "iterations", "final_loss")
                         if result.get(key) is not None)
    lines = [f"{bundle}: finished in {seconds:.1f} s" + (f" ({settings})" if settings else "")
             + (", continuing an interrupted run" if resumed else "")]
    lines.append(f"  {len(files)} file(s) written:")
    lines += [f"    {path}" for path in files]
    metrics = result.get("metrics")
    baselines = result.get("baselines") or {}
    if isinstance(metrics, Mapping) and _score(metrics):
        width = max([len("output")] + [len(str(name)) for name in baselines])
        lines.append("  against the reference:")
        lines.append(f"    {'output':<{width}}  {_score(metrics)}")
        for name, scores in baselines.items():
            if isinstance(scores, Mapping) and _score(scores):
                lines.append(f"    {str(name):<{width}}  {_score(scores)}")
    return "\n".join(lines)
