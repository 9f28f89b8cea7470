"""The promotion gate: may a candidate model take the champion alias? Per class, per backend, as pure functions.

Two rules, each naming what broke it (`configs/quality.yaml`):
- per class: on every backend the candidate was scored on, no class's AP50-95 may be lower than the champion's by
  more than `max_class_drop`. A class the champion never recorded (older versions) falls back to the overall metric.
- parity: on every backend, the FP32 model's boxes must match the trained `.pt`'s (`Agreement.match_rate` at
  `parity_iou`) at least `min_parity`; a backend that could not run the model at all fails it too.
Optionally a shadow sample: `min_shadow_samples` live requests scored beside the champion before promotion.

The numbers travel as a `GateRecord`, stored with each registered version as tags (`record_to_tags`), so
`detector registry promote` can re-check any version later without re-running the evaluation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from detector.config import QualityConfig

log = logging.getLogger(__name__)

# Model-version tags holding a record (JSON), one per backend for the per-class APs so each stays far below
# MLflow's 5,000-character tag limit.
PER_CLASS_TAG = "gate.AP50-95."  # + backend
PARITY_TAG = "gate.parity"
REFERENCE_BACKEND = "onnxruntime"  # the champion's per-class APs compared against when it lacks the candidate's backend
_TAG_LIMIT = 5000


@dataclass(frozen=True)
class GateRecord:
    """A model's numbers the gate reads: FP32 per-class AP50-95 per backend, parity with its `.pt` per backend
    (None where the backend failed to run it) and its overall champion metric."""

    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # backend -> class -> AP50-95
    parity: dict[str, float | None] = field(default_factory=dict)  # backend -> match rate (None: failed)
    overall: float | None = None
    errors: dict[str, str] = field(default_factory=dict)  # backend -> why it could not score the model

    def reference_classes(self, backend: str) -> dict[str, float] | None:
        """The per-class APs to compare a candidate's `backend` with: the same backend's, else ONNX Runtime's."""
        return self.per_class.get(backend) or self.per_class.get(REFERENCE_BACKEND)


@dataclass(frozen=True)
class ShadowSample:
    """What `GET /model/shadow` of a running service says about the challenger it scores."""

    status: str  # loading | running | failed | off
    samples: int
    match_rate: float | None = None
    version: str | None = None  # the registry version it scores (None: a file, or not said)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: tuple[str, ...] = ()  # why it was refused, one line each, naming class and backend
    notes: tuple[str, ...] = ()  # what was not checked and why (fallbacks, skipped backends)

    def message(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "passed"

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "notes": list(self.notes)}


def check_promotion(
    candidate: GateRecord,
    champion: GateRecord | None,
    rules: QualityConfig,
    champion_label: str = "champion",
    shadow: ShadowSample | None = None,
    candidate_version: str | None = None,
) -> GateDecision:
    """Whether `candidate` may replace `champion` (None: nobody holds the alias); see the module docstring."""
    reasons: list[str] = []
    notes: list[str] = []
    if not candidate.per_class and not candidate.parity:
        reasons.append(
            "the candidate has no quality record (scored before the promotion gate existed, or on no "
            "backend): run `detector evaluate` on it first"
        )
    for backend, error in sorted(candidate.errors.items()):
        reasons.append(f"backend {backend}: could not score the model ({error})")
    for backend, rate in sorted(candidate.parity.items()):
        if rate is None:
            if backend not in candidate.errors:  # no .pt to compare with (exported from other weights)
                notes.append(f"backend {backend}: no parity with the .pt measured (its weights were not there)")
        elif rate < rules.min_parity:
            reasons.append(
                f"backend {backend}: boxes match the .pt's at {rate:.3f} < quality.min_parity {rules.min_parity} "
                f"(IoU >= {rules.parity_iou})"
            )
    if champion is not None:
        reasons += _class_drops(candidate, champion, rules.max_class_drop, champion_label, notes)
    reasons += _shadow_reasons(shadow, rules.min_shadow_samples, candidate_version)
    return GateDecision(not reasons, tuple(reasons), tuple(notes))


