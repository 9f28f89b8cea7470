"""`python -m benchmarks.tiles` on the quick model: it runs ours and SAHI with Ultralytics on the same scenes and
tiles, and what it reports can be believed (the two cut the same tiles, so their boxes agree; the scenes' labels
are found with tiles). Speed is not asserted: that is the benchmark's to measure, not a test's."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("sahi")
pytest.importorskip("ultralytics")


def test_ours_and_sahi_cut_the_same_tiles_and_agree(model_path: Path, dataset_dir: Path) -> None:
    from benchmarks.tiles import measure

    # The INT8 and OpenVINO pairs' code paths, with the FP32 file standing in for the exports (the CLI makes those).
    int8 = (model_path, model_path)
    result = measure(
        model_path,
        dataset_dir,
        tile=0,
        overlap=0.2,
        count=1,
        rounds=1,
        conf=0.25,
        int8=int8,
        openvino_export=model_path,
    )
    # bf16 where OpenVINO computes it natively and defaults to it (AMX), as Ultralytics' export then does; else f32.
    precision = result["openvino"]["precision"]
    assert precision in ("bf16", "f32")
    assert set(result["p50_ms_per_scene"]) == {
        "ours_onnxruntime",
        "ours_openvino",
        "sahi_ultralytics_onnxruntime",
        "ours_openvino_int8",
        "sahi_ultralytics_openvino_int8",
        "sahi_ultralytics_openvino",
    } | ({"ours_openvino_bf16"} if precision == "bf16" else set())
    assert result["fastest"]["ours"].startswith("ours") and result["fastest"]["sahi"].startswith("sahi")
    # Our network's own time is measured on every runner of ours, and is part of what the whole call took.
    p50, network = result["p50_ms_per_scene"], result["network_p50_ms_per_scene"]
    assert set(network) == {name for name in p50 if name.startswith("ours")}
    assert all(0 < network[name] <= p50[name] for name in network), (network, p50)
    assert set(result["ceiling_sahi_over_our_network"]) == {"fp32", "openvino", "int8"}
    # Here the stand-in runs f32 on ONNX Runtime: ours in bf16 may move a borderline box, never many.
    assert result["openvino"]["sahi_boxes_matched_by_ours"] >= 0.9, result["openvino"]
    assert result["openvino"]["our_boxes_matched_by_sahi"] >= 0.9, result["openvino"]
    assert result["int8"]["sahi_boxes_matched_by_ours"] >= 0.95, result["int8"]
    same_file = result["int8"]["same_file_onnxruntime"]
    assert same_file["sahi_boxes"] == result["sahi_boxes"], same_file  # the FP32 file again, on the same runtime
    assert same_file["sahi_boxes_matched_by_ours"] >= 0.95 and same_file["our_boxes_matched_by_sahi"] >= 0.95
    assert result["sahi_boxes"] > 0 and result["our_boxes"] > 0
    assert result["sahi_boxes_matched_by_ours"] >= 0.95 and result["our_boxes_matched_by_sahi"] >= 0.95, result
    recall = result["recall"]
    assert recall and all(v["with_tiles"] >= v["without_tiles"] for v in recall.values()), recall
