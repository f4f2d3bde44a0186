"""Run ``python -m monai.bundle`` so that it stops itself (SIGSTOP) at a chosen moment, for a test to SIGKILL it there.

Usage (what :func:`start` runs)::

    python -c "import tests.bundles.killpoints as k; k.main()" <point> <count> run --config_file ... [overrides]

Points (``count``: the n-th occurrence in this process):

- ``sampling_write``: in the middle of writing the sampling state (half the bytes on disk);
- ``after_sampling_save``: right after a sampling state was saved (between two steps);
- ``output_write``: while the final outputs are written (``count - 1`` files already staged);
- ``checkpoint_write``: in the middle of writing a training checkpoint (half the bytes on disk);
- ``after_checkpoint``: right after a training checkpoint was saved (between two iterations).

The stop is a real ``SIGSTOP`` of the process at that point, and the kill the test sends is a real ``SIGKILL``: the
files on disk are whatever an interrupted run leaves.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _install(point: str, count: int) -> None:
    import torch

    seen = {"n": 0}

    def hit() -> bool:
        seen["n"] += 1
        return seen["n"] == count

    if point in ("sampling_write", "checkpoint_write"):
        marker = ".sampling_state.pt" if point == "sampling_write" else ".checkpoint_iteration="
        original = torch.save

        def save(obj, f, *args, **kwargs):
            name = str(getattr(f, "name", f))
            if marker not in os.path.basename(name) or not hit():
                return original(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            original(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            handle = f if hasattr(f, "write") else open(f, "wb")
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            _stop()
            handle.write(data[len(data) // 2 :])
            if handle is not f:
                handle.close()

        torch.save = save
    elif point in ("after_sampling_save", "after_checkpoint"):
        original_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            original_replace(src, dst, *args, **kwargs)
            name = os.path.basename(str(dst))
            wanted = name == "sampling_state.pt" if point == "after_sampling_save" else name.startswith(
                "checkpoint_iteration=")
            if wanted and hit():
                _stop()

        os.replace = replace
    elif point == "output_write":
        from medgen.engines.writers.staging import OutputStaging

        path_for = OutputStaging.path_for

        def staged(self, target):
            if hit():
                _stop()
            return path_for(self, target)

        OutputStaging.path_for = staged
    elif point != "none":
        raise ValueError(f"unknown stop point {point!r}")


def main() -> None:
    point, count = sys.argv[1], int(sys.argv[2])
    _install(point, count)
    sys.argv = ["monai.bundle", *sys.argv[3:]]
    runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)


def command(point: str, count: int, arguments: list[str]) -> list[str]:
    return [sys.executable, "-c", "import tests.bundles.killpoints as k; k.main()", point, str(count), *arguments]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def start(point: str, count: int, arguments: list[str], log: Path) -> subprocess.Popen:
    """Start the run; it stops itself at the point."""
    with open(log, "wb") as handle:
        return subprocess.Popen(command(point, count, arguments), cwd=log.parent, stdout=handle,
                                stderr=subprocess.STDOUT, env=environment())


def kill_when_stopped(process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    """Wait until ``process`` stopped itself, then SIGKILL it (fails if it exits or never stops)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(process.pid, os.WNOHANG | os.WUNTRACED)
        if pid and os.WIFSTOPPED(status):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        if pid:  # exited without reaching the stop point
            process.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"the run ended (exit {process.returncode}) before its stop point:\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise AssertionError(f"the run did not reach its stop point in {timeout} s:\n{log.read_text()[-3000:]}")


def run(arguments: list[str], log: Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run to the end (no stop point)."""
    with open(log, "wb") as handle:
        result = subprocess.run(command("none", 0, arguments), cwd=log.parent, stdout=handle,
                                stderr=subprocess.STDOUT, env=environment(), timeout=timeout)
    return subprocess.CompletedProcess(result.args, result.returncode, log.read_text(), "")
