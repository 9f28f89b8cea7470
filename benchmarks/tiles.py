"""Tiled inference, ours against SAHI with Ultralytics on the same model, same tiles, same merge rule.

Scenes: `--scenes` canvases of `--width` x `--height` (1920x1080), each holding validation images of the dataset
(`--data`, a YOLO-format folder) at their own size, so every object keeps the size the model was trained on and is
small in the scene; the labels come along, moved into the scene. Per scene, interleaved over `--rounds` rounds:

- ours: `Detector.predict(scene, tiles=Tiling(tile, tile, overlap, merge="nms"))`, on ONNX Runtime (the peer's
  runtime) and on OpenVINO (ours at its best, with the CLI's and the service's `hint: auto`);
- SAHI: `get_sliced_prediction(scene, AutoDetectionModel("ultralytics", the same ONNX), slice = tile, the same
  overlap, perform_standard_pred=False, postprocess_type="NMS", match metric IOU at 0.5)`: Ultralytics runs the ONNX
  on ONNX Runtime.

Prints JSON: the machine, the p50 ms per scene of each, the ratios, the share of SAHI's boxes ours matches (same
class, IoU >= 0.5) and the other way round, and the recall per class on the scenes' labels with tiles and without
(the whole scene letterboxed to the model's input, where the objects shrink below what it can see). With `--int8`,
ours on our gated INT8 model (OpenVINO) against SAHI on Ultralytics' OpenVINO INT8 export, and the boxes of both
on our INT8 file alone (ONNX Runtime): two quantizers disagree on borderline boxes, one file shows the tiling's part.
With `--openvino`, SAHI on Ultralytics' OpenVINO FP32 export, which computes at OpenVINO's default precision for the
CPU (bf16 where it has AMX: there SAHI's fastest path, ahead of its INT8 export), against ours on OpenVINO at that
precision; `fastest` names each side's fastest runner and their ratio.

    python -m benchmarks.tiles --model models/model.onnx --data data/v1 [--tile 0] [--overlap 0.2] [--scenes 3]

With `--scenes-from data/small` the scenes are that dataset's own (the `small` preset: 8-24 px objects in 1280 px
scenes, `--split test`), for a model trained on its tiles (`data/small-tiles`): the recall gain of tiling where the
objects were born small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.machine import machine_info
from detector.config import OpenVinoConfig
from detector.runtime import BackendOptions, Detector, Timings
from detector.runtime.detections import Detections
from detector.runtime.precision import native_bf16
from detector.runtime.tiling import Tiling

MATCH_IOU = 0.5


def scenes(data: Path, count: int, width: int, height: int, seed: int = 0) -> list[tuple[npt.NDArray[np.uint8], Any]]:
    """`count` scenes of validation images pasted without overlap on a grey canvas, with their labels in scene
    pixels: (image, array of [class, x1, y1, x2, y2])."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = sorted((data / "images" / "val").glob("*.jpg"))
    out = []
    for _ in range(count):
        canvas = np.full((height, width, 3), 128, np.uint8)
        labels: list[list[float]] = []
        picks = rng.permutation(len(paths))
        x = y = row_h = 0
        for i in picks:
            img = np.asarray(Image.open(paths[i]).convert("RGB"))
            h, w = img.shape[:2]
            gap = int(rng.integers(w // 2, 2 * w))  # objects spread out: mostly background, as small objects are
            if x + w > width:
                x, y, row_h = 0, y + row_h + int(rng.integers(h // 2, 2 * h)), 0
            if y + h > height:
                break
            canvas[y : y + h, x : x + w] = img
            label_file = data / "labels" / "val" / f"{paths[i].stem}.txt"
            for line in label_file.read_text().splitlines():
                c, cx, cy, bw, bh = (float(v) for v in line.split())
                labels.append(
                    [c, x + (cx - bw / 2) * w, y + (cy - bh / 2) * h, x + (cx + bw / 2) * w, y + (cy + bh / 2) * h]
                )
            x, row_h = x + w + gap, max(row_h, h)
        out.append((canvas, np.asarray(labels, np.float64).reshape(-1, 5)))
    return out


def dataset_scenes(data: Path, split: str, count: int) -> list[tuple[npt.NDArray[np.uint8], Any]]:
    """The first `count` images of a dataset split as they are, with their labels in pixels (as `scenes`)."""
    from PIL import Image

    from detector.data.yolo_format import label_path, list_split_images, read_label_file

    out = []
    for path in list_split_images(data, split)[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        h, w = image.shape[:2]
        labels, _ = read_label_file(label_path(data, split, path))
        rows = [[lb.cls, *lb.xyxy(w, h)] for lb in labels]
        out.append((image, np.asarray(rows, np.float64).reshape(-1, 5)))
    if not out:
        raise SystemExit(f"--scenes-from: no images in {data / 'images' / split}")
    return out


def _iou(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9), np.float64)


def matched(found: tuple[npt.NDArray[Any], npt.NDArray[Any]], want: tuple[npt.NDArray[Any], npt.NDArray[Any]]) -> int:
    """How many of `want`'s boxes (boxes, classes) have a box of `found` of their class at IoU >= 0.5."""
    (fb, fc), (wb, wc) = found, want
    if not len(fb) or not len(wb):
        return 0
    ious = _iou(wb, fb) * (wc[:, None] == fc[None, :])
    return int((ious.max(axis=1) >= MATCH_IOU).sum())


def _boxes(d: Detections) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    return d.xyxy.astype(np.float64), d.class_id.astype(np.int64)


def _sahi_boxes(result: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    preds = result.object_prediction_list
    boxes = np.asarray([p.bbox.to_xyxy() for p in preds], np.float64).reshape(-1, 4)
    return boxes, np.asarray([p.category.id for p in preds], np.int64)


def measure(
    model: Path,
    data: Path,
    tile: int,
    overlap: float,
    count: int,
    rounds: int,
    conf: float,
    scenes_from: Path | None = None,
    split: str = "test",
    int8: tuple[Path, Path] | None = None,
    openvino_export: Path | None = None,
) -> dict[str, Any]:
    """`int8`: (our INT8 ONNX, Ultralytics' OpenVINO INT8 export) of the same weights, for a second pair at that
    precision: ours on OpenVINO against SAHI with Ultralytics on its OpenVINO export; and the boxes of both on our
    INT8 file on ONNX Runtime (`same_file_onnxruntime`), which tells the tiling's agreement from the quantizers'.

    `openvino_export`: Ultralytics' OpenVINO FP32 export of the same weights, which computes at OpenVINO's default
    precision for the CPU (bf16 on one with AMX or AVX512-BF16: SAHI's fastest path there, ahead of the INT8
    export), against ours on OpenVINO at that same precision. `fastest` in the result: each side's fastest runner."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    pictures = dataset_scenes(scenes_from, split, count) if scenes_from else scenes(data, count, 1920, 1080)
    height, width = pictures[0][0].shape[:2]
    with contextlib.ExitStack() as stack:
        ort = stack.enter_context(Detector.load(model, backend="onnxruntime"))
        # OpenVINO as `detector predict --tile` and the service load it (configs/inference.yaml's `hint: auto`): a
        # tile batch alone runs in equal parts, one on each throughput stream.
        auto = BackendOptions(openvino=OpenVinoConfig(hint="auto"))
        ov = stack.enter_context(Detector.load(model, backend="openvino", options=auto))
        imgsz = int(ort.input_shape[0])
        size = tile or imgsz
        tiling = Tiling(size, size, overlap=overlap, merge="nms", match_threshold=0.5)

        def sahi_on(path: Path) -> Callable[[npt.NDArray[np.uint8]], Any]:
            # image_size: each slice letterboxed to the model's input, as ours does (Ultralytics' default: 640).
            peer = AutoDetectionModel.from_pretrained(
                model_type="ultralytics",
                model_path=str(path),
                confidence_threshold=conf,
                device="cpu",
                image_size=imgsz,
            )
            return lambda image: get_sliced_prediction(
                image,
                peer,
                slice_height=size,
                slice_width=size,
                overlap_height_ratio=overlap,
                overlap_width_ratio=overlap,
                perform_standard_pred=False,
                postprocess_type="NMS",
                postprocess_match_metric="IOU",
                postprocess_match_threshold=0.5,
                verbose=0,
            )

        ours: dict[str, Detector] = {"ours_onnxruntime": ort, "ours_openvino": ov}
        sahi = {"sahi_ultralytics_onnxruntime": sahi_on(model)}
        pairs = {"fp32": ("ours_onnxruntime", "sahi_ultralytics_onnxruntime")}
        their_precision = ""
        if openvino_export is not None:
            # Ultralytics compiles its export with no precision hint: OpenVINO's default for the CPU. Ours at the
            # same precision, so the pair compares tiling and runtime, not arithmetic.
            their_precision = "bf16" if native_bf16() and _openvino_default_is_bf16() else "f32"
            same_precision = "ours_openvino"  # f32: the runner above
            if their_precision == "bf16":
                same_precision = "ours_openvino_bf16"
                bf16 = BackendOptions(openvino=OpenVinoConfig(hint="auto", precision="bf16"))
                ours[same_precision] = stack.enter_context(Detector.load(model, backend="openvino", options=bf16))
            sahi["sahi_ultralytics_openvino"] = sahi_on(openvino_export)
            pairs["openvino"] = (same_precision, "sahi_ultralytics_openvino")
        if int8 is not None:
            ours["ours_openvino_int8"] = stack.enter_context(Detector.load(int8[0], backend="openvino", options=auto))
            sahi["sahi_ultralytics_openvino_int8"] = sahi_on(int8[1])
            pairs["int8"] = ("ours_openvino_int8", "sahi_ultralytics_openvino_int8")
        times, network, answers = _interleaved(ours, sahi, pictures, tiling, conf, rounds)
        names = {int(k): str(v) for k, v in ort.describe()["names"].items()}
        agreement = {precision: _agreement(answers[a], answers[b]) for precision, (a, b) in pairs.items()}
        if int8 is not None:
            # Two INT8 models from two quantizers (ours: NNCF on the ONNX; Ultralytics': NNCF on its OpenVINO IR)
            # disagree on borderline boxes whatever the tiling does. SAHI with Ultralytics on our INT8 file, on ONNX
            # Runtime as ours there, separates the two: what differs then is the tiling and merging alone. One
            # untimed pass (ONNX Runtime runs this Q/DQ model slower than OpenVINO: not a speed pair).
            ort8 = stack.enter_context(Detector.load(int8[0], backend="onnxruntime"))
            sahi8 = sahi_on(int8[0])
            same = [(ort8.predict(im, conf=conf, tiles=tiling), sahi8(im)) for im, _ in pictures]
            agreement["int8_same_file"] = _agreement([o for o, _ in same], [t for _, t in same])
        recall = _recall(ort, pictures, tiling, conf, names)
    p50 = {name: round(statistics.median(v), 1) for name, v in times.items()}
    network_p50 = {name: round(statistics.median(v), 1) for name, v in network.items()}
    result = {
        "machine": machine_info(),
        "settings": {
            "tile": size,
            "overlap": overlap,
            "scenes": len(pictures),
            "scene_size": [width, height],
            "scenes_from": f"{scenes_from}/{split}" if scenes_from else f"{data}/val pasted on 1920x1080",
            "rounds": rounds,
            "conf": conf,
            "merge": "nms",
        },
        "p50_ms_per_scene": p50,
        "network_p50_ms_per_scene": network_p50,
        # Per pair, SAHI's time over our network's alone: the ratio a tiler with no cost of its own would reach on
        # our model and runtime. Where it is under a target, the network is what falls short, not the tiling.
        "ceiling_sahi_over_our_network": {
            pair: round(p50[theirs] / network_p50[mine], 2) for pair, (mine, theirs) in pairs.items()
        },
        "sahi_over_ours_onnxruntime": round(p50["sahi_ultralytics_onnxruntime"] / p50["ours_onnxruntime"], 2),
        "sahi_over_ours_openvino": round(p50["sahi_ultralytics_onnxruntime"] / p50["ours_openvino"], 2),
        "tiles_per_scene": len(tiling.grid(width, height)),
        "objects": int(sum(len(labels) for _, labels in pictures)),
        **agreement["fp32"],
        "recall": recall,
    }
    if "openvino" in agreement:
        ours_name, theirs_name = pairs["openvino"]
        result["openvino"] = {
            "precision": their_precision,
            "sahi_openvino_over_ours_openvino": round(p50[theirs_name] / p50[ours_name], 2),
            **agreement["openvino"],
        }
    ours_best = min((n for n in p50 if n.startswith("ours")), key=p50.__getitem__)
    sahi_best = min((n for n in p50 if n.startswith("sahi")), key=p50.__getitem__)
    # Against the strongest SAHI path a user could run here, whichever precision it is (bf16 beats INT8 on AMX).
    result["fastest"] = {
        "ours": ours_best,
        "sahi": sahi_best,
        "sahi_over_ours": round(p50[sahi_best] / p50[ours_best], 2),
    }
    if "int8" in agreement:
        result["int8"] = {
            "sahi_openvino_int8_over_ours_openvino_int8": round(
                p50["sahi_ultralytics_openvino_int8"] / p50["ours_openvino_int8"], 2
            ),
            **agreement["int8"],
            "same_file_onnxruntime": agreement["int8_same_file"],
        }
    return result


def _interleaved(
    ours: dict[str, Detector],
    sahi: dict[str, Callable[[npt.NDArray[np.uint8]], Any]],
    pictures: list[tuple[npt.NDArray[np.uint8], Any]],
    tiling: Tiling,
    conf: float,
    rounds: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[Any]]]:
    """Every runner on every scene, `rounds` times in alternating order, after a warm-up: the ms per scene, ours'
    network ms per scene (`Timings.inference_ms`, the backend calls alone: SAHI's time over it is the most any
    tiler could gain on that model and runtime), and the first round's answers."""
    network: dict[str, list[float]] = {name: [] for name in ours}

    def run(name: str, image: npt.NDArray[np.uint8]) -> Any:
        if name not in ours:
            return sahi[name](image)
        spent = Timings()
        found = ours[name].predict(image, conf=conf, tiles=tiling, timings=spent)
        network[name].append(spent.inference_ms)
        return found

    runners = [*ours, *sahi]
    for _ in range(2):  # warm-up: sessions, compilations, lazy imports; the second asks for the stream models
        for name in runners:
            run(name, pictures[0][0])
    for detector in ours.values():
        detector.backend.settle()  # OpenVINO's compilations done before the timed rounds
    for samples in network.values():
        samples.clear()
    times: dict[str, list[float]] = {name: [] for name in runners}
    answers: dict[str, list[Any]] = {name: [] for name in runners}
    for r in range(rounds):
        for name in runners if r % 2 == 0 else reversed(runners):
            for image, _ in pictures:
                started = time.perf_counter()
                answer = run(name, image)
                times[name].append((time.perf_counter() - started) * 1e3)
                if r == 0:
                    answers[name].append(answer)
    return times, network, answers


def _openvino_default_is_bf16() -> bool:
    import openvino as ov

    return bool(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.bf16)


def _agreement(ours: list[Detections], theirs: list[Any]) -> dict[str, Any]:
    """How many of SAHI's boxes ours matches (same class, IoU >= 0.5), and the other way round."""
    sahi_total = sum(len(t.object_prediction_list) for t in theirs)
    ours_total = sum(len(o) for o in ours)
    agree = sum(matched(_boxes(o), _sahi_boxes(t)) for o, t in zip(ours, theirs, strict=True))
    ours_agree = sum(matched(_sahi_boxes(t), _boxes(o)) for o, t in zip(ours, theirs, strict=True))
    return {
        "sahi_boxes_matched_by_ours": round(agree / max(1, sahi_total), 4),
        "sahi_boxes": sahi_total,
        "our_boxes_matched_by_sahi": round(ours_agree / max(1, ours_total), 4),
        "our_boxes": ours_total,
    }


def _recall(
    det: Detector,
    pictures: list[tuple[npt.NDArray[np.uint8], Any]],
    tiling: Tiling,
    conf: float,
    names: dict[int, str],
) -> dict[str, dict[str, float]]:
    """Per class: the share of labelled objects found (same class, IoU >= 0.5) with tiles and without."""
    out: dict[str, dict[str, float]] = {}
    for label, tiles in (("with_tiles", tiling), ("without_tiles", None)):
        hits: dict[int, int] = {}
        totals: dict[int, int] = {}
        for image, labels in pictures:
            found = _boxes(det.predict(image, conf=conf, tiles=tiles))
            for c in np.unique(labels[:, 0]).astype(int):
                want = labels[labels[:, 0] == c]
                totals[c] = totals.get(c, 0) + len(want)
                hits[c] = hits.get(c, 0) + matched(found, (want[:, 1:], np.full(len(want), c)))
        for c, total in totals.items():
            out.setdefault(names.get(c, str(c)), {})[label] = round(hits[c] / total, 3)
    return out


def main() -> None:  # pragma: no cover - a manual benchmark; tests/integration/benchmarks runs `measure`
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tiles", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--data", type=Path, default=Path("data/v1"), help="a YOLO-format dataset with images/val")
    parser.add_argument("--tile", type=int, default=0, help="tile side in px (default: the model's input size)")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--scenes-from", type=Path, help="a dataset of big scenes (data/small) instead of pasted ones")
    parser.add_argument("--split", default="test", help="its split (default test)")
    parser.add_argument("--out", type=Path, help="also write the JSON here (e.g. reports/tiles.json)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also ours on our INT8 model (OpenVINO) against SAHI on Ultralytics' OpenVINO INT8 export (made, cached)",
    )
    parser.add_argument(
        "--openvino",
        action="store_true",
        help="also SAHI on Ultralytics' OpenVINO FP32 export (made, cached; OpenVINO's default precision for the CPU)"
        " against ours on OpenVINO at that precision",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/benchmarks"))
    args = parser.parse_args()
    int8, refused, openvino_export = None, "", None
    if args.int8 or args.openvino:
        from benchmarks.peers import our_int8, ultralytics_openvino
        from detector.errors import AccuracyGateError
        from detector.runtime.metadata import read_onnx_metadata

        meta = read_onnx_metadata(args.model)
        calibration = Path("data") / (meta.dataset_version or "v1")  # the model's own training data
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        weights = args.model.parent / "best.pt"
        if args.openvino:
            openvino_export = ultralytics_openvino(weights, meta.imgsz[0], False, calibration, args.cache_dir)
        if args.int8:
            try:
                int8 = (
                    our_int8(args.model, calibration, args.cache_dir),
                    ultralytics_openvino(weights, meta.imgsz[0], True, calibration, args.cache_dir),
                )
            except AccuracyGateError as exc:  # no INT8 model of ours to compare: said in the output; FP32 measured
                refused = str(exc)
    result = measure(
        args.model,
        args.data,
        args.tile,
        args.overlap,
        args.scenes,
        args.rounds,
        args.conf,
        args.scenes_from,
        args.split,
        int8,
        openvino_export,
    )
    if refused:
        result["int8"] = {"refused": refused}
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":  # pragma: no cover
    main()
