"""This machine's single-precision GEMM peak, the yardstick for "% of peak" of each backend.

numpy's BLAS reads its thread count from the environment at import, so the measurement runs in a child process
whose OMP/OpenBLAS/MKL thread variables equal the thread count the backends are given: a fair comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs in the child: best-of-N timing of an n x n float32 matmul (2 n^3 FLOPs). Best, not median: a peak is what
# the hardware can do when nothing else interferes.
_CHILD = """
import json, sys, time
import numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
out = np.empty((n, n), dtype=np.float32)
np.matmul(a, b, out=out)
best = float("inf")
for _ in range(reps):
    t0 = time.perf_counter()
    np.matmul(a, b, out=out)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best}))
"""

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def measure_gemm_peak(threads: int, n: int = 2048, reps: int = 5, timeout_s: float = 120.0) -> dict[str, float]:
    """GFLOP/s of the fastest of `reps` float32 `n x n` matmuls on `threads` threads (plus the setup)."""
    if threads < 1 or n < 1 or reps < 1:
        raise ValueError(f"threads, n and reps must be >= 1, got {threads}, {n}, {reps}")
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(threads))}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), str(reps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"GEMM peak measurement failed: {proc.stderr.strip()[-500:]}")
    seconds = float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
    flops = 2.0 * n**3
    return {"gflops": round(flops / seconds / 1e9, 2), "n": float(n), "threads": float(threads), "reps": float(reps)}
