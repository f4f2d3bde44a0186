"""Fixtures of the zoo tests: the repository's bundles, a packed zoo of them, and a static HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medgen.zoo import pack_bundle, write_index

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "metadata.json").is_file())


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (signature of the base class)
        pass


@pytest.fixture
def serve() -> Iterator:
    """``serve(folder)`` -> base URL of a static HTTP server on 127.0.0.1 (a free port) serving ``folder``; every
    server started is shut down after the test."""
    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A zoo folder holding every repository bundle packed (weights inside) and its index."""
    folder = tmp_path_factory.mktemp("zoo")
    for name in BUNDLE_NAMES:
        pack_bundle(BUNDLES_DIR / name, folder)
    write_index(folder)
    return folder


def copy_bundle(name: str, target_parent: Path) -> Path:
    """A copy of repository bundle ``name`` (without run outputs) under ``target_parent/<name>``."""
    target = target_parent / name
    shutil.copytree(BUNDLES_DIR / name, target, ignore=shutil.ignore_patterns("outputs", "runs", "__pycache__"))
    return target