def class_drops(
    reference: dict[str, float],
    candidate: dict[str, float],
    max_drop: float,
    against: str,
    where: str = "",
    limit: str = "quality.max_class_drop",
) -> list[str]:
    """One line per class whose AP50-95 in `candidate` is lower than in `reference` by more than `max_drop`.

    A class the candidate has no number for (no ground truth in its split) is not compared; the INT8 gate and the
    promotion gate both use this rule."""
    lines = []
    on = f" on {where}" if where else ""
    for name, before in sorted(reference.items()):
        after = candidate.get(name)
        if after is not None and before - after > max_drop:
            lines.append(
                f"class {name!r}{on}: AP50-95 {after:.3f} vs {before:.3f} ({against}), a drop of {before - after:.3f}"
                f" > {limit} {max_drop}"
            )
    return lines


def _class_drops(
    candidate: GateRecord, champion: GateRecord, max_drop: float, label: str, notes: list[str]
) -> list[str]:
    reasons: list[str] = []
    fallback = False
    for backend, classes in sorted(candidate.per_class.items()):
        reference = champion.reference_classes(backend)
        if reference is None:
            fallback = True
        else:
            reasons += class_drops(reference, classes, max_drop, label, backend)
    if fallback or not candidate.per_class:
        note = f"{label} has no per-class record: compared on the overall metric instead"
        log.info("%s", note)
        notes.append(note)
        if (
            champion.overall is not None
            and candidate.overall is not None
            and champion.overall - candidate.overall > max_drop
        ):
            reasons.append(
                f"overall metric {candidate.overall:.3f} vs {champion.overall:.3f} ({label}), a drop of "
                f"{champion.overall - candidate.overall:.3f} > {max_drop}"
            )
    return reasons


def _shadow_reasons(shadow: ShadowSample | None, required: int, candidate_version: str | None) -> list[str]:
    if required <= 0:
        return []
    if shadow is None:
        return [f"quality.min_shadow_samples={required}: no shadow sample given (promote with --shadow-url)"]
    if shadow.status == "failed":
        return ["shadow scoring failed on the service: its sample cannot vouch for the model"]
    if shadow.version and candidate_version and shadow.version != candidate_version:
        scored = f"v{shadow.version}, not v{candidate_version}"
        return [f"the service shadow-scores {scored}: its sample is of another model"]
    if shadow.samples < required:
        return [f"shadow scoring has {shadow.samples} samples < quality.min_shadow_samples {required}"]
    return []


def gate_record(report: dict[str, Any], overall: float | None = None) -> GateRecord:
    """The FP32 rows of a quality report (`quality.models`, see `detector.evaluation.quality`) as a record."""
    per_class: dict[str, dict[str, float]] = {}
    parity: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for row in report.get("models", {}).values():
        if row.get("variant") != "fp32":
            continue
        backend = str(row["backend"])
        if "error" in row:
            errors[backend] = str(row["error"])
            parity[backend] = None
            continue
        per_class[backend] = {name: float(v["AP50-95"]) for name, v in row.get("per_class", {}).items()}
        parity[backend] = None if row.get("parity") is None else float(row["parity"])
    return GateRecord(per_class, parity, overall, errors)


def record_to_tags(record: GateRecord) -> dict[str, str]:
    """Model-version tags holding `record` (a backend whose classes do not fit in one tag is left out, logged)."""
    tags = {PARITY_TAG: json.dumps(record.parity, sort_keys=True)}
    for backend, classes in record.per_class.items():
        value = json.dumps({k: round(v, 5) for k, v in classes.items()}, sort_keys=True)
        if len(value) > _TAG_LIMIT:
            log.warning("per-class APs of %s do not fit in a tag (%d chars): not stored", backend, len(value))
            continue
        tags[PER_CLASS_TAG + backend] = value
    return tags


def record_from_tags(tags: dict[str, str], metric: str) -> GateRecord:
    """The record `record_to_tags` stored (empty parts for a version registered before the gate existed); the
    overall value is the champion metric's tag."""
    per_class: dict[str, dict[str, float]] = {}
    parity: dict[str, float | None] = {}
    try:
        for key, value in tags.items():
            if key.startswith(PER_CLASS_TAG):
                per_class[key[len(PER_CLASS_TAG) :]] = {k: float(v) for k, v in json.loads(value).items()}
        if PARITY_TAG in tags:
            parity = {k: None if v is None else float(v) for k, v in json.loads(tags[PARITY_TAG]).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("unreadable gate tags (%s): treating the version as having no per-class record", exc)
        per_class, parity = {}, {}
    try:
        overall: float | None = float(tags[metric]) if metric in tags else None
    except ValueError:
        overall = None
    return GateRecord(per_class, parity, overall)
