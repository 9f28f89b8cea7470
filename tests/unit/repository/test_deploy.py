"""scripts/deploy.sh against a fake `docker` and real HTTP health endpoints, no Docker engine needed.

The fake docker CLI keeps its containers in a JSON file (name -> image, published host port, running) and refuses
what the real one refuses (a second running container on a published port, `rm` of a running container without
-f, renaming onto an existing name). Two real HTTP servers on 127.0.0.1 stand in for the service port and the
candidate port: GET /health answers 200 when the container running on that port has a healthy image, 503
otherwise. "Healthy" is decided per test: `bad` images never are, `bad_on_service_port` ones fail only after the swap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "scripts" / "deploy.sh"

FAKE_DOCKER = r"""
import json, os, sys
state_path = os.environ["FAKE_DOCKER_STATE"]
with open(state_path) as f:
    state = json.load(f)
containers = state["containers"]
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")

def fail(message):
    print("fake docker: " + message, file=sys.stderr)
    sys.exit(1)

def save():
    with open(state_path, "w") as f:
        json.dump(state, f)

command = args[0]
if command == "pull":
    if args[1] not in state["registry"]:
        fail("manifest unknown: " + args[1])
elif command == "container" and args[1] == "inspect":
    if args[2] not in containers:
        fail("no such container: " + args[2])
    print(json.dumps([containers[args[2]]]))
elif command == "run":
    name = port = None
    rest = args[1:]
    i = 0
    while i < len(rest):
        if rest[i] in ("--name", "-p", "-v", "-e", "--restart", "--gpus"):
            if rest[i] == "--name":
                name = rest[i + 1]
            if rest[i] == "-p":
                port = int(rest[i + 1].split(":")[-2])
            i += 2
        elif rest[i] == "-d":
            i += 1
        else:
            break
    image = rest[i]
    if name in containers:
        fail("name in use: " + name)
    if any(c["running"] and c["port"] == port for c in containers.values()):
        fail("port is already allocated: %s" % port)
    containers[name] = {"image": image, "port": port, "running": True}
    save()
    print("id-" + name)
elif command == "rm":
    force = "-f" in args
    name = args[-1]
    if name not in containers:
        fail("no such container: " + name)
    if containers[name]["running"] and not force:
        fail("cannot remove a running container without -f: " + name)
    del containers[name]
    save()
elif command in ("stop", "start"):
    name = args[-1]
    if name not in containers:
        fail("no such container: " + name)
    if command == "start" and any(
        c["running"] and c["port"] == containers[name]["port"] for n, c in containers.items() if n != name
    ):
        fail("port is already allocated")
    containers[name]["running"] = command == "start"
    save()
elif command == "rename":
    old, new = args[1], args[2]
    if old not in containers or new in containers:
        fail("cannot rename %s to %s" % (old, new))
    containers[new] = containers.pop(old)
    save()
elif command == "port":
    if args[1] not in containers:
        fail("no such container: " + args[1])
    print("127.0.0.1:%s" % containers[args[1]]["port"])
elif command == "logs":
    print("fake log line of " + args[-1])
else:
    fail("unexpected command: " + " ".join(args))
