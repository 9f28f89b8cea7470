"""`DetectionMetrics` against Ultralytics' own validator, plus hand-checked edge cases.

Note on "perfect" scores: Ultralytics' 101-point AP gives 0.995, not 1.0, for a perfect detector (the recall grid's
last point interpolates to the zero sentinel), and our numbers must equal theirs, so 0.995 is what is asserted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from detector.evaluation.metrics import IOU_THRESHOLDS, DetectionMetrics, MetricsResult, box_iou, match_predictions
from detector.runtime.detections import Detections

PERFECT_AP = 0.995
NAMES = {0: "person", 1: "car", 2: "dog", 3: "cat"}
GT = np.array([[0, 0, 100, 100]], np.float32)


def dets(boxes: list[list[float]], conf: list[float], cls: list[int]) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(conf, np.float32),
        np.asarray(cls, np.int64),
        NAMES,
    )


def score(*images: tuple[Detections, npt.NDArray[Any], list[int]]) -> MetricsResult:
    metrics = DetectionMetrics(NAMES)
    for pred, gt, gt_cls in images:
        metrics.update(pred, gt, np.asarray(gt_cls, np.int64))
    return metrics.compute()


# --- exact agreement with Ultralytics -------------------------------------------------------------------------


def _random_image(
    rng: np.random.Generator, tie_conf: bool
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Detections]:
    """GT boxes in a 640x480 image and plausible predictions: jittered hits, duplicates, confusions, clutter."""
    m = int(rng.integers(0, 7))
    xy = rng.uniform(0, 500, (m, 2))
    wh = rng.uniform(10, 140, (m, 2))
    gt = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    gt_cls = rng.integers(0, len(NAMES), m).astype(np.int64)
    boxes, classes = [], []
    for box, c in zip(gt, gt_cls, strict=True):
        for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):  # missed, found, or found several times
            scale = float(rng.choice([0.02, 0.1, 0.25]))
            boxes.append(box + rng.normal(0, scale, 4) * np.r_[wh.mean(), wh.mean(), wh.mean(), wh.mean()] * 0.5)
            classes.append(int(c) if rng.random() < 0.8 else int(rng.integers(0, len(NAMES))))
    for _ in range(int(rng.integers(0, 4))):  # background false positives
        p = rng.uniform(0, 560, 2)
        boxes.append(np.r_[p, p + rng.uniform(5, 80, 2)])
        classes.append(int(rng.integers(0, len(NAMES))))
    conf = rng.uniform(0.001, 1.0, len(boxes))
    if tie_conf:  # coarse scores create ties, which exercise the confidence sort's tie-breaking
        conf = np.round(conf, 1) + 0.001
    order = np.argsort(-conf, kind="stable")  # NMS output order
    pred = Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4)[order],
        conf.astype(np.float32)[order],
        np.asarray(classes, np.int64)[order],
        NAMES,
    )
    return gt, gt_cls, pred


def _ultralytics_reference(images: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Detections]]) -> Any:
    """Feed the same images through `DetectionValidator.update_metrics` + `DetMetrics.process`, unmodified."""
    torch = pytest.importorskip("torch")
    from ultralytics.models.yolo.detect.val import DetectionValidator

    v = DetectionValidator(args={"plots": False, "save_json": False, "save_txt": False})
    v.device, v.seen, v.is_custom_json, v.build_gdict = torch.device("cpu"), 0, False, False
    v.metrics.names = NAMES
    for i, (gt, gt_cls, pred) in enumerate(images):
        # The validator takes GT as normalised xywh of the network input; use a 1x1 "input" so the pixel boxes
        # pass through `_prepare_batch` unchanged (xywh -> xyxy, times 1).
        xywh = np.concatenate([(gt[:, :2] + gt[:, 2:]) / 2, gt[:, 2:] - gt[:, :2]], 1)
        batch = {
            "batch_idx": torch.zeros(len(gt)),
            "cls": torch.from_numpy(gt_cls.astype(np.float32))[:, None],
            "bboxes": torch.from_numpy(xywh.astype(np.float32)),
            "ori_shape": [(1, 1)],
            "img": torch.zeros((1, 3, 1, 1)),
            "ratio_pad": [((1.0, 1.0), (0, 0))],
            "im_file": [f"{i}.jpg"],
        }
        preds = {
            "bboxes": torch.from_numpy(pred.xyxy),
            "conf": torch.from_numpy(pred.confidence),
            "cls": torch.from_numpy(pred.class_id.astype(np.float32)),
        }
        v.update_metrics([preds], batch)
        # Give our side the exact GT boxes the validator used (xywh round trip in float32).
        images[i] = (v._prepare_batch(0, batch)["bboxes"].numpy(), gt_cls, pred)
    v.metrics.process()
    return v.metrics


@pytest.mark.parametrize(("seed", "tie_conf"), [(0, False), (1, False), (2, False), (3, True), (4, True)])
def test_matches_ultralytics_validator_on_random_data(seed: int, tie_conf: bool) -> None:
    rng = np.random.default_rng(seed)
    images = [_random_image(rng, tie_conf) for _ in range(80)]
    images[0] = (images[0][0], images[0][1], Detections.empty(NAMES))  # an image without predictions
    images[1] = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64), images[1][2])  # without GT

    ref = _ultralytics_reference(images)  # also swaps in the validator's own GT boxes
    ours = score(*((pred, gt, list(cls)) for gt, cls, pred in images))

    mp, mr, map50, map50_95 = ref.mean_results()
    assert 0.05 < map50_95 < map50 < 0.99, "random data should give a non-trivial score"
    assert ours.map50 == pytest.approx(map50, abs=1e-6)
    assert ours.map50_95 == pytest.approx(map50_95, abs=1e-6)
    assert ours.precision == pytest.approx(mp, abs=1e-6)
    assert ours.recall == pytest.approx(mr, abs=1e-6)
    expected_per_class = {NAMES[int(c)]: float(a) for c, a in zip(ref.ap_class_index, ref.box.ap, strict=True)}
    assert ours.per_class_ap50_95 == pytest.approx(expected_per_class, abs=1e-6)
    names = [NAMES[int(c)] for c in ref.ap_class_index]
    assert ours.per_class_precision == pytest.approx(dict(zip(names, map(float, ref.box.p), strict=True)), abs=1e-6)
    assert ours.per_class_recall == pytest.approx(dict(zip(names, map(float, ref.box.r), strict=True)), abs=1e-6)
    assert ours.n_images == len(images)
    assert ours.n_instances == int(ref.nt_per_class.sum())


def test_iou_and_matching_equal_ultralytics_functions() -> None:
    torch = pytest.importorskip("torch")
    from ultralytics.models.yolo.detect.val import DetectionValidator
    from ultralytics.utils.metrics import box_iou as ul_box_iou

    rng = np.random.default_rng(7)
    v = DetectionValidator(args={"plots": False})
    for _ in range(50):
        gt, gt_cls, pred = _random_image(rng, tie_conf=False)
        if not len(gt) or not len(pred):
            continue
        ref_iou = ul_box_iou(torch.from_numpy(gt), torch.from_numpy(pred.xyxy)).numpy()
        np.testing.assert_array_equal(box_iou(gt, pred.xyxy), ref_iou)  # bit-identical float32
        ref_tp = v.match_predictions(
            torch.from_numpy(pred.class_id.astype(np.float32)),
            torch.from_numpy(gt_cls.astype(np.float32)),
            torch.from_numpy(ref_iou),
        ).numpy()
        np.testing.assert_array_equal(match_predictions(pred.class_id, gt_cls, ref_iou), ref_tp)


# --- hand-checked edge cases ------------------------------------------------------------------------------------


def _box_with_iou(iou: float) -> list[float]:
    """A box sharing GT's top part so that IoU with `GT` (100x100) is exactly `iou` (height = 100 * iou)."""
    return [0.0, 0.0, 100.0, 100.0 * iou]


