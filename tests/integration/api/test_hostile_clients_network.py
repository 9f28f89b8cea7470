"""Issue 21's table ("Safe to put on a network"), row by row, against a REAL `detector serve` (uvicorn subprocess on
127.0.0.1, the quick model). The flooding client binds 127.0.0.2 (Linux routes all of 127/8 to loopback), so it is
another address than the one probing /health. Counts are bounded; the head timeout is 2 s here (default 10 s).
The probes live in benchmarks/hostile_clients.py (the same code prints the table).
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import hostile_clients as probe
from tests.servers import Server, serving

HEAD_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"DETECTOR_INFERENCE__SERVER__HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S)}
    with serving(model_path, tmp_path_factory.mktemp("hostile-net"), env=env) as srv:
        yield srv


def test_health_answers_while_one_client_holds_1023_sockets(server: Server) -> None:
    n = min(1023, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)  # the issue: 1,023 (uvicorn's cap 1,024)
    flood = probe.connection_flood(server.url, n, hold_s=3)
    # Before: every request, /health included, was a 503 for as long as the sockets stayed open.
    assert flood.health_codes and set(flood.health_codes) == {200}, flood.health_codes
    assert probe.p99(flood.health_ms) < 1000, sorted(flood.health_ms)[-5:]
    assert flood.refused >= n - 64  # max_connections_per_client (64) of them held, the rest refused at once


def test_a_trickled_head_is_closed_at_the_deadline(server: Server) -> None:
    flood = probe.connection_flood(server.url, 50, trickle=True, hold_s=HEAD_TIMEOUT_S + 1, wait_close_s=8)
    assert flood.refused == 0 and flood.opened == 50
    assert set(flood.health_codes) == {200}, flood.health_codes
    # Before: a head trickled at 1 byte / 0.5 s stayed open for as long as it kept trickling.
    assert flood.closed_after_s is not None and flood.closed_after_s < HEAD_TIMEOUT_S + 2, flood.closed_after_s
