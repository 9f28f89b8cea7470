"""The promotion gate's rules, table-driven: per class against the champion, parity per backend, the shadow sample,
and the record kept in registry tags."""

from __future__ import annotations

import pytest

from detector.config import QualityConfig
from detector.evaluation.gate import (
    GateRecord,
    ShadowSample,
    check_promotion,
    class_drops,
    gate_record,
    record_from_tags,
    record_to_tags,
)

RULES = QualityConfig(max_class_drop=0.05, min_parity=0.9)
CHAMPION = GateRecord(
    per_class={"onnxruntime": {"circle": 0.80, "square": 0.85, "triangle": 0.77}},
    parity={"onnxruntime": 1.0},
    overall=0.81,
)


def record(square: float = 0.85, parity: float | None = 1.0, backend: str = "onnxruntime") -> GateRecord:
    return GateRecord(
        per_class={backend: {"circle": 0.80, "square": square, "triangle": 0.77}},
        parity={backend: parity},
        overall=0.8,
    )


@pytest.mark.parametrize(
    ("candidate", "champion", "expected"),
    [
        (record(), CHAMPION, []),
        (record(square=0.81), CHAMPION, []),  # a drop within the margin
        (record(square=0.79), CHAMPION, ["class 'square' on onnxruntime: AP50-95 0.790 vs 0.850 (champion v1)"]),
        # A backend the champion has no record of is compared with the champion's ONNX Runtime numbers.
        (record(square=0.0, backend="openvino"), CHAMPION, ["class 'square' on openvino: AP50-95 0.000 vs 0.850"]),
        (record(parity=0.85), CHAMPION, ["backend onnxruntime: boxes match the .pt's at 0.850 < quality.min_parity"]),
        (record(square=0.0), None, []),  # nobody to compare with: only parity counts
        (record(parity=0.5), None, ["backend onnxruntime: boxes match the .pt's at 0.500"]),
        (record(parity=None), None, []),  # no .pt to compare with: a note, not a refusal
        (
            GateRecord(parity={"tensorrt": None}, errors={"tensorrt": "engine build failed"}, overall=0.8),
            None,
            ["backend tensorrt: could not score the model (engine build failed)"],
        ),
        (GateRecord(overall=0.8), CHAMPION, ["no quality record"]),  # e.g. a version registered before the gate
    ],
)
def test_decisions_name_the_class_and_the_backend(
    candidate: GateRecord, champion: GateRecord | None, expected: list[str]
) -> None:
    decision = check_promotion(candidate, champion, RULES, "champion v1")
    assert decision.passed is (not expected)
    assert len(decision.reasons) >= len(expected)
    for fragment in expected:
        assert any(fragment in reason for reason in decision.reasons), (fragment, decision.reasons)


def test_every_failing_class_and_backend_is_listed() -> None:
    candidate = GateRecord(
        per_class={
            "onnxruntime": {"circle": 0.0, "square": 0.85, "triangle": 0.0},
            "openvino": {"circle": 0.80, "square": 0.85, "triangle": 0.0},
        },
        parity={"onnxruntime": 1.0, "openvino": 0.2},
    )
    reasons = check_promotion(candidate, CHAMPION, RULES).reasons
    assert sorted(reasons) == sorted(
        [
            "backend openvino: boxes match the .pt's at 0.200 < quality.min_parity 0.9 (IoU >= 0.9)",
            "class 'circle' on onnxruntime: AP50-95 0.000 vs 0.800 (champion), a drop of 0.800 > "
            "quality.max_class_drop 0.05",
            "class 'triangle' on onnxruntime: AP50-95 0.000 vs 0.770 (champion), a drop of 0.770 > "
            "quality.max_class_drop 0.05",
            "class 'triangle' on openvino: AP50-95 0.000 vs 0.770 (champion), a drop of 0.770 > "
            "quality.max_class_drop 0.05",
        ]
    )


