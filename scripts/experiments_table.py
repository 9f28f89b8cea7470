"""Render `dvc exp show --json` as a short markdown table: what changed and what it scored.

`dvc exp show --md` prints every param and metric (a hundred columns); this keeps the ones that compare runs.
Usage: dvc exp show --json [-A] | python scripts/experiments_table.py [--only-named PREFIX] [--names NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLUMNS = [
    ("experiment", None),
    ("model", ("params", "configs/train.yaml", "train", "model")),
    ("data", ("params", "configs/data.yaml", "data", "version")),
    ("imgsz", ("params", "configs/train.yaml", "train", "imgsz")),
    ("epochs", ("params", "configs/train.yaml", "train", "epochs")),
    ("val mAP50", ("metrics", "reports/metrics.json", "val", "mAP50")),
    ("val mAP50-95", ("metrics", "reports/metrics.json", "val", "mAP50-95")),
    ("test mAP50-95", ("metrics", "reports/metrics.json", "test", "mAP50-95")),
    ("Ultralytics val mAP50-95 (.pt)", ("metrics", "reports/metrics.json", "ultralytics_val_pt", "mAP50-95")),
    ("INT8", ("metrics", "reports/quantize.json", "status")),
    ("INT8 val mAP50-95", ("metrics", "reports/metrics.json", "int8", "val", "mAP50-95")),
    ("onnxruntime p50 ms", ("metrics", "reports/benchmark.json", "summary", "onnxruntime_p50_ms")),
    ("openvino p50 ms", ("metrics", "reports/benchmark.json", "summary", "openvino_p50_ms")),
]


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    kind, file, *keys = path
    node: Any = (data.get(kind) or {}).get(file, {}).get("data", {})
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _rows(entries: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for entry in entries:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("data"):
                    yield rev.get("name") or rev["rev"][:7], rev["data"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, str) and value.endswith(".pt"):  # fine-tuned from an earlier experiment's weights
        path = Path(value)
        return f"{path.stem} ← {path.parent.name}"
    return "–" if value is None else str(value).removesuffix(".yaml")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-named", default="", help="keep experiments whose name starts with this")
    parser.add_argument("--names", nargs="*", help="keep only these experiments, in this order")
    args = parser.parse_args()
    rows = [(n, d) for n, d in _rows(json.load(sys.stdin)) if n.startswith(args.only_named)]
    if args.names is not None:
        rows = [(n, d) for n, d in rows if n in args.names]
    seen: dict[str, dict[str, Any]] = {}
    for name, data in rows:  # newest first in DVC's output: keep the newest run of each name
        seen.setdefault(name, data)
    print("| " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    order = args.names if args.names is not None else sorted(seen)
    for name, data in ((n, seen[n]) for n in order if n in seen):
        cells = [name] + [_fmt(_get(data, path)) for _, path in COLUMNS[1:]]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
