"""`detector data import` as users run it: JSON on success, one clear line and exit code 2 on bad input; the data
stage (`detector data generate`, what `dvc exp run -S data.version=NAME` runs) leaves an imported version alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli.main import main
from cli.stages import stage_data
from detector.config import load_config
from detector.data import VERSIONS, dataset_hash
from detector.errors import DatasetError
from tests.conftest import REPO
from tests.unit.detector.data.importers.exporters import export_coco, export_voc


def run(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["--config-dir", str(REPO / "configs"), *argv, f"data.root={root}"])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def coco(v1: Path, tmp_path: Path) -> list[str]:
    files = export_coco(v1, tmp_path / "coco")
    return ["--format", "coco", "--images", str(v1 / "images"), *[f"--annotations={f}" for f in files.values()]]


def test_import_validate_force(
    coco: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    rc, out, _ = run(["data", "import", *coco, "--version", "mine"], root, capsys)
    assert rc == 0
    report = json.loads(out)
    assert report["dataset"] == str(root / "mine") and report["counts"] == {"train": 20, "val": 8, "test": 4}
    rc, out, _ = run(["data", "validate", "--path", str(root / "mine")], root, capsys)
    assert rc == 0 and "OK (3 classes: circle, square, triangle)" in out

    rc, _, err = run(["data", "import", *coco, "--version", "mine", "--classes", "square"], root, capsys)
    assert rc == 2 and err.strip() == f"error: {root / 'mine'} already exists; pass --force to replace it"
    rc, out, _ = run(["data", "import", *coco, "--version", "mine", "--classes", "square", "--force"], root, capsys)
    assert rc == 0 and json.loads(out)["names"] == {"0": "square"}
    assert "class 'circle' not selected" in caplog.text  # the drop report is logged (stderr), beside the JSON
    assert sorted(p.name for p in root.iterdir()) == ["mine"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "yolo", "--source", "{tmp}/nowhere"], "--source {tmp}/nowhere: folder not found"),
        (["--format", "voc", "--images", "{tmp}"], "--format voc needs one --annotations DIR"),
        (["--format", "coco", "--images", "{tmp}"], "--annotations FILE.json is required for --format coco"),
        (["--format", "yolo", "--source", "{tmp}", "--images", "{tmp}"], "--images is not used by --format yolo"),
        (["--format", "yolo", "--source", "{tmp}", "--val-fraction", "1.5"], "--val-fraction must be in (0, 1)"),
        (["--format", "coco", "--annotations", "{tmp}/empty.json"], "the coco source has no images"),
        (["--format", "coco", "--annotations", "{tmp}/empty.json", "--voc-origin", "0"], "--voc-origin is not used"),
        (["--format", "coco", "--annotations", "{tmp}/empty.json", "--version", "v1"], "is a generator version"),
        (["--format", "coco", "--annotations", "{tmp}/empty.json", "--version", ".hidden"], "--version '.hidden'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "categories": [{"id": 1, "name": "a"}]}))
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--version" not in argv:
        argv += ["--version", "mine"]
    rc, out, err = run(["data", "import", *argv], tmp_path / "data", capsys)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(tmp=tmp_path) in err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_voc_origin_flag(v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    voc = export_voc(v1, tmp_path / "VOC")
    args = ["data", "import", "--format", "voc", "--images", str(voc / "JPEGImages"), "--annotations"]
    args.append(str(voc / "Annotations"))
    rc, out, _ = run([*args, "--version", "a"], tmp_path / "data", capsys)
    assert rc == 0 and json.loads(out)["voc_origin"] == 1  # the devkit's convention by default
    rc, out, _ = run([*args, "--version", "b", "--voc-origin", "0"], tmp_path / "data", capsys)
    assert rc == 0 and json.loads(out)["voc_origin"] == 0


def test_wrong_format_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", "--format", "labelme", "--source", str(tmp_path), "--version", "x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'labelme'" in capsys.readouterr().err


def test_data_stage_keeps_an_imported_version(
    coco: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    assert run(["data", "import", *coco, "--version", "mine"], root, capsys)[0] == 0
    before = dataset_hash(root / "mine")
    manifest = (root / "mine" / "manifest.json").read_bytes()
    config = load_config([f"data.root={root}", "data.version=mine"], config_dir=REPO / "configs")
    summary = stage_data(config)
    assert summary["imported_from"] == "coco" and summary["sha256"] == before
    assert dataset_hash(root / "mine") == before and (root / "mine" / "manifest.json").read_bytes() == manifest
    # Edited after the import: the stage refuses rather than track a dataset that is not what was imported.
    label = root / "mine" / "labels" / "train" / "img_00000.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="changed since it was imported"):
        stage_data(config)
    shutil.rmtree(root / "mine")
    with pytest.raises(DatasetError, match=r"not a generator version \(v1, v2, small\).*dvc pull"):
        stage_data(config)


def test_dvc_yaml_tracks_every_generator_version_and_no_other() -> None:
    """data@<version> for each generator version; train/evaluate read data/${data.version}, which for an imported
    version is its own data/<name>.dvc (a stage output at that path would overlap it)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["data"]["foreach"] == list(VERSIONS)
    assert stages["data"]["do"]["outs"] == ["data/${item}"]
    assert "data.version=${item}" in stages["data"]["do"]["cmd"]
    assert "data/${data.version}" in stages["train"]["deps"] and "data/${data.version}" in stages["evaluate"]["deps"]
