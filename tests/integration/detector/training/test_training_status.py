"""A training run that crashes ends FAILED in MLflow (KILLED on Ctrl-C), never FINISHED: real Ultralytics, real
MLflow SQLite store, a tiny generated dataset. Nothing trains: each run stops before the first epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ultralytics")
mlflow = pytest.importorskip("mlflow")

from detector.config import Config, load_config  # noqa: E402
from detector.data import generate_dataset  # noqa: E402
from detector.paths import BEST_WEIGHTS, TRAIN_REPORT  # noqa: E402
from detector.training.train import train  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[4] / "configs"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny dataset and one MLflow store for the module (creating a SQLite store costs seconds)."""
    root = tmp_path_factory.mktemp("train-status")
    generate_dataset(base_config(root, "setup").data)
    return root


def base_config(root: Path, experiment: str, *extra: str) -> Config:
    overrides = [
        f"data.root={root / 'data'}",
        "data.imgsz=64",
        "data.splits.train=4",
        "data.splits.val=2",
        "data.splits.test=0",
        "train.imgsz=64",
        "train.epochs=1",
        "train.workers=0",
        f"train.project={root / 'runs'}",
        f"train.mlflow.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        f"train.mlflow.experiment={experiment}",
        *extra,
    ]
    return load_config(overrides, config_dir=CONFIGS, environ={})


@pytest.fixture
def config(workdir: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(workdir)  # the stage outputs (models/, reports/) are relative paths
    return base_config(workdir, request.node.name)


def only_run(cfg: Config) -> Any:
    client = mlflow.MlflowClient(tracking_uri=cfg.train.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.train.mlflow.experiment)
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def test_an_argument_ultralytics_rejects_fails_the_run(config: Config) -> None:
    cfg = config.model_copy(
        update={"train": config.train.model_copy(update={"ultralytics": {"not_an_ultralytics_argument": 1}})}
    )
    with pytest.raises(SyntaxError, match="not_an_ultralytics_argument"):  # Ultralytics' own error
        train(cfg)
    run = only_run(cfg)
    assert run.info.status == "FAILED"
    assert "not_an_ultralytics_argument" in run.data.tags["error"]
    assert not BEST_WEIGHTS.exists() and not TRAIN_REPORT.exists()  # no stage output claims a model


def test_a_crash_inside_training_fails_the_run(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from ultralytics.engine.trainer import BaseTrainer

    def out_of_memory(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(BaseTrainer, "_do_train", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(config)
    run = only_run(config)
    assert run.info.status == "FAILED" and "out of memory" in run.data.tags["error"]


def test_an_interrupted_run_is_killed(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from ultralytics.engine.trainer import BaseTrainer

    def interrupted(self: Any, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseTrainer, "_do_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert only_run(config).info.status == "KILLED"


@pytest.mark.parametrize("spec", ["yolov99n.yaml", "missing/weights.pt"])
def test_an_architecture_ultralytics_cannot_build_is_a_config_error_before_any_run(
    workdir: Path, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detector.errors import ConfigError

    monkeypatch.chdir(workdir)
    cfg = base_config(workdir, f"bad-arch-{Path(spec).stem}", f"train.model={spec}")
    with pytest.raises(ConfigError, match=rf"train\.model={spec}.*(yolov8n\.yaml|\.pt)"):
        train(cfg)
    client = mlflow.MlflowClient(tracking_uri=cfg.train.mlflow.tracking_uri)
    assert client.get_experiment_by_name(cfg.train.mlflow.experiment) is None  # no run, not even a FAILED one
    assert not BEST_WEIGHTS.exists() and not TRAIN_REPORT.exists()