@pytest.mark.parametrize(("overall", "passed"), [(0.80, True), (0.70, False)])
def test_a_champion_without_per_class_record_is_compared_on_the_overall_metric(overall: float, passed: bool) -> None:
    legacy = GateRecord(overall=0.78)  # registered before the gate: only the champion-metric tag
    candidate = GateRecord(per_class=record().per_class, parity={"onnxruntime": 1.0}, overall=overall)
    decision = check_promotion(candidate, legacy, RULES)
    assert decision.passed is passed
    assert any("no per-class record" in note for note in decision.notes)


@pytest.mark.parametrize(
    ("required", "shadow", "refusal"),
    [
        (0, None, None),
        (100, None, "no shadow sample given"),
        (100, ShadowSample("running", 99, 0.97), "99 samples < quality.min_shadow_samples 100"),
        (100, ShadowSample("running", 100, 0.97), None),
        (100, ShadowSample("off", 250, 0.97), None),  # stopped after enough samples
        (100, ShadowSample("failed", 500, None), "shadow scoring failed"),
        (100, ShadowSample("running", 500, 0.97, version="2"), "the service shadow-scores v2, not v3"),
        (100, ShadowSample("running", 500, 0.97, version="3"), None),
    ],
)
def test_a_minimum_shadow_sample_can_be_required(required: int, shadow: ShadowSample | None, refusal: str) -> None:
    rules = QualityConfig(min_shadow_samples=required)
    decision = check_promotion(record(), CHAMPION, rules, shadow=shadow, candidate_version="3")
    assert decision.passed is (refusal is None)
    assert refusal is None or refusal in decision.message()


def test_the_record_survives_registry_tags() -> None:
    original = GateRecord(
        per_class={"onnxruntime": {"circle": 0.8123456, "dog house": 0.5}, "openvino": {"circle": 0.81}},
        parity={"onnxruntime": 0.99, "openvino": None},
    )
    tags = record_to_tags(original) | {"val_mAP50-95": "0.8"}
    assert all(len(v) <= 5000 for v in tags.values())
    back = record_from_tags(tags, "val_mAP50-95")
    assert back.per_class == {"onnxruntime": {"circle": 0.81235, "dog house": 0.5}, "openvino": {"circle": 0.81}}
    assert back.parity == original.parity and back.overall == 0.8
    # A version registered before the gate, or with a damaged tag: no per-class record, not an error.
    assert record_from_tags({"val_mAP50-95": "0.7"}, "val_mAP50-95") == GateRecord(overall=0.7)
    assert record_from_tags({"gate.AP50-95.onnxruntime": "{oops"}, "val_mAP50-95").per_class == {}


def test_gate_record_reads_the_fp32_rows_of_a_quality_report() -> None:
    report = {
        "models": {
            "fp32_onnxruntime": {
                "variant": "fp32",
                "backend": "onnxruntime",
                "parity": 0.98,
                "per_class": {"circle": {"AP50-95": 0.8, "precision": 0.9, "recall": 0.9}},
            },
            "int8_onnxruntime": {"variant": "int8", "backend": "onnxruntime", "parity": 0.5, "per_class": {}},
            "fp32_tensorrt": {"variant": "fp32", "backend": "tensorrt", "error": "no engine"},
            "pt_ultralytics": {"variant": "pt", "backend": "ultralytics", "per_class": {}},
        }
    }
    rec = gate_record(report, overall=0.8)
    assert rec.per_class == {"onnxruntime": {"circle": 0.8}}
    assert rec.parity == {"onnxruntime": 0.98, "tensorrt": None} and rec.errors == {"tensorrt": "no engine"}


def test_class_drops_is_the_int8_rule_too() -> None:
    lines = class_drops({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.3}, 0.1, "FP32", limit="export.int8.max_class_drop")
    assert lines == ["class 'b': AP50-95 0.300 vs 0.500 (FP32), a drop of 0.200 > export.int8.max_class_drop 0.1"]