@pytest.mark.parametrize(
    ("name", "images", "expected"),
    [
        (
            "perfect",
            [
                (
                    dets([[0, 0, 100, 100], [200, 200, 260, 300]], [0.9, 0.8], [0, 1]),
                    [[0, 0, 100, 100], [200, 200, 260, 300]],
                    [0, 1],
                )
            ],
            {"mAP50": PERFECT_AP, "mAP50-95": PERFECT_AP, "precision": 1.0, "recall": 1.0},
        ),
        (
            "no predictions",
            [(Detections.empty(NAMES), GT, [0]), (Detections.empty(NAMES), GT, [1])],
            {"mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0},
        ),
        (
            "no ground truth anywhere",
            [(dets([[0, 0, 10, 10]], [0.9], [0]), np.zeros((0, 4)), [])],
            {"mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0},
        ),
        (
            "right box, wrong class",
            [(dets([[0, 0, 100, 100]], [0.9], [1]), GT, [0])],
            {"mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0},
        ),
        (
            # IoU 0.6 is a TP at 0.50, 0.55 and 0.60 (>=, and float32 0.6 equals the float32 threshold), not above.
            "IoU 0.6 counts at 3 of 10 thresholds",
            [(dets([_box_with_iou(0.6)], [0.9], [0]), GT, [0])],
            {"mAP50": PERFECT_AP, "mAP50-95": PERFECT_AP * 3 / 10, "precision": 1.0, "recall": 1.0},
        ),
        (
            "IoU 0.76 counts at 6 of 10 thresholds",
            [(dets([_box_with_iou(0.76)], [0.9], [0]), GT, [0])],
            {"mAP50": PERFECT_AP, "mAP50-95": PERFECT_AP * 6 / 10, "precision": 1.0, "recall": 1.0},
        ),
        (
            "IoU 0.49 is a miss",
            [(dets([_box_with_iou(0.49)], [0.9], [0]), GT, [0])],
            {"mAP50": 0.0, "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0},
        ),
        (
            # A GT-less image's predictions are false positives of their class: the FP outranks the TP here.
            "prediction on an empty image is a false positive",
            [
                (dets([[0, 0, 100, 100]], [0.5], [0]), GT, [0]),
                (dets([[5, 5, 50, 50]], [0.9], [0]), np.zeros((0, 4)), []),
            ],
            {"mAP50": 0.4975, "mAP50-95": 0.4975, "precision": 0.5, "recall": 1.0},
        ),
    ],
)
def test_edge_cases(name: str, images: list[tuple[Detections, Any, list[int]]], expected: dict[str, float]) -> None:
    result = score(*((pred, np.asarray(gt, np.float32), cls) for pred, gt, cls in images))
    assert result.as_dict() == pytest.approx(expected, abs=1e-6), name


def test_duplicate_predictions_are_false_positives() -> None:
    gt = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], np.float32)
    dup = dets([[0, 0, 100, 100], [1, 1, 100, 100]], [0.9, 0.8], [0, 0])
    tp = match_predictions(dup.class_id, np.array([0, 0]), box_iou(gt, dup.xyxy))
    assert tp[0].all() and not tp[1].any(), "one GT is matched once; its duplicate is a FP at every threshold"

    # The duplicate (0.8) ranks above the second object's hit (0.7), so precision drops to 2/3 before full recall.
    with_dup = dets([[0, 0, 100, 100], [1, 1, 100, 100], [200, 200, 300, 300]], [0.9, 0.8, 0.7], [0, 0, 0])
    without = dets([[0, 0, 100, 100], [200, 200, 300, 300]], [0.9, 0.7], [0, 0])
    assert score((without, gt, [0, 0])).map50 == pytest.approx(PERFECT_AP)
    assert score((with_dup, gt, [0, 0])).map50 < PERFECT_AP - 0.1


def test_matching_is_greedy_in_confidence_order_whatever_the_input_order() -> None:
    # The lower-IoU box has the higher score, so it claims the GT; the better box is left as a FP at IoU 0.5
    # (the GT is taken) - exactly Ultralytics' rule. Input order must not matter: update() sorts by score.
    preds = dets([[0, 0, 100, 100], _box_with_iou(0.7)], [0.6, 0.9], [0, 0])
    reversed_preds = dets([_box_with_iou(0.7), [0, 0, 100, 100]], [0.9, 0.6], [0, 0])
    assert score((preds, GT, [0])) == score((reversed_preds, GT, [0]))
    tp = match_predictions(np.array([0, 0]), np.array([0]), box_iou(GT, reversed_preds.xyxy))
    assert tp[0].tolist() == [True] * 5 + [False] * 5  # IoU 0.7 hit at 0.50..0.70
    assert tp[1].tolist() == [False] * 5 + [True] * 5  # the exact box takes the GT only where 0.7 failed


def test_per_class_ap_counts_and_names() -> None:
    result = score(
        (dets([[0, 0, 100, 100]], [0.9], [0]), GT, [0]),
        (Detections.empty(NAMES), np.array([[0, 0, 50, 50], [60, 60, 90, 90]]), [2, 2]),
    )
    assert result.per_class_ap50_95 == pytest.approx({"person": PERFECT_AP, "dog": 0.0})
    assert (result.n_images, result.n_instances) == (2, 3)
    assert result.map50_95 == pytest.approx(PERFECT_AP / 2)  # mean over classes with GT only
    assert len(IOU_THRESHOLDS) == 10


def test_mismatched_gt_arrays_and_empty_accumulator() -> None:
    with pytest.raises(ValueError, match="gt_xyxy has 1 boxes"):
        DetectionMetrics().update(Detections.empty(), GT, np.array([0, 1]))
    assert DetectionMetrics().compute() == MetricsResult(0.0, 0.0, 0.0, 0.0, {}, 0, 0)
