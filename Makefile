# User entry points. A fresh machine needs only python3 (3.11), pip and make: uv is installed from the registry.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen --no-sync
export YOLO_OFFLINE := 1
export UV_LINK_MODE ?= copy

.PHONY: help uv install-serve install-train install-dev demo pipeline serve test test-fast lint experiments bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"

install-serve: uv  ## serving only: runtime + API + OpenVINO (no torch)
	$(UV) sync --frozen --extra serve --extra openvino

install-train: uv  ## everything the pipeline needs (torch, ultralytics, dvc, mlflow)
	$(UV) sync --frozen --extra serve --extra openvino --extra train

install-dev: uv  ## pipeline + test and lint tools
	$(UV) sync --frozen --extra serve --extra openvino --extra train --extra dev

demo: install-train  ## run the pipeline if no model exists yet, then serve on http://127.0.0.1:8000
	@if [ ! -f models/model.onnx ]; then $(RUN) dvc repro; fi
	$(RUN) detector serve

pipeline: install-train  ## dvc repro: data -> train -> export -> evaluate
	$(RUN) dvc repro

serve: install-serve  ## serve the existing models/model.onnx
	$(RUN) detector serve

test: install-dev  ## the whole test suite (unit, integration, e2e)
	$(RUN) pytest

test-fast: install-dev  ## tests that do not train or start servers
	$(RUN) pytest -m "not slow"

lint: install-dev  ## ruff + mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

experiments: install-train  ## three dvc experiments: architecture, image size, data version
	bash scripts/experiments.sh

bench: install-dev  ## latency of every backend + the HTTP service vs Ultralytics -> reports/benchmark.{json,md,png}
	$(RUN) python -m benchmarks.run all --model models/model.onnx

clean:  ## remove generated data, models, runs (keeps MLflow history)
	rm -rf data models runs reports/*.partial
