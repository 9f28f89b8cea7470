"""The active-learning inbox through the real app (real trained model, lifespan run): what /predict keeps is the
image as sent with the model's boxes as pre-labels, a client's class filter does not thin them, other routes keep
nothing, a full inbox never changes an answer; and the folder imports as the next data version (`--base`).
The whole loop with `detector serve` and `dvc exp run` is tests/e2e/test_dvc_import.py."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from detector.data import check_dataset
from detector.data.importers import ImportRequest, import_dataset
from detector.data.yolo_format import read_label_file
from tests.integration.api.conftest import MakeConfig, RunApp


def _images(dataset_dir: Path, n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((dataset_dir / "images" / "test").glob("*"))[:n]]


def _kept(root: Path, n: int, timeout: float = 10) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted((root / "images").glob("*")) if (root / "images").is_dir() else []
        if len(found) >= n:
            return found
        time.sleep(0.02)
    return sorted((root / "images").glob("*")) if (root / "images").is_dir() else []


def test_predict_keeps_what_was_sent_with_the_models_boxes(
    make_config: MakeConfig, run_app: RunApp, dataset_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "inbox"
    band = "inference.inbox.conf_band=[0,1]"  # every image with a box (a known count)
    config = make_config("inference.inbox.enabled=true", f"inference.inbox.dir={root}", band)
    sent = _images(dataset_dir, 5)
    with run_app(config) as client:
        answers = [client.post("/predict", files={"file": data}).json() for data in sent[:4]]
        answers.append(client.post("/predict", json={"image_base64": base64.b64encode(sent[4]).decode()}).json())
        boxed = [i for i, a in enumerate(answers) if a["detections"]]
        assert len(boxed) >= 2, "the test split has objects the model finds"
        # The same image again, filtered to a class it does not show: the client sees no box, the inbox keeps all.
        j = boxed[0]
        names = client.get("/model").json()["names"]
        found = {d["class_name"] for d in answers[j]["detections"]}
        other = next((n for n in names.values() if n not in found), next(iter(names.values())))
        filtered = client.post("/predict", files={"file": sent[j]}, params={"classes": other}).json()
        assert client.post("/predict", files={"file": sent[j]}, params={"classes": "no-such"}).status_code == 422
        assert client.post("/predict/annotated", files={"file": sent[j]}).status_code == 200
        kept = _kept(root, len(boxed) + 1)
        time.sleep(0.2)  # anything wrongly kept from the last two requests would be written by now
        kept = _kept(root, len(boxed) + 1)
        metrics = client.get("/metrics").text
    assert len(kept) == len(boxed) + 1, "each /predict with a box kept once; not a 422 nor /predict/annotated"
    journal = [json.loads(line) for line in (root / "inbox.jsonl").read_text().splitlines()]
    records = {r["image"]: r for r in journal}
    assert {p.read_bytes() for p in kept} == {sent[i] for i in boxed}, "the bytes exactly as sent (and base64)"
    for image in kept:
        i = sent.index(image.read_bytes())
        width, height = Image.open(io.BytesIO(sent[i])).size
        labels, problems = read_label_file(root / "labels" / f"{image.stem}.txt")
        assert not problems
        got = sorted([lb.cls, *lb.xyxy(width, height)] for lb in labels)
        want = sorted([d["class_id"], *d["box"].values()] for d in answers[i]["detections"])
        assert np.allclose(got, want, atol=0.05), (got, want)
        assert records[f"images/{image.name}"]["reasons"] == ["uncertain"]
        assert len(records[f"images/{image.name}"]["boxes"]) == len(answers[i]["detections"])
    assert all(d["class_name"] == other for d in filtered["detections"])
    assert len(filtered["detections"]) < len(answers[j]["detections"])
    assert f'detector_inbox_kept_total{{reason="uncertain"}} {len(boxed) + 1}.0' in metrics

    # Reviewed (here: accepted as they are), the folder becomes the next data version on top of the current one.
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "v1").symlink_to(dataset_dir)
    report = import_dataset(ImportRequest(format="yolo", version="v3", root=data_root, source=root, base="v1"))
    base_images = sum(1 for p in dataset_dir.rglob("*") if p.parent.parent.name == "images" and p.is_file())
    assert report["base"] == {"version": "v1", "images": base_images, "added": len(kept)}
    assert sum(report["counts"].values()) == base_images + len(kept)
    assert report["names"] == json.loads((dataset_dir / "manifest.json").read_text())["names"]
    check_dataset(data_root / "v3")
    for split in ("train", "val", "test"):  # the base's splits are kept, file for file
        base_files = {p.name for p in (dataset_dir / "images" / split).iterdir()}
        assert base_files <= {p.name for p in (data_root / "v3" / "images" / split).iterdir()}


def test_a_full_inbox_changes_no_answer(
    make_config: MakeConfig, run_app: RunApp, dataset_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "inbox"
    overrides = (f"inference.inbox.dir={root}", "inference.inbox.conf_band=[0,1]", "inference.inbox.max_files=1")
    images = _images(dataset_dir, 5)
    with run_app(make_config(*overrides)) as client:
        plain = [client.post("/predict", files={"file": d}).json()["detections"] for d in images]
    boxed = sum(1 for d in plain if d)
    assert boxed >= 2, "the test split has objects the model finds"
    with run_app(make_config("inference.inbox.enabled=true", *overrides)) as client:
        kept = [client.post("/predict", files={"file": d}).json()["detections"] for d in images]
        skipped = f'detector_inbox_skipped_total{{cause="full"}} {boxed - 1}.0'
        deadline = time.monotonic() + 10
        while skipped not in client.get("/metrics").text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert skipped in client.get("/metrics").text
    assert kept == plain
    assert len(_kept(root, 1)) == 1
