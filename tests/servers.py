"""Processes the tests start and speak to over HTTP: a free port, `detector serve` (or any `python -m ...`) as a
subprocess logging to a file, waiting for it to answer, and stopping it as a user would (SIGTERM, then kill)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python ARGS` from `log`'s folder, offline, with the repo importable and `env` on top of ours; stdout and
    stderr go to `log`."""
    full_env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, *args], cwd=log.parent, env=full_env, stdout=fh, stderr=subprocess.STDOUT, text=True
        )


def end(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """SIGTERM (a graceful shutdown), then kill after `timeout` s; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_http(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 90) -> list[httpx.Response]:
    """Poll `url` until it answers 200; returns every answer seen (the last one the 200). Fails, with the end of
    `log`, when the process exits or `timeout` s pass first."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            seen.append(httpx.get(url, timeout=2))
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if seen[-1].status_code == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    log: Path


def start_server(model: str | Path, cwd: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    """`detector serve --model MODEL EXTRA...` on a free port, run from `cwd` (its log there too)."""
    port = free_port()
    log = cwd / f"server-{port}.log"
    cli = ["-m", "cli", "--config-dir", str(REPO / "configs"), "serve", "--port", str(port)]
    return Server(f"http://127.0.0.1:{port}", spawn([*cli, "--model", str(model), *extra], log, env), log)


def wait_ready(server: Server, timeout: float = 90) -> list[str]:
    """Poll /health; returns the statuses seen (so a test can check "loading" came before "ok")."""
    return [r.json()["status"] for r in wait_http(server.url + "/health", server.proc, server.log, timeout)]


def stop(server: Server) -> int:
    return end(server.proc)


@contextmanager
def serving(model: str | Path, cwd: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`start_server`, ready to answer; stopped on the way out."""
    server = start_server(model, cwd, *extra, env=env)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(server)
