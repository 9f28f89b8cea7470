"""Configuration: the shipped files load; unknown keys, wrong types and out-of-range values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import REPO_CONFIG_KEYS, Config, config_to_flat_dict, load_config
from detector.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_shipped_configs_load_and_match_the_schema_defaults() -> None:
    config = load_config(config_dir=REPO_CONFIGS, environ={})
    assert config.data.version == "v1" and config.inference.backend == "auto"
    # Every section file spells out every key, so users see the full reference in configs/.
    assert set(config_to_flat_dict(config)) == set(REPO_CONFIG_KEYS)


def test_sections_are_independent_files() -> None:
    for section in ("data", "train", "export", "inference"):
        assert (REPO_CONFIGS / f"{section}.yaml").read_text().startswith("#")


def test_dotlist_overrides() -> None:
    config = load_config(["train.epochs=5", "inference.server.port=9001"], config_dir=REPO_CONFIGS, environ={})
    assert config.train.epochs == 5 and config.inference.server.port == 9001


def test_environment_overrides_then_dotlist_wins() -> None:
    env = {"DETECTOR_INFERENCE__BACKEND": "openvino", "DETECTOR_INFERENCE__SERVER__PORT": "9100", "OTHER": "x"}
    config = load_config(config_dir=REPO_CONFIGS, environ=env)
    assert config.inference.backend == "openvino" and config.inference.server.port == 9100
    config = load_config(["inference.server.port=9200"], config_dir=REPO_CONFIGS, environ=env)
    assert config.inference.server.port == 9200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochz=3"], "train.epochz: unknown key"),
        (["train.epochs=abc"], "train.epochs: Input should be a valid integer"),
        (["train.epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
        (["inference.conf=1.5"], "inference.conf: Input should be less than or equal to 1"),
        (["inference.backend=tflite"], "inference.backend"),
        (["train.threads=0"], "train.threads: Value error, give auto or a number of threads from 1 to 1024"),
        (["train.threads=many"], "train.threads: Value error, give auto or a number of threads from 1 to 1024"),
        (["inference.server.port=70000"], "inference.server.port"),
        (["export.engine.min_batch=16"], "min_batch <= opt_batch <= max_batch"),
        (["export.engine.input_dtype=int8"], "export.engine.input_dtype"),
        (["data.version=../etc"], "data.version: String should match pattern"),
        (["nonsense.key=1"], "nonsense: unknown key"),
        (["train.epochs"], "must look like section.key=value"),
    ],
)
def test_rejections_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides, config_dir=REPO_CONFIGS, environ={})
    assert message in str(info.value)


def test_engine_input_dtype_defaults_to_float32_and_reaches_the_engine_spec() -> None:
    from detector.runtime import BackendOptions

    assert load_config(config_dir=REPO_CONFIGS, environ={}).export.engine.input_dtype == "float32"
    config = load_config(["export.engine.input_dtype=uint8"], config_dir=REPO_CONFIGS, environ={})
    assert BackendOptions.from_config(config).engine.input_dtype == "uint8"


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"train\.yaml: cannot parse YAML"):
        load_config(config_dir=tmp_path, environ={})


def test_non_mapping_yaml(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(config_dir=tmp_path, environ={})


def test_missing_config_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config directory not found"):
        load_config(config_dir=tmp_path / "missing", environ={})


def test_defaults_without_files_equal_schema_defaults(tmp_path: Path) -> None:
    assert load_config(config_dir=tmp_path, environ={}) == Config()


def test_environment_values_stay_strings_where_the_schema_says_str() -> None:
    """An all-digit API key is a str; OmegaConf's dotlist parsing made it an int, which failed validation."""
    env = {"DETECTOR_INFERENCE__SERVER__ADMIN_API_KEY": "12345678", "DETECTOR_DATA__VERSION": "2024"}
    config = load_config(config_dir=REPO_CONFIGS, environ=env)
    assert config.inference.server.admin_api_key == "12345678"
    assert config.data.version == "2024"


def test_environment_values_are_converted_where_the_schema_is_typed() -> None:
    env = {
        "DETECTOR_INFERENCE__CONF": "0.4",
        "DETECTOR_TRAIN__MLFLOW__ENABLED": "false",
        "DETECTOR_EXPORT__IMGSZ": "320",
        "DETECTOR_TRAIN__ULTRALYTICS__FLIPLR": "0.25",  # untyped pass-through: parsed as a YAML scalar
        "detector_inference__threads": "3",  # names are case-insensitive
        "DETECTOR_TRAIN__THREADS": "2",  # an int where the schema takes an int or "auto"
    }
    config = load_config(config_dir=REPO_CONFIGS, environ=env)
    assert config.inference.conf == 0.4 and config.train.mlflow.enabled is False
    assert config.export.imgsz == 320 and config.onnx_imgsz == 320
    assert config.train.ultralytics == {"fliplr": 0.25}
    assert config.inference.threads == 3 and config.train.threads == 2
    assert load_config(config_dir=REPO_CONFIGS, environ={"DETECTOR_TRAIN__THREADS": "auto"}).train.threads == "auto"
    assert load_config(config_dir=REPO_CONFIGS, environ={"DETECTOR_EXPORT__IMGSZ": "null"}).export.imgsz is None


def test_environment_mapping_as_json_and_other_variables_ignored() -> None:
    env = {"DETECTOR_TRAIN__ULTRALYTICS": '{"mosaic": 0.0, "close_mosaic": 2}', "DETECTOR_TEST_CACHE": "/x"}
    assert load_config(config_dir=REPO_CONFIGS, environ=env).train.ultralytics == {"mosaic": 0.0, "close_mosaic": 2}


def test_precedence_yaml_then_environment_then_dotlist(tmp_path: Path) -> None:
    (tmp_path / "inference.yaml").write_text("inference:\n  server:\n    admin_api_key: from-yaml\n    port: 8100\n")
    env = {"DETECTOR_INFERENCE__SERVER__ADMIN_API_KEY": "00042"}
    config = load_config(config_dir=tmp_path, environ=env)
    assert config.inference.server.admin_api_key == "00042" and config.inference.server.port == 8100
    config = load_config(["inference.server.admin_api_key=from-cli"], config_dir=tmp_path, environ=env)
    assert config.inference.server.admin_api_key == "from-cli"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETECTOR_INFERENCE__SERVER__PORTT": "1"}, "inference.server.portt: unknown key"),
        ({"DETECTOR_INFERENCE__SERVER__PORT": "abc"}, "inference.server.port: Input should be a valid integer"),
        ({"DETECTOR_TRAIN__EPOCHS": "0"}, "train.epochs: Input should be greater than or equal to 1"),
        ({"DETECTOR_TRAIN__ULTRALYTICS": "{not json"}, 'field "train"'),
    ],
)
def test_environment_rejections_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir=REPO_CONFIGS, environ=env)
    assert message in str(info.value)
