"""Prometheus for tests: the repo's monitoring files, the Debian binaries (skip when absent), and a scrape of a
live server with the repo's alert rules loaded."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.servers import free_port

MONITORING = REPO / "deploy" / "monitoring"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus; CI's .ci/run installs it)")
    return path


def prom_query(base: str, query: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scrape(
    server_url: str, workdir: Path, ready_query: str, timeout: float = 45
) -> tuple[str, subprocess.Popen[bytes]]:
    """Prometheus with the repo's prometheus.yml pointed at `server_url` (1 s scrapes, alerts.yml loaded), waited
    until `ready_query` returns a series. Returns its base URL and process (terminate it when done)."""
    prometheus = tool("prometheus")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [server_url.removeprefix("http://")]}]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    args = [
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = subprocess.Popen([prometheus, *args], stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            if prom_query(base, ready_query):
                return base, proc
        except httpx.TransportError:
            continue
    proc.terminate()
    proc.wait(timeout=30)
    raise AssertionError(f"no scrape of {server_url}/metrics within {timeout} s:\n{log.read_text()[-2000:]}")
