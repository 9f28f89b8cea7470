"""Backend mode: every runner x every input size x every batch size, on the same files and images.

A failing cell (a backend that cannot load a variant, an exception mid-loop) is recorded in that cell and the run
goes on; the report is then marked incomplete. Only bad *input* (unknown backend, unloadable model) stops it early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.errors import BenchmarkInputError
from benchmarks.flops import count_flops
from benchmarks.inputs import ModelSet, take
from benchmarks.runners import ULTRALYTICS_ONNX, ULTRALYTICS_PT, DetectorRunner, Images, Runner, UltralyticsRunner
from benchmarks.stats import Budget, overhead_fraction, ratio, summarize
from detector.runtime import backends

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class BackendPlan:
    backends: list[str]
    batches: list[int]
    threads: int
    budget: Budget
    ultralytics_onnx: bool = True
    ultralytics_pt: bool = True


def resolve_backends(requested: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The backends to run and the ones skipped (name -> why). Explicitly requested ones must exist and run here."""
    status = backends.available()
    if requested is None:
        return [n for n, why in status.items() if not why], {n: why for n, why in status.items() if why}
    unknown = [n for n in requested if n not in status]
    if unknown:
        raise BenchmarkInputError(f"unknown backend(s) {', '.join(unknown)}; choose from: {', '.join(status)}")
    unavailable = {n: status[n] for n in requested if status[n]}
    if unavailable:
        raise BenchmarkInputError(
            "backend(s) cannot run here: " + "; ".join(f"{n}: {why}" for n, why in unavailable.items())
        )
    return list(dict.fromkeys(requested)), {}


def _cell(runner: str, size: int, batch: int) -> dict[str, Any]:
    return {"runner": runner, "size": size, "batch": batch, "end_to_end": None, "backend_only": None, "error": None}


def _time_runner(runner: Runner, size: int, images: Images, plan: BackendPlan, cells: list[dict[str, Any]]) -> None:
    for batch in plan.batches:
        cell = _cell(runner.name, size, batch)
        cells.append(cell)
        batch_images = take(images, batch)
        try:
            cell["end_to_end"] = summarize(runner.end_to_end(batch_images, plan.budget), batch)
            # The e2e loop has warmed this batch shape up already.
            cell["backend_only"] = summarize(runner.backend_only(batch_images, _no_warmup(plan.budget)), batch)
        except Exception as exc:  # a backend's own error types vary; the cell records it and the run goes on
            cell["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("%s at %d px, batch %d failed: %s", runner.name, size, batch, cell["error"])


def _no_warmup(budget: Budget) -> Budget:
    return Budget(warmup=0, min_iters=budget.min_iters, max_iters=budget.max_iters, max_seconds=budget.max_seconds)


def _load(name: str, path: Path, size: int, threads: int) -> Runner:
    if name in (ULTRALYTICS_ONNX, ULTRALYTICS_PT):
        return UltralyticsRunner(name, path, size, threads)
    return DetectorRunner(name, path, threads)


def run_backends(models: ModelSet, images: Images, plan: BackendPlan, weights: Path | None) -> list[dict[str, Any]]:
    """Measure every runner on every model variant; return one cell per (runner, size, batch)."""
    cells: list[dict[str, Any]] = []
    for variant in models.variants:
        runners: list[tuple[str, Path]] = [(b, variant.path) for b in plan.backends]
        if plan.ultralytics_onnx:
            runners.append((ULTRALYTICS_ONNX, variant.path))
        if plan.ultralytics_pt and weights is not None and weights.is_file():
            runners.append((ULTRALYTICS_PT, weights))
        for name, path in runners:
            log.info("timing %s at %d px", name, variant.size)
            try:
                runner = _load(name, path, variant.size, plan.threads)
            except Exception as exc:  # load errors: record once per batch so every cell says why it is empty
                for batch in plan.batches:
                    cells.append({**_cell(name, variant.size, batch), "error": f"load: {type(exc).__name__}: {exc}"})
                continue
            try:
                _time_runner(runner, variant.size, images, plan, cells)
            finally:
                runner.close()
    return cells


def add_derived(cells: list[dict[str, Any]], models: ModelSet, peak_gflops: float | None) -> dict[int, int]:
    """Fill each cell's overhead, speed-up vs the Ultralytics ONNX baseline, GFLOP/s and % of GEMM peak.

    Returns FLOPs per image for each size. GFLOP/s uses backend-only time: it rates the inference engine, not our
    pre/post-processing (which `overhead` rates).
    """
    flops_per_image: dict[int, int] = {}
    for variant in models.variants:
        counted = count_flops(variant.path, 1, variant.size, variant.size)
        flops_per_image[variant.size] = int(counted["flops"])
        if counted["uncounted"]:
            models.notes.append(f"{variant.size} px: FLOPs of {len(counted['uncounted'])} nodes unresolved (lower bound)")
    baseline = {
        (c["size"], c["batch"]): c["end_to_end"]["p50_ms"]
        for c in cells
        if c["runner"] == ULTRALYTICS_ONNX and c["end_to_end"]
    }
    for c in cells:
        e2e, backend = c["end_to_end"], c["backend_only"]
        e2e_p50 = e2e["p50_ms"] if e2e else None
        backend_p50 = backend["p50_ms"] if backend else None
        c["overhead_fraction"] = overhead_fraction(e2e_p50, backend_p50)
        c["speedup_vs_ultralytics"] = ratio(baseline.get((c["size"], c["batch"])), e2e_p50)
        flops = flops_per_image.get(c["size"], 0) * c["batch"]
        gflops = round(flops / (backend_p50 * 1e-3) / 1e9, 2) if backend_p50 and flops else None
        c["gflops_per_s"] = gflops
        c["pct_of_peak"] = round(100.0 * gflops / peak_gflops, 1) if gflops and peak_gflops else None
    return flops_per_image
