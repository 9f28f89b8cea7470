"""The report: one JSON (also DVC's metrics file), a markdown table and a plot, all written at the very end.

Each file is written to a hidden temporary name and renamed into place, so a run that dies mid-way leaves the
previous complete report (or nothing), never a half file. A report with a failed cell says `"complete": false`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, BinaryIO

from benchmarks.machine import cpu_text
from benchmarks.targets import BASELINES, TARGET_SIZE
from detector.files import write_atomic

JSON_NAME, MD_NAME, PNG_NAME = "benchmark.json", "benchmark.md", "benchmark.png"


def _key(runner: str) -> str:
    return runner.replace("-", "_")


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Flat scalars for `dvc exp show`: batch-1 medians per runner and size, best ratios, HTTP headline numbers."""
    out: dict[str, Any] = {"complete": report["complete"]}
    peak = (report.get("gemm_peak") or {}).get("gflops")
    if peak:
        out["gemm_peak_gflops"] = peak
    native = (report.get("model") or {}).get("imgsz")
    cells = [c for c in report.get("backends", {}).get("cells", []) if c.get("end_to_end")]
    for c in cells:
        if c["batch"] == 1:
            suffix = "" if c["size"] == native else f"_{c['size']}"
            out[f"{_key(c['runner'])}{suffix}_p50_ms"] = c["end_to_end"]["p50_ms"]
    ours = [c for c in cells if c["runner"] not in BASELINES and c["batch"] == 1]
    for size in sorted({c["size"] for c in ours}):
        at_size = [c for c in ours if c["size"] == size and c.get("speedup_vs_ultralytics")]
        if at_size:
            best = max(at_size, key=lambda c: c["speedup_vs_ultralytics"])
            suffix = "" if size == native else f"_{size}"
            out[f"best_backend{suffix}"] = best["runner"]
            out[f"best_speedup_vs_ultralytics{suffix}"] = best["speedup_vs_ultralytics"]
    overheads = [c["overhead_fraction"] for c in cells if c["runner"] not in BASELINES and c["size"] == TARGET_SIZE]
    if any(o is not None for o in overheads):
        out["max_overhead_640"] = max(o for o in overheads if o is not None)
    pct = [c["pct_of_peak"] for c in ours if c.get("pct_of_peak") is not None]
    if pct:
        out["best_pct_of_peak_batch1"] = max(pct)
    http = [c for c in report.get("http", {}).get("cells", []) if c.get("latency")]
    if http:
        c1 = [c for c in http if c["concurrency"] == 1]
        if c1:
            out["http_c1_p50_ms"] = min(c["latency"]["p50_ms"] for c in c1)
        out["http_max_rps"] = max(c["throughput_rps"] or 0.0 for c in http)
        out["http_errors"] = sum(c["errors"] for c in report["http"]["cells"])
    value = (report.get("targets") or {}).get("http_vs_ultralytics", {}).get("value")
    if value is not None:
        out["http_vs_ultralytics"] = value
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    m, lib, model, s = report["machine"], report["libraries"], report.get("model") or {}, report["settings"]
    lines = [
        "# Latency benchmark" + ("" if report["complete"] else " (INCOMPLETE: see errors)"),
        "",
        f"- Machine: {cpu_text(m)}, {m['cores']} usable cores, GPU: {', '.join(m['gpus']) or 'none'}, "
        f"load average {m.get('load_avg_1m')} at start",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in lib.items() if v != "absent"),
        f"- Threads per runner: {s['threads']}; model precision {model.get('precision', 'fp32')}"
        + (f", TensorRT engines {s['precision']}" if "tensorrt" in s.get("backends", []) else "")
        + "; "
        f"in-process budget per cell: {s['budget']}"
        + (f"; HTTP budget per cell: {s['http']}" if s.get("http") else ""),
        f"- Images: {s.get('images', '–')}",
    ]
    if model:
        lines.append(
            f"- Model: `{model['path']}` version {model['version']}, {model['imgsz']} px, "
            f"sha256 {model['sha256'][:16]}…"
        )
    peak = report.get("gemm_peak") or {}
    if peak.get("gflops"):
        lines.append(
            f"- fp32 GEMM peak (numpy matmul {int(peak['n'])}², {int(peak['threads'])} threads): "
            f"{peak['gflops']:.1f} GFLOP/s"
        )
    cells = report.get("backends", {}).get("cells", [])
    if cells:
        lines += [
            "",
            "## In-process, per backend",
            "",
            "Milliseconds per call. Speed-up = Ultralytics ONNX e2e p50 / e2e p50 at the same size and batch. "
            "Overhead = share of each e2e call spent outside inference (median over calls); 'loops' = "
            "(e2e p50 - backend-only p50) / e2e p50 from separate calls, noisier. GFLOP/s = model FLOPs / "
            "backend-only p50 (Ultralytics: its profiler's inference time).",
            "",
            "| runner | size | batch | e2e p50 | p90 | p99 | per image | img/s | backend p50 | overhead "
            "| overhead (loops) | speed-up vs Ultralytics | GFLOP/s | % of peak |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in sorted(cells, key=lambda c: (c["size"], c["batch"], c["runner"])):
            e, b = c.get("end_to_end") or {}, c.get("backend_only") or {}
            if c.get("error"):
                lines.append(f"| {c['runner']} | {c['size']} | {c['batch']} | error: {c['error'][:120]} ||||||||||||")
                continue
            oh, loops = c.get("overhead_fraction"), c.get("overhead_fraction_separate_loops")
            lines.append(
                f"| {c['runner']} | {c['size']} | {c['batch']} | {_fmt(e.get('p50_ms'))} | {_fmt(e.get('p90_ms'))} "
                f"| {_fmt(e.get('p99_ms'))} | {_fmt(e.get('per_item_p50_ms'))} | {_fmt(e.get('throughput_per_s'))} "
                f"| {_fmt(b.get('p50_ms'))} | {_pct(oh)} | {_pct(loops)} "
                f"| {_fmt(c.get('speedup_vs_ultralytics'), 2)}× | {_fmt(c.get('gflops_per_s'))} "
                f"| {_fmt(c.get('pct_of_peak'))} |"
            )
    http = report.get("http") or {}
    if http.get("cells"):
        served = http.get("model") or {}
        lines += [
            "",
            f"## HTTP `POST /predict` at {http['url']} (model {served.get('version', '?')}, "
            f"{served.get('input_size', '?')} px, backend {served.get('backend', '?')})",
            "",
            "| input | concurrency | sent | ok | errors | p50 | p90 | p99 | mean | req/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in http["cells"]:
            lat = c.get("latency") or {}
            lines.append(
                f"| {c['input']} | {c['concurrency']} | {c['sent']} | {c['ok']} | {c['errors']} "
                f"| {_fmt(lat.get('p50_ms'))} | {_fmt(lat.get('p90_ms'))} | {_fmt(lat.get('p99_ms'))} "
                f"| {_fmt(lat.get('mean_ms'))} | {_fmt(c.get('throughput_rps'))} |"
            )
    targets = report.get("targets") or {}
    if targets:
        lines += ["", "## Targets", "", "| target | limit | measured | met | where |", "|---|---:|---:|---|---|"]
        for name, t in targets.items():
            met = {True: "yes", False: "no", None: "not measured"}[t["met"]]
            lines.append(f"| {name} | {t['limit']} | {_fmt(t['value'], 3)} | {met} | {t['where']} |")
    for title, items in (("Notes", report.get("notes")), ("Errors", report.get("errors"))):
        if items:
            lines += ["", f"## {title}", "", *[f"- {item}" for item in items]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path | BinaryIO) -> None:
    """Per-image latency vs batch per runner (one panel per size), and HTTP throughput vs concurrency."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, DVC stages, containers
    import matplotlib.pyplot as plt

    cells = [c for c in report.get("backends", {}).get("cells", []) if c.get("end_to_end")]
    http = [c for c in (report.get("http") or {}).get("cells", []) if c.get("latency")]
    sizes = sorted({c["size"] for c in cells})
    panels = len(sizes) + (1 if http else 0)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(5.5 * max(panels, 1), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=False):
        for runner in sorted({c["runner"] for c in cells if c["size"] == size}):
            rows = sorted((c for c in cells if c["size"] == size and c["runner"] == runner), key=lambda c: c["batch"])
            style = "--" if runner in BASELINES else "-"
            ax.plot(
                [c["batch"] for c in rows],
                [c["end_to_end"]["per_item_p50_ms"] for c in rows],
                style,
                marker="o",
                label=runner,
            )
        ax.set(title=f"{size} px: end-to-end p50 per image", xlabel="batch size", ylabel="ms per image")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if http:
        ax = axes[0][len(sizes)]
        for kind in sorted({c["input"] for c in http}):
            rows = sorted((c for c in http if c["input"] == kind), key=lambda c: c["concurrency"])
            ax.plot([c["concurrency"] for c in rows], [c["throughput_rps"] for c in rows], marker="o", label=kind)
        ax.set(title="HTTP /predict throughput", xlabel="concurrent clients", ylabel="requests / s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if panels == 0:
        axes[0][0].text(0.5, 0.5, "no successful cells", ha="center", va="center")
    fig.suptitle(
        ("" if report["complete"] else "INCOMPLETE - ") + f"{report['machine']['cpu']}, "
        f"{report['settings']['threads']} threads",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # a file object has no .png suffix to infer it from
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write benchmark.{png,md,json} into `out_dir`; the JSON (DVC's metric) is renamed into place last."""
    report = {**report, "summary": summary(report)}
    paths = {"png": out_dir / PNG_NAME, "md": out_dir / MD_NAME, "json": out_dir / JSON_NAME}
    text = markdown(report)
    body = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    png = io.BytesIO()
    plot(report, png)
    write_atomic(paths["png"], png.getvalue())
    write_atomic(paths["md"], text)
    write_atomic(paths["json"], body)
    return paths
