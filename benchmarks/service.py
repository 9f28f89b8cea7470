"""Start the project's own service for `run all` when no `--url` is given, and stop it afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.errors import BenchmarkInputError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(
    cmd: list[str], env: dict[str, str], port: int, name: str, startup_s: float = 120.0, cwd: Path | None = None
) -> Iterator[str]:
    """Run `cmd` (in `cwd`), an HTTP server listening on 127.0.0.1:`port`, until its /health is 200; yield its
    base URL; SIGTERM it (graceful shutdown) at the end. Its stderr goes to a temporary file, not a pipe: nobody
    reads a pipe while it serves, and a full one would block it."""
    url = f"http://127.0.0.1:{port}"
    log_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in the finally below, after the child
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                log_file.seek(0)
                err = log_file.read().strip().splitlines()
                raise BenchmarkInputError(f"{name} exited with {proc.returncode}: {err[-1] if err else '?'}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkInputError(f"{name} did not become healthy within {startup_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


@contextmanager
def local_service(model: Path, backend: str, threads: int, startup_s: float = 120.0) -> Iterator[str]:
    """`detector serve` on `model` with `backend` on a free local port; yields its base URL once /health is 200."""
    port = free_port()
    env = {**os.environ, "DETECTOR_INFERENCE__THREADS": str(threads)}
    cmd = [sys.executable, "-m", "cli", "serve", "--model", str(model), "--backend", backend]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with http_server(cmd, env, port, "the service", startup_s) as url:
        yield url
