"""Latency benchmarks: every runtime backend, the HTTP service and Ultralytics' own predictor, side by side.

Run `python -m benchmarks.run --help`. Results go to reports/benchmark.{json,md,png}; see benchmarks/README.md.
"""
