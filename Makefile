# User entry points. A fresh machine needs only python3 (3.11), pip and make: uv is installed from the registry.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH when installed; otherwise the copy `make uv` installs into this Python.
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen --no-sync
export YOLO_OFFLINE := 1
export UV_LINK_MODE ?= copy
# Material for MkDocs prints a notice about MkDocs 2 on every build; the docs build is part of `make lint`.
export NO_MKDOCS_2_WARNING := 1
IMAGE_CPU ?= yolo-detector:cpu
IMAGE_GPU ?= yolo-detector:gpu

.PHONY: help uv install-serve install-train install-ray install-dev demo pipeline serve serve-ray test test-fast lint experiments \
	bench quantize int8-640 bench-peers docker-cpu docker-gpu deploy docs docs-media cards clean

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"

# --inexact: add what a target needs and remove nothing, so `make demo`, `make test` and `make experiments` in any
# order never uninstall what another target installed.
SYNC := $(UV) sync --frozen --inexact

install-serve: uv  ## serving only: runtime + API + OpenVINO (no torch)
	$(SYNC) --extra serve --extra openvino

install-train: uv  ## everything the pipeline needs (torch, ultralytics, dvc, mlflow)
	$(SYNC) --extra serve --extra openvino --extra train

install-ray: uv  ## serving on Ray Serve (replicas, autoscaling): serve + ray
	$(SYNC) --extra serve --extra openvino --extra ray

install-dev: uv  ## pipeline + UI + Ray + test and lint tools
	$(SYNC) --extra serve --extra openvino --extra train --extra ui --extra ray --extra dev

demo: install-train  ## run the pipeline if no model exists yet, then serve on http://127.0.0.1:8000
	@if [ ! -f models/model.onnx ]; then $(RUN) dvc repro; fi
	$(RUN) detector serve

pipeline: install-train  ## dvc repro: data -> train -> export -> evaluate
	$(RUN) dvc repro

serve: install-serve  ## serve the existing models/model.onnx
	$(RUN) detector serve

REPLICAS ?= 2
serve-ray: install-ray  ## the same service on a local Ray Serve cluster with $(REPLICAS) replicas
	$(RUN) detector serve --engine ray --replicas $(REPLICAS)

# Two pytest-xdist workers, each taking a whole test file at a time (a module's fixtures are built once), sharing the
# trained test model (tests/conftest.py says how): on a 2-core VM the suite took 690-950 s against 1366 s in one
# process, which kept one core busy (its tests wait on servers, cameras and deadlines as much as they compute).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install-dev  ## the whole test suite (unit, integration, e2e)
	$(RUN) pytest $(PYTEST_PARALLEL)

test-fast: install-dev  ## tests that train nothing and start no server (tests needing the trained model are `slow`)
	$(RUN) pytest $(PYTEST_PARALLEL) -m "not slow"

lint: install-dev  ## ruff, mypy, the import contracts (import-linter) and the docs site (mkdocs build --strict)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports
	$(RUN) mkdocs build --strict

docs: install-dev  ## the documentation site on http://127.0.0.1:8010, rebuilt on save (mkdocs serve)
	$(RUN) mkdocs serve

experiments: install-train  ## the dvc experiments of configs/experiments.yaml: architecture x3, input size, data version
	$(RUN) python scripts/experiments.py

bench: install-dev  ## latency of every backend + the HTTP service vs Ultralytics -> reports/benchmark.{json,md,png}
	$(RUN) python -m benchmarks.run all --model models/model.onnx

quantize: install-train  ## INT8 Q/DQ ONNX (NNCF) of models/model.onnx, gated on val mAP -> models/model.int8.onnx
	$(RUN) detector export int8

int8-640: install-train  ## the INT8 gate on a 640 px model: fine-tune models/best.pt at 640 px, quantize (~35 min) -> reports/int8_640.*
	$(RUN) bash scripts/int8_640.sh

bench-peers: install-dev  ## ours vs Ultralytics (OpenVINO FP32/INT8, HTTP c=1..16), SAHI (tiles), track (video), a live camera -> reports/{peers,tiles,video,live}.*
	$(RUN) python -m benchmarks.peers --model models/model.onnx
	$(RUN) python -m benchmarks.tiles --model models/model.onnx --int8 --openvino --out reports/tiles.json
	$(RUN) python -m benchmarks.video --model models/model.onnx
	$(RUN) python -m benchmarks.live --model models/model.onnx --sizes 256,640

docker-cpu:  ## build + run the CPU image (OpenVINO/ONNX Runtime) on http://127.0.0.1:8000, models/ mounted
	docker build -t $(IMAGE_CPU) -f Dockerfile .
	docker run --rm -p 8000:8000 -v "$(CURDIR)/models:/app/models:ro" $(IMAGE_CPU)

docker-gpu:  ## build + run the GPU image: TensorRT engine built on first start, cached in the trt-engines volume
	docker build -t $(IMAGE_GPU) -f Dockerfile.gpu .
	docker run --rm --gpus all -p 8000:8000 -v "$(CURDIR)/models:/app/models:ro" -v trt-engines:/app/engines $(IMAGE_GPU)

deploy:  ## redeploy IMAGE=... with a health check and automatic rollback
	bash scripts/deploy.sh $(IMAGE)

docs-media:  ## screenshots (MLflow, Swagger, a prediction) + docs/demo.mp4 from the running apps
	bash scripts/make_docs_media.sh

cards:  ## fill MODEL_CARD.md / DATASET_CARD.md tables from reports/, mlflow.db and the data manifests
	$(RUN) python scripts/render_cards.py

clean:  ## remove datasets, models, runs (keeps MLflow history and the git-tracked data/*.dvc pointers)
	rm -rf data/*/ models runs reports/*.partial
