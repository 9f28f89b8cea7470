#!/usr/bin/env bash
# Course item 3: at least three DVC experiments that differ in architecture, a hyperparameter and the data version.
# Each runs in a temporary copy of the workspace (--temp), so your models/ and configs/ stay as they are; results
# land in `dvc exp show` and, as MLflow runs, in ./mlflow.db. All use 10 epochs so each takes ~5 min on 2 CPU cores
# and they are comparable with each other (the 20-epoch default pipeline is `dvc repro`).
#
# Usage: scripts/experiments.sh [extra -S overrides applied to every experiment]
set -euo pipefail
cd "$(dirname "$0")/.."

# Experiments run in a temp folder: point MLflow at this checkout's database by absolute path.
export DETECTOR_TRAIN__MLFLOW__TRACKING_URI="${DETECTOR_TRAIN__MLFLOW__TRACKING_URI:-sqlite:///$PWD/mlflow.db}"
export YOLO_OFFLINE=1
read -r -a DVC <<<"${DVC:-dvc}"
COMMON=(-S "configs/train.yaml:train.epochs=10" "$@")

run() {
  local name=$1
  shift
  echo "=== experiment $name: $*"
  "${DVC[@]}" exp run --temp --force -n "$name" "${COMMON[@]}" "$@"
}

run e10-yolov8n-v1-256                                            # reference for this set
run e10-yolo11n-v1-256  -S "configs/train.yaml:train.model=yolo11n.yaml"   # architecture
run e10-yolo26n-v1-256  -S "configs/train.yaml:train.model=yolo26n.yaml"   # architecture (NMS-free head)
run e10-yolov8n-v1-192  -S "configs/train.yaml:train.imgsz=192"            # hyperparameter: input size
run e10-yolov8n-v2-256  -S "configs/data.yaml:data.version=v2"             # data version

# All commits (-A): experiments started from earlier commits are listed too.
"${DVC[@]}" exp show --json -A | python scripts/experiments_table.py --only-named e10- | tee reports/experiments.md
