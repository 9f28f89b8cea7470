"""docker-compose.yml, the GitHub workflow and the shell scripts: parsed and checked without Docker or GitHub."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
COMPOSE = REPO / "docker-compose.yml"
SHELL_SCRIPTS = sorted({*REPO.glob("scripts/*.sh"), *REPO.glob("docker/*.sh"), REPO / ".ci" / "run"})
# Scripts owned by the delivery layer: held to shellcheck's warning level too.
DELIVERY_SCRIPTS = [REPO / p for p in ("scripts/deploy.sh", "scripts/smoke_test.sh", "docker/entrypoint.sh")]


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


# --- docker-compose.yml ----------------------------------------------------------------------------------------------


def compose_default(value: str) -> str:
    """`${NAME:-default}` as compose resolves it with NAME unset; other values as they are."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_compose_services_build_from_files_that_exist_and_publish_the_service_port() -> None:
    from detector.config import load_config

    services = load(COMPOSE)["services"]
    assert "profiles" not in services["api"], "`docker compose up` must start the CPU API with no profile"
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        else:  # a third-party image (monitoring): pinned, never `latest`
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), f"{name}: unpinned {service['image']}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):  # a file of this repository mounted into the container
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
        for port in service.get("ports", []):
            bind = r"(\$\{\w+:-[\d.]+\}:)?"  # an optional host address, e.g. ${MLFLOW_BIND:-127.0.0.1}:
            assert re.fullmatch(bind + r"(\$\{\w+:-\d+\}|\d+):\d+", str(port)), f"{name}: port {port!r}"
    # MLflow has no authentication, Grafana a default password: not published on every interface by default.
    assert str(services["mlflow"]["ports"][0]).startswith("${MLFLOW_BIND:-127.0.0.1}:")
    assert all(
        str(services[n]["ports"][0]).startswith("${MONITORING_BIND:-127.0.0.1}:") for n in ("prometheus", "grafana")
    )
    assert all("mem_limit" in services[n] for n in ("api", "api-gpu"))
    config = load_config(config_dir=REPO / "configs", environ={})
    for name in ("api", "api-gpu"):
        (published,) = services[name]["ports"]
        host, container = str(published).rsplit(":", 1)
        assert int(compose_default(host)) > 0
        assert int(container) == config.inference.server.port, f"{name} publishes a port the service does not use"


def test_compose_environment_is_valid_configuration_and_grace_covers_a_request() -> None:
    """A misspelt DETECTOR_* key or a bad value would stop the container at start; an in-flight request must be
    allowed to finish within the stop grace period."""
    from detector.config import load_config

    backends = {}
    for name in ("api", "api-gpu"):
        service = load(COMPOSE)["services"][name]
        env = {k: compose_default(str(v)) for k, v in service.get("environment", {}).items()}
        config = load_config(config_dir=REPO / "configs", environ=env)  # raises ConfigError naming the key
        grace = float(str(service["stop_grace_period"]).rstrip("s"))
        assert grace >= config.inference.server.request_timeout_s + 1, name
        backends[name] = config.inference.backend
    assert backends == {"api": "auto", "api-gpu": "tensorrt"}  # the GPU service really serves through TensorRT


def test_compose_volumes_exist_and_models_are_read_only() -> None:
    compose = load(COMPOSE)
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared (compose would refuse)"
    for name in ("api", "api-gpu"):
        assert any(str(v).endswith(":/app/models:ro") for v in compose["services"][name]["volumes"])
    # The GPU image builds its TensorRT engine at start into export.engine.engine_dir: that folder must persist.
    gpu = compose["services"]["api-gpu"]
    assert any(str(v).endswith(":/app/engines") for v in gpu["volumes"]), "the engine cache would be rebuilt"


# --- the GitHub workflow ---------------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    data = load(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


def test_ci_runs_what_users_run() -> None:
    """CI runs the README's commands (the same ones as .ci/run), and every command it names exists."""
    wf = workflow()
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    jobs = wf["jobs"]
    ci_run = (REPO / ".ci" / "run").read_text()
    for job, target in (("lint", "lint"), ("test", "test")):
        assert f"make {target}" in run_lines(jobs[job]) and f"make {target}" in ci_run
    targets = makefile_targets()
    for name, job in jobs.items():
        for target in re.findall(r"\bmake (\w[\w-]*)", run_lines(job)):
            assert target in targets, f"job {name}: `make {target}` is not a Makefile target"
        for script in re.findall(r"\b((?:scripts|docker|\.ci)/[\w./-]+)", run_lines(job)):
            assert (REPO / script).is_file(), f"job {name} runs {script}, which does not exist"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step


def test_ci_test_job_can_run_the_browser_test() -> None:
    """The UI's browser test drives /usr/bin/chromium (Debian's package) and skips without it: CI must install it."""
    job = workflow()["jobs"]["test"]
    browser_test = (REPO / "tests" / "e2e" / "test_ui_browser.py").read_text()
    assert 'Path("/usr/bin/chromium")' in browser_test
    assert re.search(r"apt-get install[^\n]*\bchromium\b", run_lines(job)), "the test job installs no Chromium"
    assert "debian" in str(job.get("container", "")) or "bookworm" in str(job.get("container", ""))
    steps = [str(step.get("run", "")) for step in job["steps"]]
    install = next(i for i, r in enumerate(steps) if "chromium" in r)
    assert install < next(i for i, r in enumerate(steps) if "make test" in r), "Chromium must come before the tests"


def test_ci_smoke_tests_the_model_the_tests_trained() -> None:
    jobs = workflow()["jobs"]
    cache = jobs["test"]["env"]["DETECTOR_TEST_CACHE"].replace("${{ github.workspace }}/", "")
    (upload,) = [s for s in jobs["test"]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == f"{cache}/models/model.onnx"  # where conftest's quick pipeline writes it
    images = jobs["images"]
    assert set(images["needs"]) == {"lint", "test"}
    (download,) = [s for s in images["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact")]
    assert download["with"]["name"] == upload["with"]["name"] and download["with"]["path"] == "models"
    smoke = run_lines(images)
    image = re.search(r"smoke_test\.sh \S+ (\S+)", smoke)
    assert image and (REPO / image.group(1)).is_file(), "the smoke test's image is missing"
    files = {entry["dockerfile"] for entry in images["strategy"]["matrix"]["include"]}
    assert all((REPO / f).is_file() for f in files)


def test_images_are_pushed_only_from_main() -> None:
    jobs = workflow()["jobs"]
    images = jobs["images"]
    assert "refs/heads/main" in images["env"]["PUSH"] and "push" in images["env"]["PUSH"]
    pushes = [s for s in images["steps"] if s.get("with", {}).get("push") is True]
    assert pushes and all(s.get("if") == "env.PUSH == 'true'" for s in pushes)
    assert "refs/heads/main" in jobs["deploy"]["if"]


def test_workflow_actions_are_pinned_to_a_version() -> None:
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


# --- shell scripts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_script_syntax(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert script.read_text().startswith("#!"), "scripts start with a shebang"
    assert script.stat().st_mode & 0o111, f"{script} is not executable (chmod +x)"


@pytest.mark.parametrize("script", DELIVERY_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; CI's test job installs it)")
    proc = subprocess.run(["shellcheck", "--severity=warning", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
