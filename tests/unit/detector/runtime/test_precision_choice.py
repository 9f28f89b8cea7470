"""`inference.openvino.precision: auto`: which candidates exist, the choice of the fastest, its cache per CPU and
files, and the pinned values. Timings are injected here (the real measurement runs in
tests/integration/export/test_int8.py, on a real INT8 twin)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.config import OpenVinoConfig
from detector.errors import ModelLoadError
from detector.runtime import precision
from detector.runtime.backends.base import BackendOptions

pytest.importorskip("openvino")


def _layout(tmp_path: Path, int8: bool = True, bf16_passed: bool | None = None) -> Path:
    model = tmp_path / "models" / "model.onnx"
    (model.parent / "int8").mkdir(parents=True)
    model.write_bytes(b"fp32 model bytes")
    if int8:
        precision.int8_twin(model).write_bytes(b"int8 model bytes")
    if bf16_passed is not None:
        gates = {"int8": {"passed": int8}, "bf16": {"passed": bf16_passed, "reason": "" if bf16_passed else "lost"}}
        (model.parent / "int8" / precision.GATES_FILE).write_text(json.dumps(gates))
    return model


def _options(tmp_path: Path, wanted: str = "auto") -> BackendOptions:
    return BackendOptions(openvino=OpenVinoConfig(precision=wanted, choice_cache=str(tmp_path / "cache.json")))  # type: ignore[arg-type]


class _Timer:
    def __init__(self, ms: dict[str, float]) -> None:
        self.ms = ms
        self.calls = 0

    def __call__(self, found: dict[str, Path], options: BackendOptions) -> dict[str, float]:
        self.calls += 1
        return {name: self.ms[name] for name in found}


@pytest.mark.parametrize("native", [True, False])
def test_the_fastest_gated_candidate_wins_and_is_measured_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    model = _layout(tmp_path, bf16_passed=True)
    timer = _Timer({"f32": 30.0, "bf16": 12.0, "int8": 15.0})
    first = precision.choose(model, _options(tmp_path), timer)
    # bf16 only where the CPU computes it natively; else INT8 is the fastest left.
    assert (first.precision, first.model_path) == (("bf16", model) if native else ("int8", precision.int8_twin(model)))
    assert set(first.measured_ms) == ({"f32", "bf16", "int8"} if native else {"f32", "int8"})
    assert first.reason.startswith("fastest measured on this CPU") and first.cpu
    again = precision.choose(model, _options(tmp_path), timer)
    assert timer.calls == 1 and again.precision == first.precision and again.reason.startswith("cached")
    # Other model files (a re-export) are another decision: measured again.
    model.write_bytes(b"another fp32 model")
    precision.choose(model, _options(tmp_path), timer)
    assert timer.calls == 2


def test_a_capped_instruction_set_is_another_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ONEDNN_MAX_CPU_ISA changes what the same CPU computes fast (AMX off: bf16 slower than INT8), so a decision
    # measured without the cap is not reused under it, nor the other way round.
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    model = _layout(tmp_path, bf16_passed=True)
    assert (
        precision.choose(model, _options(tmp_path), _Timer({"f32": 30.0, "bf16": 12.0, "int8": 15.0})).precision
        == "bf16"
    )
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    capped = _Timer({"f32": 30.0, "bf16": 24.0, "int8": 15.0})
    assert precision.choose(model, _options(tmp_path), capped).precision == "int8" and capped.calls == 1
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    uncapped = _Timer({"f32": 30.0, "bf16": 12.0, "int8": 15.0})
    chosen = precision.choose(model, _options(tmp_path), uncapped)
    assert (chosen.precision, uncapped.calls) == ("bf16", 0) and chosen.reason.startswith("cached")


def test_a_failed_bf16_gate_or_a_missing_int8_twin_is_no_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    model = _layout(tmp_path, int8=False, bf16_passed=False)
    timer = _Timer({"f32": 30.0, "bf16": 1.0, "int8": 1.0})
    choice = precision.choose(model, _options(tmp_path), timer)
    assert (choice.precision, choice.model_path, timer.calls) == ("f32", model, 0)
    assert "bf16: lost" in choice.reason and "int8: no " in choice.reason


def test_a_tie_keeps_the_more_exact_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    model = _layout(tmp_path)
    assert precision.choose(model, _options(tmp_path), _Timer({"f32": 9.0, "int8": 9.0})).precision == "f32"


def test_pinned_precisions_measure_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    model = _layout(tmp_path, bf16_passed=True)
    timer = _Timer({})
    for wanted, path in (("f32", model), ("bf16", model), ("int8", precision.int8_twin(model))):
        choice = precision.choose(model, _options(tmp_path, wanted), timer)
        assert (choice.precision, choice.model_path) == (wanted, path) and "pinned" in choice.reason
        compute = choice.options(_options(tmp_path, wanted)).openvino.precision
        assert compute == ("bf16" if wanted == "bf16" else "f32")
    assert timer.calls == 0
    precision.int8_twin(model).unlink()
    with pytest.raises(ModelLoadError, match="detector export int8"):
        precision.choose(model, _options(tmp_path, "int8"), timer)


def test_an_unwritable_cache_still_chooses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    model = _layout(tmp_path)
    (tmp_path / "blocker").write_text("a file, not a folder")
    options = BackendOptions(
        openvino=OpenVinoConfig(precision="auto", choice_cache=str(tmp_path / "blocker" / "c.json"))
    )
    assert precision.choose(model, options, _Timer({"f32": 5.0, "int8": 2.0})).precision == "int8"


def test_evaluation_options_compute_what_they_are_given() -> None:
    for wanted, compute in (("auto", "f32"), ("int8", "f32"), ("bf16", "bf16"), ("f32", "f32")):
        assert BackendOptions(openvino=OpenVinoConfig(precision=wanted)).pinned().openvino.precision == compute  # type: ignore[arg-type]
