"""Where the pipeline's stages write what later stages and commands read (relative to the project root, as
dvc.yaml names them). Defined once here; dvc.yaml, which cannot import them, spells the same paths."""

from __future__ import annotations

from pathlib import Path

BEST_WEIGHTS = Path("models/best.pt")  # the train stage's best Ultralytics weights; `export onnx` reads them
TRAIN_REPORT = Path("reports/train.json")  # the train stage's final metrics and MLflow run, read by `export onnx`
