"""serve_ray without a Ray cluster: the shipped Serve config, the options derived from it, and the pieces each
replica adds around the app (start-up held until the model is loaded, check_health = /health, the replica header).
The real cluster is exercised in tests/e2e/test_ray_serve.py."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("ray", reason="the `ray` extra is not installed (make install-ray)")

from pydantic import ValidationError
from ray.serve import Application

from api.app import create_app
from detector.config import load_config
from detector.errors import ModelLoadError
from serve_ray.app import AppArgs, build_app, request_bounds
from serve_ray.deployment import REPLICA_HEADER, DetectorDeployment, ReplicaIdMiddleware, _ready_lifespan
from serve_ray.runner import deployment_options, load_serve_config
from serve_ray.shadow_metrics import ShadowMetricsMirror
from tests.fakes import FakeDetector

REPO = Path(__file__).resolve().parents[3]
SERVE_CONFIG = REPO / "deploy/ray/serve_config.yaml"


def test_the_shipped_serve_config_is_valid_and_its_import_path_builds_the_app() -> None:
    schema = load_serve_config(SERVE_CONFIG)
    app = schema.applications[0]
    module, attr = app.import_path.split(":")
    assert getattr(importlib.import_module(module), attr) is build_app
    built = build_app({**app.args, "config_dir": str(REPO / "configs")})  # Ray calls it with the file's args
    assert isinstance(built, Application)


def test_deployment_options_follow_the_file_and_replicas_fix_the_count() -> None:
    schema = load_serve_config(SERVE_CONFIG)
    auto = deployment_options(schema, replicas=None)
    assert auto["autoscaling_config"]["max_replicas"] > auto["autoscaling_config"]["min_replicas"]
    assert auto["ray_actor_options"]["num_cpus"] == 1 and auto["health_check_period_s"] > 0
    fixed = deployment_options(schema, replicas=3)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert "name" not in fixed  # an option of the file, not of Deployment.options()


def test_ray_admits_more_than_the_app_so_the_app_answers_overload() -> None:
    overrides = ["inference.server.queue_size=10", "inference.server.max_batch=4"]
    config = load_config(overrides, config_dir=REPO / "configs")
    bounds = request_bounds(config)
    assert bounds["max_ongoing_requests"] > 10 + 4 * config.inference.server.workers
    assert 0 < bounds["max_queued_requests"] < 1000  # bounded in front of the replicas too


def test_app_args_reject_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="model_pth"):
        AppArgs.model_validate({"model_pth": "x.onnx"})


def test_start_up_waits_for_the_model_and_then_serves() -> None:
    loaded = threading.Event()

    def slow(path: str, backend: str) -> FakeDetector:
        time.sleep(0.3)
        loaded.set()
        return FakeDetector("tiny")

    app = create_app(load_config(config_dir=REPO / "configs"), detector_factory=slow)
    _ready_lifespan(app)
    started = time.perf_counter()
    with TestClient(app) as client:  # runs the lifespan's start-up, as Ray's replica does
        assert loaded.is_set() and time.perf_counter() - started >= 0.3
        assert client.get("/health").status_code == 200  # no "loading" phase is ever visible to traffic


def test_a_failed_load_fails_the_replica_start() -> None:
    def broken(path: str, backend: str) -> FakeDetector:
        raise ModelLoadError("cannot load broken.onnx")

    app = create_app(load_config(config_dir=REPO / "configs"), detector_factory=broken)
    _ready_lifespan(app)
    with pytest.raises(ModelLoadError, match=r"broken\.onnx"), TestClient(app):
        pass


def test_check_health_is_the_apps_health() -> None:
    app = create_app(load_config(config_dir=REPO / "configs"), detector_factory=lambda p, b: FakeDetector("tiny"))
    _ready_lifespan(app)
    # With the shadow mirror a replica has (here on Ray's real metric classes, outside a replica).
    replica = SimpleNamespace(fastapi=app, shadow_metrics=ShadowMetricsMirror(app.state.metrics.registry))
    check_health = DetectorDeployment.func_or_class.check_health
    with TestClient(app):
        asyncio.run(check_health(replica))  # ok: no exception
        app.state.service.status = "failed"
        app.state.service.error = "the model file vanished"
        with pytest.raises(RuntimeError, match=r"503.*vanished"):
            asyncio.run(check_health(replica))
        app.state.service.status = "ok"


def test_every_response_names_its_replica() -> None:
    app = create_app(load_config(config_dir=REPO / "configs"), detector_factory=lambda p, b: FakeDetector("tiny"))
    app.add_middleware(ReplicaIdMiddleware, replica_id="r-123")
    with TestClient(app) as client:
        assert client.get("/health").headers[REPLICA_HEADER] == "r-123"
        assert client.get("/no-such-route").headers[REPLICA_HEADER] == "r-123"


def test_the_kuberay_manifest_embeds_a_valid_serve_config_with_gpu_replicas() -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    manifest = yaml.safe_load((REPO / "deploy/kuberay/rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (app,) = serve_config.applications
    assert app.import_path == load_serve_config(SERVE_CONFIG).applications[0].import_path
    assert app.deployments[0].ray_actor_options.num_gpus == 1
    workers = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert all(
        c["resources"]["limits"]["nvidia.com/gpu"] >= 1 for w in workers for c in w["template"]["spec"]["containers"]
    )
