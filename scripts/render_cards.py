"""Fill the generated sections of MODEL_CARD.md and DATASET_CARD.md from the pipeline's outputs.

Numbers in the cards are never typed by hand. Each generated section sits between markers:

    <!-- metrics:begin -->   ... <!-- metrics:end -->      reports/metrics.json + reports/train.json + git commit
    <!-- experiments:begin --> ... <!-- experiments:end --> every finished MLflow run in mlflow.db (read-only SQLite)
    <!-- splits:begin -->    ... <!-- splits:end -->        data/<version>/manifest.json of each generated version

Run it after `dvc repro` (or `make pipeline`) and commit the cards with the reports:

    python scripts/render_cards.py              rewrite the sections
    python scripts/render_cards.py --check      exit 1 if a card is out of date (nothing written)

A section whose source is missing is left as it is, with a note on stderr. Only the standard library is used, so the
script runs in any environment (MLflow's database is read with sqlite3, not through mlflow).
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python scripts/render_cards.py` from a checkout: the project's own modules

from detector.provenance import git_commit, short_commit  # noqa: E402  (standard library only)

MARKER = "<!-- {name}:{edge} -->"
METRIC_KEYS = ("mAP50", "mAP50-95", "precision", "recall")


def fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def metrics_section(repo: Path) -> str | None:
    metrics = read_json(repo / "reports" / "metrics.json")
    if metrics is None:
        return None
    train = read_json(repo / "reports" / "train.json") or {}
    model = metrics.get("model", {})
    rows = [
        ("val", "ONNX through this project's runtime (what the service returns)", metrics.get("val", {})),
        ("test", "ONNX through this project's runtime", metrics.get("test", {})),
        ("val", "Ultralytics' validator on the PyTorch weights (reference)", metrics.get("ultralytics_val_pt", {})),
    ]
    lines = [
        "| split | evaluated | mAP50 | mAP50-95 | precision | recall |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for split, how, values in rows:
        if values:
            lines.append(f"| {split} | {how} | " + " | ".join(fmt(values.get(k)) for k in METRIC_KEYS) + " |")
    size = model.get("input_size")
    provenance = [
        f"- model version: `{model.get('version', 'n/a')}` (architecture `{train.get('architecture', 'n/a')}`, "
        f"input {'x'.join(map(str, size)) if size else 'n/a'} px)",
        f"- dataset: `{model.get('dataset_version', train.get('dataset_version', 'n/a'))}`, "
        f"content sha256 `{str(train.get('dataset_sha256', 'n/a'))[:16]}…`",
        f"- MLflow run: `{train.get('run_id', 'n/a')}`; code commit: `{short_commit(git_commit(repo))}`",
        "- source: `reports/metrics.json` (DVC stage `evaluate`) and `reports/train.json` (stage `train`); "
        "rendered by `scripts/render_cards.py`",
    ]
    return "\n".join([*lines, "", *provenance])


def experiments_section(repo: Path, db: Path) -> str | None:
    if not db.is_file():
        return None
    # Read-only URI: never create or migrate the tracking database.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        runs = con.execute(
            "SELECT run_uuid, name, start_time FROM runs WHERE status = 'FINISHED' AND lifecycle_stage = 'active' "
            "ORDER BY start_time"
        ).fetchall()

        def table(sql: str, run_id: str) -> dict[str, str]:
            return {k: v for k, v in con.execute(sql, (run_id,)).fetchall()}

        lines = [
            "| run | architecture | data | epochs | imgsz | val mAP50-95 (PyTorch) | val mAP50-95 (ONNX) | commit |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for run_id, name, _ in runs:
            params = table("SELECT key, value FROM params WHERE run_uuid = ?", run_id)
            tags = table("SELECT key, value FROM tags WHERE run_uuid = ?", run_id)
            metrics = table("SELECT key, value FROM latest_metrics WHERE run_uuid = ?", run_id)
            pt = metrics.get("final_val_mAP50-95", metrics.get("val_mAP50-95"))
            lines.append(
                f"| `{name}` | {tags.get('architecture', params.get('train.model', '?'))} "
                f"| {tags.get('data.version', params.get('data.version', '?'))} "
                f"| {params.get('train.epochs', '?')} | {params.get('train.imgsz', '?')} "
                f"| {fmt(pt)} | {fmt(metrics.get('onnx_val_mAP50-95'))} "
                f"| `{short_commit(tags.get('git_commit', '?'))}` |"
            )
    if not runs:
        return None
    return "\n".join([*lines, "", f"{len(runs)} finished runs in `{db.name}`; see them with `mlflow ui`."])


def splits_section(repo: Path) -> str | None:
    manifests = sorted((repo / "data").glob("*/manifest.json"))
    if not manifests:
        return None
    lines = ["| version | classes | train | val | test | objects (train / val / test) | content sha256 |"]
    lines.append("|---|---|---:|---:|---:|---|---|")
    for path in manifests:
        m = json.loads(path.read_text())
        counts = m.get("counts", {})
        objects = m.get("objects_per_class", {})
        per_split = " / ".join(str(sum(objects.get(s, {}).values())) for s in ("train", "val", "test"))
        names = ", ".join(m.get("names", {}).values())
        lines.append(
            f"| {m.get('version', path.parent.name)} | {names} | {counts.get('train', 0)} | {counts.get('val', 0)} "
            f"| {counts.get('test', 0)} | {per_split} | `{str(m.get('sha256', ''))[:16]}…` |"
        )
    lines += [
        "",
        "From `data/<version>/manifest.json`, written by the generator; rendered by `scripts/render_cards.py`.",
    ]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = MARKER.format(name=name, edge="begin"), MARKER.format(name=name, edge="end")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"markers {begin} ... {end} not found")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def render(repo: Path, db: Path) -> dict[Path, str]:
    """The new text of each card (only sections whose source exists are replaced)."""
    plan: dict[str, list[tuple[str, Callable[[], str | None]]]] = {
        "MODEL_CARD.md": [
            ("metrics", lambda: metrics_section(repo)),
            ("experiments", lambda: experiments_section(repo, db)),
        ],
        "DATASET_CARD.md": [("splits", lambda: splits_section(repo))],
    }
    out: dict[Path, str] = {}
    for card, sections in plan.items():
        path = repo / card
        text = path.read_text()
        for name, make in sections:
            body = make()
            if body is None:
                print(f"{card}: no source for the {name} section; left as it is", file=sys.stderr)
                continue
            text = replace_section(text, name, body)
        out[path] = text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--mlflow-db", type=Path, help="default: <repo>/mlflow.db")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a card would change")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    stale = []
    for path, text in render(repo, args.mlflow_db or repo / "mlflow.db").items():
        if path.read_text() == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text)
            print(f"updated {path.relative_to(repo)}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run: python scripts/render_cards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
