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


def test_compose_services() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    assert {"api", "api-gpu", "mlflow"} <= set(services)
    assert "profiles" not in services["api"], "the CPU API is the default: `docker compose up` starts it"
    assert services["api-gpu"]["profiles"] == ["gpu"]
    assert services["mlflow"]["profiles"] == ["mlflow"]
    for name, service in services.items():
        build = service["build"]
        dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        for port in service.get("ports", []):
            bind = r"(\$\{\w+:-[\d.]+\}:)?"  # an optional host address, e.g. ${MLFLOW_BIND:-127.0.0.1}:
            assert re.fullmatch(bind + r"(\$\{\w+:-\d+\}|\d+):\d+", str(port)), f"{name}: port {port!r}"
    # MLflow has no authentication: it must not be published on every interface by default.
    assert str(services["mlflow"]["ports"][0]).startswith("${MLFLOW_BIND:-127.0.0.1}:")
    assert all("mem_limit" in services[n] for n in ("api", "api-gpu"))


def test_compose_gpu_reservation_and_volumes() -> None:
    compose = load(COMPOSE)
    gpu = compose["services"]["api-gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared"
    for name in ("api", "api-gpu"):
        assert any(str(v).endswith(":/app/models:ro") for v in compose["services"][name]["volumes"])
    assert any(str(v).endswith(":/app/engines") for v in gpu["volumes"]), "the TensorRT engine cache must persist"


# --- the GitHub workflow ---------------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    data = load(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_workflow_triggers_and_jobs() -> None:
    wf = workflow()
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    jobs = wf["jobs"]
    assert {"lint", "test", "images", "deploy"} <= set(jobs)
    assert "make lint" in run_lines(jobs["lint"])
    assert "make test" in run_lines(jobs["test"])
    assert set(jobs["images"]["needs"]) == {"lint", "test"}
    assert jobs["deploy"]["needs"] == ["images"]
    for job in jobs.values():
        assert "runs-on" in job and job["steps"], job
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step


def test_workflow_builds_both_images_and_pushes_only_from_main() -> None:
    jobs = workflow()["jobs"]
    images = jobs["images"]
    files = {entry["dockerfile"] for entry in images["strategy"]["matrix"]["include"]}
    assert files == {"Dockerfile", "Dockerfile.gpu"}
    assert all((REPO / f).is_file() for f in files)
    assert "refs/heads/main" in images["env"]["PUSH"]
    pushes = [s for s in images["steps"] if s.get("with", {}).get("push") is True]
    assert pushes and all(s.get("if") == "env.PUSH == 'true'" for s in pushes)
    logins = [s for s in images["steps"] if str(s.get("uses", "")).startswith("docker/login-action")]
    assert logins and logins[0]["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    assert images["permissions"]["packages"] == "write"
    assert "scripts/smoke_test.sh" in run_lines(images)
    deploy = jobs["deploy"]
    assert "refs/heads/main" in deploy["if"]
    assert "scripts/deploy.sh" in run_lines(deploy)


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
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; GitHub's runners have it)")
    proc = subprocess.run(["shellcheck", "--severity=warning", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
