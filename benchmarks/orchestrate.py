"""One benchmark run from parsed arguments to the report dict: validate inputs first, then measure, then derive."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.backend_bench import BackendPlan, add_derived, resolve_backends, run_backends
from benchmarks.errors import BenchmarkInputError
from benchmarks.http_bench import INPUT_KINDS, HttpPlan, check_service, run_http
from benchmarks.inputs import ModelSet, encode_jpeg, load_images, prepare_models
from benchmarks.machine import library_versions, machine_info
from benchmarks.peak import measure_gemm_peak
from benchmarks.service import local_service
from benchmarks.stats import Budget
from benchmarks.targets import BASELINES, evaluate_targets

log = logging.getLogger("benchmarks")

QUICK_HTTP_REQUESTS = 6


def header(args: argparse.Namespace, budget: Budget, threads: int) -> dict[str, Any]:
    return {
        "schema": 1,
        "complete": False,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks.run", *sys.argv[1:]],
        "mode": args.mode,
        "machine": machine_info(),
        "libraries": library_versions(),
        "settings": {"threads": threads, "budget": asdict(budget), "quick": bool(args.quick)},
        "notes": [],
        "errors": [],
    }


def _model_block(models: ModelSet) -> dict[str, Any]:
    m = models.metadata
    return {
        "path": str(models.path),
        "sha256": models.sha256,
        "version": m.version,
        "architecture": m.architecture,
        "imgsz": m.imgsz[0],
        "precision": m.precision,
        "head": m.head,
        "classes": m.num_classes,
    }


def _http_plan(args: argparse.Namespace, url: str) -> HttpPlan:
    unknown = [k for k in args.inputs if k not in INPUT_KINDS]
    if unknown:
        raise BenchmarkInputError(f"unknown input kind(s) {', '.join(unknown)}; choose from: {', '.join(INPUT_KINDS)}")
    if args.requests < 1 or args.http_seconds <= 0:
        raise BenchmarkInputError("--requests must be >= 1 and --http-seconds > 0")
    return HttpPlan(
        url=url,
        concurrency=args.concurrency,
        inputs=args.inputs,
        requests=min(args.requests, QUICK_HTTP_REQUESTS) if args.quick else args.requests,
        max_seconds=min(args.http_seconds, 3.0) if args.quick else args.http_seconds,
        warmup=1 if args.quick else 3,
    )


def _fastest_backend(cells: list[dict[str, Any]], size: int, fallback: str) -> str:
    batch1 = [c for c in cells if c["size"] == size and c["batch"] == 1 and c.get("end_to_end")]
    ours = [c for c in batch1 if c["runner"] not in BASELINES]
    return min(ours, key=lambda c: c["end_to_end"]["p50_ms"])["runner"] if ours else fallback


def _peak_meter(threads: int, quick: bool, notes: list[str]) -> Callable[[], dict[str, float] | None]:
    def measure() -> dict[str, float] | None:
        try:
            return measure_gemm_peak(threads, n=2048, reps=3 if quick else 8)
        except Exception as exc:  # a peak we cannot measure costs the % column, not the run
            notes.append(f"GEMM peak not measured: {exc}")
            return None

    return measure


def run(args: argparse.Namespace, budget: Budget, threads: int) -> dict[str, Any]:
    """Measure what `args.mode` asks for; raise BenchmarkInputError before measuring anything if inputs are bad."""
    report = header(args, budget, threads)
    images, source = load_images(args.images)
    report["settings"]["images"] = f"{len(images)} ({source})"
    mode = args.mode
    url = getattr(args, "url", None)
    served_info: dict[str, Any] = {}
    if url:  # fail fast: before minutes of backend timing, not after
        served_info = check_service(url)
    models: ModelSet | None = None
    if mode in ("backends", "all"):
        names, skipped = resolve_backends(args.backends)
        weights = args.weights or args.model.parent / "best.pt"
        models = prepare_models(args.model, args.sizes, weights, args.cache_dir)
        report["model"] = _model_block(models)
        for name, why in skipped.items():
            report["notes"].append(f"backend {name} skipped: {why}")
        has_ultralytics = importlib.util.find_spec("ultralytics") is not None
        if not has_ultralytics:
            report["notes"].append("ultralytics is not installed: no baseline, so no speed-up ratios")
        plan = BackendPlan(
            backends=names,
            batches=args.batches,
            threads=threads,
            budget=budget,
            ultralytics_onnx=has_ultralytics,
            ultralytics_pt=has_ultralytics and not args.no_ultralytics_pt,
            precision=args.precision,
        )
        report["settings"].update(
            batches=args.batches, sizes=[v.size for v in models.variants], backends=names, precision=args.precision
        )
        report["variants"] = [{"size": v.size, "path": str(v.path), "origin": v.origin} for v in models.variants]
        measure_peak = _peak_meter(threads, args.quick, report["notes"]) if not args.no_peak else None
        before = measure_peak() if measure_peak else None
        cells = run_backends(models, images, plan, weights if plan.ultralytics_pt else None)
        # Measured before and after the backends, best kept: a peak is what the machine can do when it is least
        # disturbed, and background load comes and goes during a run.
        after = measure_peak() if measure_peak else None
        readings = [r for r in (before, after) if r]
        peak = max((r["gflops"] for r in readings), default=None)
        if readings:
            report["gemm_peak"] = {
                **max(readings, key=lambda r: r["gflops"]),
                "readings": [r["gflops"] for r in readings],
            }
        flops = add_derived(cells, models, peak)
        for v in report["variants"]:
            v["gflops_per_image"] = round(flops.get(v["size"], 0) / 1e9, 4)
        report["backends"] = {"cells": cells, "skipped": skipped}
        report["notes"] += models.notes
        report["errors"] += models.errors
        report["errors"] += [
            f"{c['runner']} {c['size']} px batch {c['batch']}: {c['error']}" for c in cells if c["error"]
        ]
    if mode in ("http", "all"):
        jpegs = [encode_jpeg(img) for img in images]
        report["settings"]["http"] = {
            k: v for k, v in asdict(_http_plan(args, url or "")).items() if k not in ("url", "warmup")
        }
        if url:
            report["http"] = {"url": url, "model": served_info, "cells": run_http(_http_plan(args, url), jpegs)}
        else:
            assert models is not None  # `all` without --url: serve the largest size on the fastest backend
            variant = max(models.variants, key=lambda v: v.size)
            backend = _fastest_backend(report["backends"]["cells"], variant.size, "auto")
            with local_service(Path(variant.path), backend, threads) as local_url:
                info = check_service(local_url)
                cells = run_http(_http_plan(args, local_url), jpegs)
            report["http"] = {"url": local_url, "model": info, "cells": cells, "started_by_benchmark": True}
        report["errors"] += [
            f"HTTP {c['input']} c={c['concurrency']}: {c['error']}" for c in report["http"]["cells"] if c["error"]
        ]
    report["targets"] = evaluate_targets(
        report.get("backends", {}).get("cells", []),
        report.get("http", {}).get("cells", []),
        report.get("http", {}).get("model", {}),
    )
    report["complete"] = not report["errors"]
    return report
