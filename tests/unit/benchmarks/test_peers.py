"""The peers benchmark's parts that need no trained model: its photos, its ratios and table, and the INT8 model it
keeps. The afternoon service it starts and our JPEG path, on the quick model, are in
tests/integration/benchmarks/test_peers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.peers import fastest_peer, peer_photos, ratios, server_total_ms, to_markdown


def test_photos_are_the_real_ones_plus_a_1920x1080_jpeg() -> None:
    pytest.importorskip("ultralytics")
    photos = peer_photos()
    assert [(name, img.shape[:2]) for name, img, _ in photos] == [
        ("bus.jpg", (1080, 810)),
        ("zidane.jpg", (720, 1280)),
        ("zidane-1920x1080.jpg", (1080, 1920)),
    ]
    assert all(data[:2] == b"\xff\xd8" for _, _, data in photos)  # JPEG bytes, as HTTP clients send them


def _report() -> dict:
    summary = {"p50_ms": 10.0, "p90_ms": 12.0, "n": 30.0}
    return {
        "created": "now",
        "command": ["python", "-m", "benchmarks.peers"],
        "machine": {"cpu": "test cpu", "cores": 2},
        "threads": 2,
        "size": 640,
        "images": ["a.jpg 10x10"],
        "errors": [],
        "in_process": {
            "ours openvino fp32": {**summary, "p50_ms": 9.0},
            "ultralytics-openvino": {**summary, "p50_ms": 12.0},
            "ultralytics-openvino (forced f32)": {**summary, "p50_ms": 10.0},
            "ours openvino int8": {**summary, "p50_ms": 6.0},
            "ultralytics-openvino-int8": {**summary, "p50_ms": 8.0},
            "ours openvino int8, from JPEG": {**summary, "p50_ms": 6.5},
            "ultralytics-openvino-int8, from JPEG": {**summary, "p50_ms": 10.0},
            "ultralytics-openvino, from JPEG": {**summary, "p50_ms": 14.0},
        },
        "http_overhead": {
            "http_p50_ms": 7.0,
            "in_process_p50_ms": 6.2,
            "overhead_ms": 0.8,
            "http_raw_p50_ms": 6.65,
            "overhead_raw_ms": 0.45,
            "http_lean_p50_ms": 6.5,
            "overhead_lean_ms": 0.3,
            "endpoint_p50_ms": 6.4,
            "outside_endpoint_p50_ms": 0.6,
            "n": 40,
            "peer": "ultralytics-openvino-int8, from JPEG",
            "peer_p50_ms": 8.75,
        },
        "http": [
            {"service": "ours, INT8", "concurrency": 1, "p50_ms": 7.0, "throughput_rps": 100.0, "errors": 0},
            {"service": "ours, INT8", "concurrency": 4, "p50_ms": 20.0, "throughput_rps": 150.0, "errors": 0},
            {"service": "afternoon service, X", "concurrency": 1, "p50_ms": 14.0, "throughput_rps": 70.0, "errors": 0},
            {"service": "afternoon service, X", "concurrency": 4, "p50_ms": 40.0, "throughput_rps": 100.0, "errors": 0},
            {"service": "ours, INT8", "concurrency": 8, "p50_ms": 40.0, "throughput_rps": 160.0, "errors": 0},
            {"service": "afternoon service, X", "concurrency": 8, "p50_ms": 80.0, "throughput_rps": 100.0, "errors": 0},
        ],
    }


def test_ratios_against_the_targets() -> None:
    got = ratios(_report())
    assert got["ours ov fp32 / ultralytics ov fp32 (target <= 0.9)"] == 0.75
    assert got["ours ov fp32 / ultralytics ov fp32 forced to f32 (same compute precision)"] == 0.9
    assert got["http c=1 p50: ours / afternoon service (target <= 1.0)"] == 0.5
    assert got["http c=4 throughput: ours / afternoon service (target >= 1.3)"] == 1.5
    assert got["http c=8 throughput: ours / afternoon service (target >= 1.6)"] == 1.6
    # The target's line: HTTP c=1 against the faster of Ultralytics' in-process OpenVINO paths from the JPEG, timed
    # in the same interleaved blocks (7 ms against 8.75). The same bar taken from the in-process phase (its INT8
    # there, 10 ms against 14; where its FP32 (bf16) export is faster, that one), and on decoded arrays (8 ms
    # against 12), are the lines beside it.
    fastest = "http c=1 p50: ours int8 / ultralytics' fastest ov in-process"
    assert got[f"{fastest} (int8 from JPEG), interleaved (target <= 0.85)"] == 0.8
    assert got[f"{fastest} (int8 from JPEG) (across the run's phases)"] == 0.7
    assert got[f"{fastest} (int8 on decoded arrays) (stricter)"] == 0.875
    assert not [key for key in got if "target <= 0.85" in key and "interleaved" not in key]
    report = _report()
    report["in_process"]["ultralytics-openvino, from JPEG"]["p50_ms"] = 5.0
    report["in_process"]["ultralytics-openvino"]["p50_ms"] = 3.5
    report["http_overhead"] = {**report["http_overhead"], "peer": "ultralytics-openvino, from JPEG", "peer_p50_ms": 5.6}
    swapped = ratios(report)
    assert swapped[f"{fastest} (fp32/bf16 from JPEG), interleaved (target <= 0.85)"] == 1.25
    assert swapped[f"{fastest} (fp32/bf16 from JPEG) (across the run's phases)"] == 1.4
    assert swapped[f"{fastest} (fp32/bf16 on decoded arrays) (stricter)"] == 2.0
    assert f"{fastest} (int8 from JPEG) (across the run's phases)" not in swapped
    assert got["http overhead c=1 ms: ours http - ours in-process from JPEG, interleaved (target <= 2)"] == 0.8
    # the JPEG as the body (image/jpeg), timed in the same blocks: beside the targets' multipart lines, not instead
    assert got["http overhead c=1 ms, the JPEG as the body (image/jpeg)"] == 0.45
    assert got["http overhead c=1 ms, the JPEG as the body from http.client (a leaner client)"] == 0.3
    assert (
        got["http c=1 raw body p50: ours int8 / ultralytics' fastest ov in-process (int8 from JPEG), interleaved"]
        == 0.76
    )
    assert got["http c=1 p50: ours int8 / ultralytics ov int8 in-process from JPEG (target <= 1.0)"] == 0.7
    assert got["http c=1 p50: ours int8 / ultralytics ov int8 in-process on decoded arrays (stricter)"] == 0.875
    assert got["ours ov int8 / ultralytics ov int8, both from JPEG bytes"] == 0.65
    table = to_markdown({**_report(), "ratios": got})
    assert "test cpu" in table and "| ours openvino int8 | 6.0 |" in table
    assert "**0.8 ms**" in table and "ultralytics-openvino-int8, from JPEG: 8.75 ms" in table
    assert "The JPEG as the body (`image/jpeg`): 6.65 ms, **0.45 ms**." in table
    assert "`http.client` instead of httpx: 6.5 ms, **0.3 ms**" in table
    assert (
        "endpoint took 6.4 ms (`Server-Timing` total; 0.20 ms over the same work in-process) and the rest 0.6 ms"
        in table
    )


def test_the_bar_is_the_faster_of_ultralytics_openvino_paths_from_the_jpeg() -> None:
    timed = _report()["in_process"]
    assert fastest_peer(timed) == "ultralytics-openvino-int8"  # 10 ms from JPEG, its FP32 export 14
    assert fastest_peer(timed, "") == "ultralytics-openvino-int8"  # on decoded arrays: 8 ms, its FP32 export 12
    timed["ultralytics-openvino"] = {"p50_ms": 7.0}
    assert fastest_peer(timed, "") == "ultralytics-openvino"
    timed["ultralytics-openvino, from JPEG"] = {"p50_ms": 9.0}
    assert fastest_peer(timed) == "ultralytics-openvino"  # its FP32 export, computing in bf16 (AMX)
    assert fastest_peer({"ours openvino int8": {"p50_ms": 1.0}}) is None


def test_an_int8_model_is_not_silently_replaced_by_an_fp32_re_export(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from benchmarks.inputs import prepare_models
    from detector.runtime.metadata import METADATA_KEY, ModelMetadata

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    meta = ModelMetadata(names={0: "a"}, imgsz=(128, 128), precision="int8")
    model.metadata_props.add(key=METADATA_KEY, value=meta.to_json())
    path = tmp_path / "model.int8.onnx"
    onnx.save(model, str(path))
    models = prepare_models(path, [128, 640], weights=path, cache_dir=tmp_path / "cache")
    assert [v.size for v in models.variants] == [128]
    assert any("INT8" in note for note in models.notes) and not models.errors


def test_the_lean_client_reconnects_once_where_the_server_closed_and_refuses_an_error() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks.errors import BenchmarkInputError
    from benchmarks.peers import LeanClient

    seen: list[tuple[str, bytes]] = []

    class OneAnswerPerConnection(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the client keeps the connection for its next request

        def do_POST(self) -> None:
            seen.append((self.headers["Content-Type"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(500 if len(seen) == 3 else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True  # unannounced, as a server closes one idle past its keep-alive

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OneAnswerPerConnection)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with LeanClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
            client.post_jpeg(b"\xff\xd8one")
            client.post_jpeg(b"\xff\xd8two")  # on a new connection: the first was closed
            with pytest.raises(BenchmarkInputError, match="500"):
                client.post_jpeg(b"\xff\xd8three")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("image/jpeg", b"\xff\xd8one"), ("image/jpeg", b"\xff\xd8two"), ("image/jpeg", b"\xff\xd8three")]


def test_the_endpoint_s_total_is_read_from_server_timing() -> None:
    header = "read;dur=0.177, decode;dur=3.324, queue_wait;dur=0.247, inference;dur=10.814, total;dur=16.467"
    assert server_total_ms(header) == 16.467
    assert server_total_ms("") != server_total_ms("")  # NaN: a service that sends none