"""


class FakeHost:
    """The fake docker's state plus the two health endpoints that read it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state_path = tmp_path / "docker-state.json"
        self.log_path = tmp_path / "docker-calls.jsonl"
        self.docker = tmp_path / "docker"
        self.docker.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
        self.docker.chmod(0o755)
        self.models = tmp_path / "models"
        self.models.mkdir()
        (self.models / "model.onnx").write_bytes(b"onnx")
        self.port, self.candidate_port = free_port(), free_port()
        self.bad: set[str] = set()
        self.bad_on_service_port: set[str] = set()
        self.write_state({}, registry=["app:v1", "app:v2"])
        self.servers = [self._serve(self.port), self._serve(self.candidate_port)]

    def write_state(self, containers: dict[str, dict[str, object]], registry: list[str]) -> None:
        self.state_path.write_text(json.dumps({"containers": containers, "registry": registry}))

    def containers(self) -> dict[str, dict[str, object]]:
        result: dict[str, dict[str, object]] = json.loads(self.state_path.read_text())["containers"]
        return result

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def healthy(self, port: int) -> bool:
        for container in self.containers().values():
            if container["running"] and container["port"] == port:
                image = str(container["image"])
                return image not in self.bad and not (port == self.port and image in self.bad_on_service_port)
        return False  # nothing listens: connection refused in real life, 503 here

    def _serve(self, port: int) -> ThreadingHTTPServer:
        host = self

        class Health(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path == "/health" and host.healthy(port)
                self.send_response(200 if ok else 503)
                self.end_headers()
                self.wfile.write(b'{"status": "ok"}' if ok else b'{"status": "loading"}')

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def deploy(self, image: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "DOCKER": str(self.docker),
            "FAKE_DOCKER_STATE": str(self.state_path),
            "FAKE_DOCKER_LOG": str(self.log_path),
            "NAME": "api",
            "PORT": str(self.port),
            "CANDIDATE_PORT": str(self.candidate_port),
            "MODEL_DIR": str(self.models),
            "HEALTH_TIMEOUT": "1",
            "HEALTH_INTERVAL": "0.2",
            **env,
        }
        return subprocess.run(
            ["bash", str(DEPLOY), image], env=environment, capture_output=True, text=True, timeout=60, cwd=self.tmp
        )


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeHost]:
    fake = FakeHost(tmp_path)
    yield fake
    fake.close()


def running_v1(host: FakeHost) -> None:
    host.write_state({"api": {"image": "app:v1", "port": host.port, "running": True}}, registry=["app:v1", "app:v2"])


def test_healthy_image_replaces_the_old_container(host: FakeHost) -> None:
    running_v1(host)
    proc = host.deploy("app:v2")
    assert proc.returncode == 0, proc.stderr
    assert host.containers() == {"api": {"image": "app:v2", "port": host.port, "running": True}}
    commands = [call[0] for call in host.calls()]
    # The old container was stopped only after the candidate proved healthy, and removed only at the end.
    assert commands.index("stop") > commands.index("run")
    assert host.calls()[-1] == ["rm", "api-previous"]
    # The model folder is mounted read-only into every container started.
    runs = [call for call in host.calls() if call[0] == "run"]
    assert len(runs) == 2
    assert all(f"{host.models}:/app/models:ro" in run for run in runs)


def test_first_deploy_without_a_previous_container(host: FakeHost) -> None:
    proc = host.deploy("app:v2")
    assert proc.returncode == 0, proc.stderr
    assert host.containers() == {"api": {"image": "app:v2", "port": host.port, "running": True}}


def test_unhealthy_image_never_touches_the_running_service(host: FakeHost) -> None:
    running_v1(host)
    host.bad.add("app:v2")
    proc = host.deploy("app:v2")
    assert proc.returncode == 1
    assert host.containers() == {"api": {"image": "app:v1", "port": host.port, "running": True}}
    assert "stop" not in [call[0] for call in host.calls()]
    assert "fake log line of api-candidate" in proc.stderr  # the failing container's logs are shown
    assert "left untouched" in proc.stderr


def test_failure_after_the_swap_rolls_back_to_the_previous_container(host: FakeHost) -> None:
    running_v1(host)
    host.bad_on_service_port.add("app:v2")
    proc = host.deploy("app:v2")
    assert proc.returncode == 1
    assert host.containers() == {"api": {"image": "app:v1", "port": host.port, "running": True}}
    assert host.healthy(host.port)
    assert "rolled back; the previous version serves" in proc.stderr
    assert ["rename", "api-previous", "api"] in host.calls()


def test_pull_failure_stops_before_anything_runs(host: FakeHost) -> None:
    running_v1(host)
    proc = host.deploy("app:v3-missing")
    assert proc.returncode != 0
    assert [call[0] for call in host.calls()] == ["pull"]
    assert host.containers()["api"]["running"] is True


