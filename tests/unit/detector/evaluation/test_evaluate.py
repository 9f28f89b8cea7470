"""`evaluate_split` end to end through a real `Detector` (letterbox, raw-head decoding, NMS, box rescaling).

The model is a fake backend that "sees" the coloured rectangles drawn into the test images: it finds each class's
colour in the letterboxed input and emits a raw YOLO head with those boxes. So a perfect score proves the whole
path - image decoding, RGB order, letterbox mapping, label parsing, metric accumulation - lines up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detector.errors import DatasetError
from detector.evaluation import evaluate_split, read_labels
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec
from detector.runtime.detector import Detector
from detector.runtime.metadata import ModelMetadata

IMGSZ = (64, 64)
NAMES = {0: "red", 1: "green", 2: "blue"}
COLORS = {0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}  # RGB; the letterbox pad (114 grey) matches none
ANCHORS = 16  # fixed number of head outputs per image; unused slots score 0

# (file name, (h, w), [(class, x1, y1, x2, y2)] in pixels). Sizes cover no resize, letterbox padding on either
# axis, and an exact 2x downscale (rectangles on even pixels stay crisp). "none.png" has no label file at all.
IMAGES: list[tuple[str, tuple[int, int], list[tuple[int, int, int, int, int]]]] = [
    ("a.png", (64, 64), [(0, 4, 6, 30, 40), (1, 36, 10, 60, 30)]),
    ("b.png", (48, 64), [(2, 10, 4, 50, 44)]),
    ("c.bmp", (64, 48), [(0, 2, 2, 20, 20), (0, 24, 30, 46, 62), (1, 5, 40, 20, 60)]),
    ("d.png", (96, 128), [(1, 20, 10, 80, 50), (2, 90, 60, 124, 94)]),
    ("none.png", (64, 64), []),
]


class ColourBoxBackend(Backend):
    """Detects each class's solid-colour rectangles in the network input; `shift` moves every box right."""

    name = "fake-colour"

    def __init__(self, shift: float = 0.0) -> None:
        super().__init__(Path("fake.onnx"), BackendOptions())
        self.shift = shift

    @property
    def input_spec(self) -> TensorSpec:
        return TensorSpec("images", (-1, 3, *IMGSZ), np.dtype(np.float32))

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec("output0", (-1, 4 + len(NAMES), ANCHORS), np.dtype(np.float32))]

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(batch), 4 + len(NAMES), ANCHORS), np.float32)
        for b, image in enumerate(batch):
            slot = 0
            for c, rgb in COLORS.items():
                mask = np.all(np.abs(image - np.asarray(rgb, np.float32)[:, None, None] / 255) < 1e-3, axis=0)
                n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
                for x, y, w, h, _area in stats[1:n]:  # component 0 is the background
                    out[b, :4, slot] = (x + w / 2 + self.shift, y + h / 2, w, h)
                    out[b, 4 + c, slot] = 0.9
                    slot += 1
        return out


def make_dataset(root: Path, split: str = "val") -> Path:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for name, (h, w), boxes in IMAGES:
        rgb = np.zeros((h, w, 3), np.uint8)
        rows = []
        for c, x1, y1, x2, y2 in boxes:
            rgb[y1:y2, x1:x2] = COLORS[c]  # covers pixels x1..x2-1, i.e. the continuous box [x1, x2]
            rows.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        cv2.imwrite(str(root / "images" / split / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if boxes:
            (root / "labels" / split / f"{Path(name).stem}.txt").write_text("\n".join(rows) + "\n")
    (root / "images" / split / "notes.txt").write_text("not an image")  # must be ignored
    return root


def make_detector(shift: float = 0.0) -> Detector:
    return Detector(ColourBoxBackend(shift), ModelMetadata(names=NAMES, imgsz=IMGSZ))


N_INSTANCES = sum(len(boxes) for *_, boxes in IMAGES)


def test_perfect_detector_scores_perfect_map(tmp_path: Path) -> None:
    result = evaluate_split(make_detector(), make_dataset(tmp_path), batch_size=2)
    # 0.995 is Ultralytics' (and so our) 101-point AP for a perfect detector; see test_metrics.py.
    assert result.as_dict() == pytest.approx({"mAP50": 0.995, "mAP50-95": 0.995, "precision": 1.0, "recall": 1.0})
    assert result.per_class_ap50_95 == pytest.approx({"red": 0.995, "green": 0.995, "blue": 0.995})
    assert (result.n_images, result.n_instances) == (len(IMAGES), N_INSTANCES)


def test_misplaced_boxes_lose_strict_thresholds_only(tmp_path: Path) -> None:
    # Shifting by 3 input pixels keeps every IoU above 0.5 but below 0.95 for these box sizes.
    result = evaluate_split(make_detector(shift=3.0), make_dataset(tmp_path))
    assert result.map50 == pytest.approx(0.995)
    assert 0.3 < result.map50_95 < 0.9


def test_uses_ultralytics_val_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    detector = make_detector()
    calls: list[dict[str, Any]] = []
    real = detector.predict_batch

    def spy(images: Any, **kwargs: Any) -> Any:
        calls.append({"n": len(images), **kwargs})
        return real(images, **kwargs)

    monkeypatch.setattr(detector, "predict_batch", spy)
    evaluate_split(detector, make_dataset(tmp_path), batch_size=2)
    assert [c["n"] for c in calls] == [2, 2, 1]
    assert all(c["conf"] == 0.001 and c["iou"] == 0.7 and c["max_det"] == 300 and c["multi_label"] for c in calls)


def test_missing_or_empty_split_raises(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"split 'test' not found: .*images[/\\]test"):
        evaluate_split(make_detector(), tmp_path, split="test")
    (tmp_path / "images" / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        evaluate_split(make_detector(), tmp_path, split="empty")


def test_unreadable_image_raises_with_its_path(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    bad = tmp_path / "images" / "val" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.png"):
        evaluate_split(make_detector(), tmp_path)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields"),
        ("0 0.5 0.5 0.2 x", "non-numeric"),
        ("1.5 0.5 0.5 0.2 0.2", "not an integer"),
        ("3 0.5 0.5 0.2 0.2", "out of range"),  # only 3 classes
        ("0 0.5 0.5 2.0 0.2", "outside the image"),
        ("0 0.5 0.5 0.0 0.2", "must be positive"),
    ],
)
def test_malformed_label_raises_with_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "x.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(DatasetError, match=rf"x\.txt:2: .*{error}"):
        read_labels(path, 100, 100, num_classes=3)


def test_read_labels_converts_to_pixels_and_drops_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "y.txt"
    path.write_text("1 0.5 0.25 0.2 0.1\n\n1 0.5 0.25 0.2 0.1\n0 0.1 0.1 0.2 0.2\n")
    boxes, classes = read_labels(path, 200, 100)
    np.testing.assert_allclose(boxes, [[80, 20, 120, 30], [0, 0, 40, 20]], atol=1e-4)
    assert classes.tolist() == [1, 0]
    empty_boxes, empty_cls = read_labels(tmp_path / "missing.txt", 200, 100)
    assert empty_boxes.shape == (0, 4) and empty_cls.shape == (0,)
