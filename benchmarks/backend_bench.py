"""Backend mode: every runner x every input size x every batch size, on the same files and images.

A failing cell (a backend that cannot load a variant, an exception mid-loop) is recorded in that cell and the run
goes on; the report is then marked incomplete. Only bad *input* (unknown backend, unloadable model) stops it early.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import BenchmarkInputError
from benchmarks.flops import count_flops
from benchmarks.inputs import ModelSet, take
from benchmarks.runners import (
    ULTRALYTICS_ONNX,
    ULTRALYTICS_PT,
    Calls,
    DetectorRunner,
    Images,
    Runner,
    UltralyticsRunner,
)
from benchmarks.stats import Budget, overhead_fraction, ratio, summarize
from detector.runtime import backends

log = logging.getLogger("benchmarks")


@dataclass
class Samples:
    """Milliseconds per timed call of one runner in one cell."""

    end_to_end: list[float] = field(default_factory=list)
    inference_in_call: list[float] = field(default_factory=list)  # inference time inside each e2e call
    backend_only: list[float] = field(default_factory=list)  # the separate bare backend call


@dataclass(frozen=True)
class BackendPlan:
    backends: list[str]
    batches: list[int]
    threads: int
    budget: Budget
    ultralytics_onnx: bool = True
    ultralytics_pt: bool = True
    precision: str = "fp32"  # TensorRT engines only; the CPU backends compute in fp32


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
    return {
        "runner": runner,
        "size": size,
        "batch": batch,
        "end_to_end": None,
        "backend_only": None,
        "overhead_fraction": None,
        "error": None,
    }


def _load(name: str, path: Path, size: int, plan: BackendPlan) -> Runner:
    if name in (ULTRALYTICS_ONNX, ULTRALYTICS_PT):
        return UltralyticsRunner(name, path, size, plan.threads)
    return DetectorRunner(name, path, plan.threads, plan.precision)


def interleave(calls: dict[str, Calls], budget: Budget) -> tuple[dict[str, Samples], dict[str, str]]:
    """Time every runner's calls round-robin: a turn of `budget.block` calls each per round, order rotating.

    On a shared machine the load drifts over seconds; timing runners in turn exposes them all to the same drift,
    which keeps their ratios honest where back-to-back loops would not. A runner that raises is dropped (its error
    is returned) and the others go on. Stops after `max_iters` rounds, or once `min_iters` rounds are done and
    `max_seconds` per runner have passed. Warm-up rounds skip the backend-only call: e2e warms the same session.
    """
    samples: dict[str, Samples] = {name: Samples() for name in calls}
    errors: dict[str, str] = {}
    names = list(calls)

    def one(name: str, record: bool) -> None:
        t0 = time.perf_counter()
        inner = calls[name].end_to_end()
        elapsed = (time.perf_counter() - t0) * 1e3
        if not record:
            return
        got = samples[name]
        got.end_to_end.append(elapsed)
        got.inference_in_call.append(inner)
        backend = calls[name].backend_only
        if backend is None:
            got.backend_only.append(inner)
        else:
            t1 = time.perf_counter()
            backend()
            got.backend_only.append((time.perf_counter() - t1) * 1e3)

    def step(record: bool, offset: int) -> None:
        for name in names[offset % len(names) :] + names[: offset % len(names)]:
            if name in errors:
                continue
            try:
                if budget.settle:
                    one(name, record=False)
                for _ in range(budget.block):
                    one(name, record)
            except Exception as exc:  # a backend's own error types vary; the cell records it
                errors[name] = f"{type(exc).__name__}: {exc}"

    for i in range(budget.warmup):
        step(record=False, offset=i)
    start = time.perf_counter()
    rounds = 0
    while rounds * budget.block < budget.max_iters and len(errors) < len(names):
        step(record=True, offset=rounds)
        rounds += 1
        done = rounds * budget.block
        if done >= budget.min_iters and time.perf_counter() - start >= budget.max_seconds * len(names):
            break
    return samples, errors


def in_call_overhead(samples: Samples) -> float | None:
    """Median over calls of (wall - inference inside that call) / wall: pre/post-processing's share of e2e.

    Both terms come from the same call, so background load drifting between calls cancels out; the difference
    of medians of two separate loops (also reported) is far noisier on a shared machine.
    """
    shares = [(w - i) / w for w, i in zip(samples.end_to_end, samples.inference_in_call, strict=True) if w > 0]
    return round(max(0.0, float(np.median(shares))), 4) if shares else None


def run_backends(models: ModelSet, images: Images, plan: BackendPlan, weights: Path | None) -> list[dict[str, Any]]:
    """Measure every runner on every model variant; return one cell per (runner, size, batch)."""
    cells: list[dict[str, Any]] = []
    for variant in models.variants:
        wanted: list[tuple[str, Path]] = [(b, variant.path) for b in plan.backends]
        if plan.ultralytics_onnx:
            wanted.append((ULTRALYTICS_ONNX, variant.path))
        if plan.ultralytics_pt and weights is not None and weights.is_file():
            wanted.append((ULTRALYTICS_PT, weights))
        runners: list[Runner] = []
        load_errors: dict[str, str] = {}
        for name, path in wanted:
            try:
                runners.append(_load(name, path, variant.size, plan))
            except Exception as exc:  # load errors: every cell of this runner says why it is empty
                load_errors[name] = f"load: {type(exc).__name__}: {exc}"
        try:
            for batch in plan.batches:
                log.info("timing %s at %d px, batch %d", ", ".join(r.name for r in runners), variant.size, batch)
                batch_images = take(images, batch)
                calls: dict[str, Calls] = {}
                errors = dict(load_errors)
                for runner in runners:
                    try:
                        calls[runner.name] = runner.prepare(batch_images)
                    except Exception as exc:
                        errors[runner.name] = f"{type(exc).__name__}: {exc}"
                samples, run_errors = interleave(calls, plan.budget) if calls else ({}, {})
                errors.update(run_errors)
                for name, _ in wanted:
                    cell = _cell(name, variant.size, batch)
                    got = samples.get(name, Samples())
                    if name in errors:
                        cell["error"] = errors[name]
                        log.warning("%s at %d px, batch %d failed: %s", name, variant.size, batch, cell["error"])
                    else:
                        cell["end_to_end"] = summarize(got.end_to_end, batch)
                        cell["backend_only"] = summarize(got.backend_only, batch)
                        cell["inference_in_call_p50_ms"] = round(float(np.median(got.inference_in_call)), 4)
                        cell["overhead_fraction"] = in_call_overhead(got)
                    cells.append(cell)
        finally:
            for runner in runners:
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
            models.notes.append(
                f"{variant.size} px: FLOPs of {len(counted['uncounted'])} nodes unresolved (lower bound)"
            )
    baseline = {
        (c["size"], c["batch"]): c["end_to_end"]["p50_ms"]
        for c in cells
        if c["runner"] == ULTRALYTICS_ONNX and c["end_to_end"]
    }
    for c in cells:
        e2e, backend = c["end_to_end"], c["backend_only"]
        e2e_p50 = e2e["p50_ms"] if e2e else None
        backend_p50 = backend["p50_ms"] if backend else None
        # The in-call figure (set while timing) is the headline; this one is kept for comparison.
        c["overhead_fraction_separate_loops"] = overhead_fraction(e2e_p50, backend_p50)
        c["speedup_vs_ultralytics"] = ratio(baseline.get((c["size"], c["batch"])), e2e_p50)
        flops = flops_per_image.get(c["size"], 0) * c["batch"]
        gflops = round(flops / (backend_p50 * 1e-3) / 1e9, 2) if backend_p50 and flops else None
        c["gflops_per_s"] = gflops
        c["pct_of_peak"] = round(100.0 * gflops / peak_gflops, 1) if gflops and peak_gflops else None
    return flops_per_image
