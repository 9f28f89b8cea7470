"""Course item 3: DVC experiments that differ in architecture, a hyperparameter and the data version.

The experiments are listed in `configs/experiments.yaml` (the test suite runs every architecture named there through
the whole pipeline, so this list and the tests cannot drift apart). Each runs as `dvc exp run --temp`, so your
models/ and configs/ stay as they are; results land in `dvc exp show`, in MLflow (./mlflow.db) and, as a short
table, in reports/experiments.md.

Usage: python scripts/experiments.py [--only NAME ...] [-S file:key=value ...]   (-S: on top of every experiment)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "configs" / "experiments.yaml"


def load_plan(path: Path = PLAN) -> dict[str, Any]:
    """The plan file, checked: unique names, `init_from` naming an earlier experiment."""
    plan: dict[str, Any] = yaml.safe_load(path.read_text())
    seen: list[str] = []
    for exp in plan["experiments"]:
        name = exp["name"]
        if name in seen:
            raise SystemExit(f"error: {path}: experiment {name!r} is listed twice")
        if exp.get("init_from") and exp["init_from"] not in seen:
            raise SystemExit(
                f"error: {path}: {name!r} fine-tunes from {exp['init_from']!r}, which is not listed above it"
            )
        seen.append(name)
    return plan


def settings(plan: dict[str, Any], exp: dict[str, Any]) -> dict[str, Any]:
    """`file:key -> value` for one experiment: the plan's common settings, then its own."""
    return {**(plan.get("common") or {}), **(exp.get("set") or {})}


def train_model(plan: dict[str, Any], exp: dict[str, Any]) -> str:
    """The `train.model` experiment `exp` trains: its own setting, else configs/train.yaml's."""
    default = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())["train"]["model"]
    return str(settings(plan, exp).get("configs/train.yaml:train.model", default))


def architectures(plan: dict[str, Any]) -> list[str]:
    """Every `train.model` the plan trains (the default config's one included), in order, without repeats."""
    return list(dict.fromkeys(train_model(plan, exp) for exp in plan["experiments"]))


def set_flag(target: str, value: Any) -> str:
    """One `-S file:key=value`; a key the file does not have yet gets Hydra's `+` (DVC refuses it otherwise)."""
    file, _, key = target.partition(":")
    node: Any = yaml.safe_load((ROOT / file).read_text())
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    rendered = json.dumps(value) if isinstance(value, bool) else str(value)
    return f"{file}:{'' if node is not None else '+'}{key}={rendered}"


def exp_weights(name: str, dest: Path) -> Path:
    """The models/best.pt that experiment `name` produced, copied out of DVC's cache to `dest`."""
    import dvc.api

    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    revs = [line.split()[0] for line in refs if line.endswith(f"/{name}")]
    if not revs:
        raise SystemExit(f"error: no experiment named {name!r} in this repository; run it first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dvc.api.open("models/best.pt", repo=str(ROOT), rev=revs[0], mode="rb") as src:
        dest.write_bytes(src.read())
    return dest


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these experiments (their init_from ones must exist)")
    parser.add_argument("-S", dest="extra", action="append", default=[], help="file:key=value for every experiment")
    parser.add_argument("--plan", type=Path, default=PLAN)
    args = parser.parse_args(argv)
    plan = load_plan(args.plan)
    dvc = os.environ.get("DVC", "dvc").split()
    # Experiments run in a temporary folder: point MLflow at this checkout's database by absolute path.
    env = {
        **os.environ,
        "YOLO_OFFLINE": "1",
        "DETECTOR_TRAIN__MLFLOW__TRACKING_URI": os.environ.get(
            "DETECTOR_TRAIN__MLFLOW__TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}"
        ),
    }
    names = [e["name"] for e in plan["experiments"]]
    for exp in plan["experiments"]:
        if args.only and exp["name"] not in args.only:
            continue
        flags = [set_flag(k, v) for k, v in settings(plan, exp).items()]
        if exp.get("init_from"):
            # Named <init_from>/<architecture>.pt: the config takes the architecture from the file's stem.
            source = next(e for e in plan["experiments"] if e["name"] == exp["init_from"])
            arch = Path(train_model(plan, source)).stem
            weights = exp_weights(exp["init_from"], ROOT / ".cache" / "experiments" / exp["init_from"] / f"{arch}.pt")
            flags.append(f"configs/train.yaml:train.model={weights}")
        flags += args.extra
        cmd = [*dvc, "exp", "run", "--temp", "--force", "-n", exp["name"], *[x for f in flags for x in ("-S", f)]]
        print(f"=== experiment {exp['name']}: {' '.join(flags)}", flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    # All commits (-A): experiments started from earlier commits are listed too.
    shown = subprocess.run([*dvc, "exp", "show", "--json", "-A"], cwd=ROOT, env=env, capture_output=True, check=True)
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "experiments_table.py"), "--names", *names],
        input=shown.stdout,
        capture_output=True,
        check=True,
    ).stdout.decode()
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / "experiments.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(run())
