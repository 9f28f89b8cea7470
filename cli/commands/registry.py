"""`detector registry ...`: champion/challenger work on models named by file or registry URI. `compare` scores a
challenger against the champion offline; `promote` moves an alias (the champion) to a version once the promotion
gate passes (configs/quality.yaml; docs/pipeline.md, "Promotion gate")."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cli.main import Commands, require
from cli.output import print_json
from cli.wiring import engine_builder, model_resolver
from detector.config import BACKEND_CHOICES, Config
from detector.errors import InvalidInputError, PromotionRefusedError


def cmd_compare(args: argparse.Namespace, config: Config) -> None:
    """The offline twin of `GET /model/shadow`: both models on every image of a folder, scored by the same rule
    (`detector.runtime.agreement`), printed as the same JSON (the champion in the served model's place)."""
    from detector.data.yolo_format import IMAGE_SUFFIXES
    from detector.runtime import BackendOptions, Detector
    from detector.runtime.agreement import Agreement
    from detector.runtime.images import read_image
    from detector.runtime.model_source import is_registry_uri

    folder = args.data / "images" / args.split if (args.data / "images" / args.split).is_dir() else args.data
    if not folder.is_dir():
        raise InvalidInputError(f"--data: {args.data} is neither a dataset (images/{args.split}/) nor an image folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit or None]
    if not paths:
        raise InvalidInputError(f"--data: no {'/'.join(sorted(IMAGE_SUFFIXES))} images in {folder}")
    inf = config.inference
    backend = args.backend or inf.backend
    options = BackendOptions.from_config(config, engine_builder=engine_builder()).pinned()  # the files as given
    models: dict[str, Any] = {}
    sources: dict[str, dict[str, Any]] = {}
    for role, spec in (("champion", args.champion), ("challenger", args.challenger)):
        path, registry = spec, None
        if is_registry_uri(spec):
            resolved = model_resolver(config)(spec)
            path, registry = str(resolved.path), resolved.describe()
        models[role] = Detector.load(path, backend, options, conf=inf.conf, iou=inf.iou, max_det=inf.max_det)
        info = models[role].describe()
        version = str(registry["version"]) if registry else str(info.get("version"))
        source = spec if registry else Path(spec).name
        sources[role] = {"source": source, "version": version, "backend": info["backend"]}
    champion, challenger = models["champion"], models["challenger"]
    try:
        if champion.metadata.names != challenger.metadata.names:
            raise InvalidInputError(
                f"the models' classes differ ({list(champion.metadata.names.values())} vs "
                f"{list(challenger.metadata.names.values())}): agreement is measured between models of the same classes"
            )
        agreement = Agreement(iou=inf.shadow.iou if args.iou is None else args.iou)
        latency: dict[str, list[float]] = {"served": [], "challenger": []}
        for path in paths:
            image = read_image(path, inf.server.max_pixels)
            answers = []
            for role, det in (("served", champion), ("challenger", challenger)):
                started = time.perf_counter()
                answers.append(det.predict_batch([image])[0])
                latency[role].append((time.perf_counter() - started) * 1e3)
            agreement.update(answers[0], answers[1])
    finally:
        champion.close()
        challenger.close()
    scores = agreement.as_dict()
    print_json(
        {
            "status": "done",
            "champion": sources["champion"],
            "challenger": sources["challenger"],
            "data": str(folder),
            "samples": scores.pop("images"),
            **scores,
            "latency_ms": {f"{role}_p50": round(statistics.median(ms), 3) for role, ms in latency.items()},
        }
    )


def cmd_promote(args: argparse.Namespace, config: Config) -> None:
    require("mlflow", "train")
    from detector.evaluation.gate import check_promotion, record_from_tags
    from detector.training.promotion import promote

    mlcfg = config.train.mlflow
    shadow = fetch_shadow(args.shadow_url) if args.shadow_url else None

    def gate(version: str, candidate: dict[str, str], holder: dict[str, str] | None, label: str) -> list[str]:
        metric = mlcfg.champion_metric
        champion = None if holder is None else record_from_tags(holder, metric)
        record = record_from_tags(candidate, metric)
        return list(check_promotion(record, champion, config.quality, label, shadow, version).reasons)

    result = promote(mlcfg, gate, args.alias or mlcfg.champion_alias, version=args.version, run_id=args.run_id)
    if shadow is not None:
        result["shadow"] = {"status": shadow.status, "samples": shadow.samples, "match_rate": shadow.match_rate}
        result["shadow"] |= {"version": shadow.version} if shadow.version else {}
    print_json(result)


def fetch_shadow(url: str, timeout: float = 10.0) -> Any:
    """`GET <url>/model/shadow` of a running service, as a ShadowSample. Evidence that cannot be read refuses the
    promotion (PromotionRefusedError): the user asked for it."""
    from detector.evaluation.gate import ShadowSample

    endpoint = url.rstrip("/") + "/model/shadow"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            body = json.loads(response.read())
        status, samples = str(body["status"]), int(body["samples"])
        rate = body.get("match_rate")
        # The registry version it scores, when the challenger was loaded from the registry (a file has none).
        challenger = body.get("challenger") or {}
        from_registry = str(challenger.get("source", "")).startswith("models:/")
        version = str(challenger["version"]) if from_registry and challenger.get("version") else None
        return ShadowSample(status, samples, None if rate is None else float(rate), version)
    except urllib.error.HTTPError as exc:
        raise PromotionRefusedError(
            f"{endpoint}: HTTP {exc.code}; is shadow scoring available on that service?"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PromotionRefusedError(f"{endpoint}: cannot reach the service ({exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise PromotionRefusedError(
            f"{endpoint}: not a shadow report (expected JSON with status, samples, match_rate): {exc}"
        ) from exc


def _version(value: str) -> str:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"a version is a number, got {value!r}")
    return value


def register(commands: Commands) -> None:
    commands.group("registry", "champion/challenger: compare and promote registered models")
    p = commands.add(
        "compare",
        cmd_compare,
        "score a challenger against the champion on a folder of images (the JSON of GET /model/shadow)",
        group="registry",
        positional_overrides=False,
    )
    p.add_argument("--champion", required=True, help="ONNX file or registry URI, e.g. models:/yolo-detector@champion")
    p.add_argument("--challenger", required=True, help="ONNX file or registry URI (models:/NAME@challenger)")
    p.add_argument("--data", required=True, type=Path, help="a dataset folder (images/<split>/) or a folder of images")
    p.add_argument("--split", default="val", help="the dataset split to use (default: val)")
    p.add_argument("--limit", type=int, default=0, help="at most this many images (default: all)")
    p.add_argument("--iou", type=float, help="IoU at which same-class boxes match (default: inference.shadow.iou)")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p = commands.add(
        "promote",
        cmd_promote,
        "move the champion alias to a version if the promotion gate passes (exit 2 naming class/backend if not)",
        group="registry",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=_version, help="the model version (default: the newest)")
    which.add_argument("--run-id", help="the newest version registered from this MLflow run")
    p.add_argument("--alias", help="the alias to move (default: train.mlflow.champion_alias)")
    p.add_argument(
        "--shadow-url",
        help="a running service shadow-scoring this version (http://host:port): require quality.min_shadow_samples",
    )
