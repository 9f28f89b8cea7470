"""Where a run stands against the project's latency targets (reported, never asserted: numbers are noisy).

- Overhead: end-to-end minus backend-only time is at most 10% of end-to-end, at 640 px, for our backends.
- HTTP: `/predict` at concurrency 1 with the fastest CPU backend, 640 px, takes at most 0.6x the per-image time of
  Ultralytics' in-process `YOLO("model.onnx").predict` (batch 1).
- Efficiency: the best backend at batch 1 reaches at least 50% of this machine's measured fp32 GEMM peak.
"""

from __future__ import annotations

from typing import Any

from benchmarks.runners import ULTRALYTICS_ONNX, ULTRALYTICS_PT

TARGET_SIZE = 640
MAX_OVERHEAD = 0.10
MAX_HTTP_VS_ULTRALYTICS = 0.6
MIN_PCT_OF_PEAK = 50.0
BASELINES = (ULTRALYTICS_ONNX, ULTRALYTICS_PT)


def _ours(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cells if c["runner"] not in BASELINES and c.get("end_to_end")]


def evaluate_targets(
    backend_cells: list[dict[str, Any]], http_cells: list[dict[str, Any]], http_model: dict[str, Any]
) -> dict[str, Any]:
    """One entry per target: the measured value, the limit, and `met` (None when this run could not measure it)."""
    ours = _ours(backend_cells)
    at_640 = [c for c in ours if c["size"] == TARGET_SIZE and c.get("overhead_fraction") is not None]
    worst = max(at_640, key=lambda c: c["overhead_fraction"], default=None)
    overhead: dict[str, Any] = {
        "limit": MAX_OVERHEAD,
        "value": worst["overhead_fraction"] if worst else None,
        "where": f"{worst['runner']} batch {worst['batch']}" if worst else f"no {TARGET_SIZE} px cells",
    }
    batch1 = [c for c in ours if c["batch"] == 1 and c.get("pct_of_peak") is not None]
    best = max(batch1, key=lambda c: c["pct_of_peak"], default=None)
    peak: dict[str, Any] = {
        "limit": MIN_PCT_OF_PEAK,
        "value": best["pct_of_peak"] if best else None,
        "where": f"{best['runner']} at {best['size']} px" if best else "no batch-1 cells",
    }
    http: dict[str, Any] = {"limit": MAX_HTTP_VS_ULTRALYTICS, "value": None, "where": "no HTTP run"}
    served_size = (http_model.get("input_size") or [None])[0]
    c1 = [c for c in http_cells if c["concurrency"] == 1 and c.get("latency")]
    if c1:
        fastest = min(c1, key=lambda c: c["latency"]["p50_ms"])
        baseline = next(
            (
                c["end_to_end"]["p50_ms"]
                for c in backend_cells
                if c["runner"] == ULTRALYTICS_ONNX and c["size"] == served_size and c["batch"] == 1 and c["end_to_end"]
            ),
            None,
        )
        http["where"] = f"{fastest['input']} at {served_size} px on {http_model.get('backend', '?')}"
        if baseline:
            http["value"] = round(fastest["latency"]["p50_ms"] / baseline, 4)
        else:
            http["where"] += f" (no Ultralytics baseline at {served_size} px in this run)"
        if served_size != TARGET_SIZE:
            http["where"] += f"; the target is stated at {TARGET_SIZE} px"
    overhead["met"] = None if overhead["value"] is None else overhead["value"] <= MAX_OVERHEAD
    peak["met"] = None if peak["value"] is None else peak["value"] >= MIN_PCT_OF_PEAK
    http["met"] = None if http["value"] is None else http["value"] <= MAX_HTTP_VS_ULTRALYTICS
    return {"overhead_at_640": overhead, "http_vs_ultralytics": http, "pct_of_gemm_peak_batch1": peak}