def test_missing_model_is_refused(host: FakeHost) -> None:
    (host.models / "model.onnx").unlink()
    proc = host.deploy("app:v2")
    assert proc.returncode == 2
    assert "no model" in proc.stderr
    assert host.calls() == []


def test_health_command_override(host: FakeHost) -> None:
    """HEALTH_CMD replaces the HTTP probe: `false` makes every image unhealthy."""
    running_v1(host)
    proc = host.deploy("app:v2", HEALTH_CMD="false", PULL="0")
    assert proc.returncode == 1
    assert "pull" not in [call[0] for call in host.calls()]
    assert host.containers()["api"]["image"] == "app:v1"


def test_leftover_candidate_is_replaced(host: FakeHost) -> None:
    host.write_state(
        {"api-candidate": {"image": "app:v1", "port": host.candidate_port, "running": True}},
        registry=["app:v1", "app:v2"],
    )
    proc = host.deploy("app:v2")
    assert proc.returncode == 0, proc.stderr
    assert host.containers() == {"api": {"image": "app:v2", "port": host.port, "running": True}}


def test_old_container_drains_longer_than_the_app(host: FakeHost) -> None:
    """The app drains for request_timeout_s + 1 = 31 s; Docker's default stop timeout (10 s) would cut that short."""
    running_v1(host)
    proc = host.deploy("app:v2")
    assert proc.returncode == 0, proc.stderr
    stops = [call for call in host.calls() if call[0] == "stop"]
    assert stops == [["stop", "--time", "45", "api"]]
    proc = host.deploy("app:v1", STOP_TIMEOUT="90")
    assert ["stop", "--time", "90", "api"] in host.calls()


def switch_cmd(host: FakeHost) -> tuple[str, Path]:
    """A SWITCH_CMD that records the URL it was given and checks the new container already answers there."""
    record = host.tmp / "switched.txt"
    script = host.tmp / "switch"
    script.write_text(
        f"#!{sys.executable}\nimport sys, urllib.request\n"
        "urllib.request.urlopen(sys.argv[1] + '/health', timeout=5)\n"
        f"open({str(record)!r}, 'a').write(sys.argv[1] + '\\n')\n"
    )
    script.chmod(0o755)
    return str(script), record


def test_switch_mode_starts_beside_switches_then_stops_the_old(host: FakeHost) -> None:
    running_v1(host)
    command, record = switch_cmd(host)
    proc = host.deploy("app:v2", SWITCH_CMD=command)
    assert proc.returncode == 0, proc.stderr
    # The new container runs on the other port; the traffic was switched to it while the old one still ran.
    assert host.containers() == {"api": {"image": "app:v2", "port": host.candidate_port, "running": True}}
    assert record.read_text().split() == [f"http://127.0.0.1:{host.candidate_port}"]
    commands = [call[0] for call in host.calls()]
    assert commands.index("run") < commands.index("stop")  # the old one is stopped only after the switch
    assert ["stop", "--time", "45", "api"] in host.calls()
    # The next deploy alternates back to the first port: blue/green, never a port shared by two containers.
    proc = host.deploy("app:v1", SWITCH_CMD=command)
    assert proc.returncode == 0, proc.stderr
    assert host.containers() == {"api": {"image": "app:v1", "port": host.port, "running": True}}


def test_switch_mode_unhealthy_or_failed_switch_leaves_the_old_one_serving(host: FakeHost) -> None:
    running_v1(host)
    command, record = switch_cmd(host)
    host.bad.add("app:v2")
    proc = host.deploy("app:v2", SWITCH_CMD=command)
    assert proc.returncode == 1
    assert host.containers() == {"api": {"image": "app:v1", "port": host.port, "running": True}}
    assert not record.exists()
    host.bad.clear()
    proc = host.deploy("app:v2", SWITCH_CMD="false")
    assert proc.returncode == 1 and "switch command failed" in proc.stderr
    assert host.containers() == {"api": {"image": "app:v1", "port": host.port, "running": True}}
