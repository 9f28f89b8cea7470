"""`detector data generate|validate|import|tile`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.main import Commands
from cli.output import print_json
from detector.config import Config


def cmd_generate(args: argparse.Namespace, config: Config) -> None:
    from cli.stages import stage_data

    print_json(stage_data(config))


def cmd_validate(args: argparse.Namespace, config: Config) -> None:
    from detector.data import check_dataset

    root = Path(args.path) if args.path else config.data.dataset_dir
    names = check_dataset(root)
    print(f"{root}: OK ({len(names)} classes: {', '.join(names.values())})")


def cmd_import(args: argparse.Namespace, config: Config) -> None:
    from detector.data import VERSIONS
    from detector.data.importers import ImportRequest, import_dataset

    request = ImportRequest(
        format=args.format,
        version=args.version,
        root=Path(config.data.root),
        images=Path(args.images) if args.images else None,
        annotations=[Path(a) for a in args.annotations],
        source=Path(args.source) if args.source else None,
        classes=args.classes,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        keep_difficult=args.keep_difficult,
        voc_origin=args.voc_origin,
        force=args.force,
        base=args.base,
        reserved=VERSIONS,
    )
    report = import_dataset(request)
    print_json(report)
    dest = report["dataset"]
    logging.getLogger(__name__).info(
        "imported %s; version it with: uv run dvc add %s && git add %s.dvc, then train on it with: "
        "uv run dvc exp run -S configs/data.yaml:data.version=%s",
        dest,
        dest,
        dest,
        report["version"],
    )


def cmd_tile(args: argparse.Namespace, config: Config) -> None:
    from detector.data import VERSIONS
    from detector.data.tiles import tile_dataset
    from detector.errors import InvalidInputError
    from detector.runtime.tiling import Tiling

    if args.version in VERSIONS:
        raise InvalidInputError(f"--version {args.version}: that name is a generator version; choose another")
    if not 0 < args.min_visible <= 1:
        raise InvalidInputError(f"--min-visible: must be in (0, 1] (got {args.min_visible:g})")
    tiling = Tiling.parse(args.tile, args.overlap)
    summary = tile_dataset(Path(args.source), Path(config.data.root) / args.version, tiling, args.min_visible)
    print_json(
        {"dataset": str(summary.root), "tiles": summary.tiles, "objects": summary.objects, "sha256": summary.sha256}
    )


def register(commands: Commands) -> None:
    commands.group("data", "generate, import or validate datasets")
    commands.add("generate", cmd_generate, "generate the configured dataset version under data/<version>/", "data")
    p = commands.add(
        "validate", cmd_validate, "check a YOLO dataset; every problem is reported with file and line", "data"
    )
    p.add_argument("--path", help="dataset folder (default: the configured one)")
    p = commands.add(
        "import",
        cmd_import,
        "import COCO JSON, Pascal VOC XML or a YOLO folder as the dataset version data/<NAME>/ (then: dvc add "
        "data/NAME; dvc exp run -S configs/data.yaml:data.version=NAME)",
        "data",
    )
    p.add_argument("--format", required=True, choices=("coco", "voc", "yolo"), help="the source's format")
    p.add_argument("--version", required=True, metavar="NAME", help="the new dataset version: data/NAME/")
    p.add_argument("--images", metavar="DIR", help="coco, voc: the images folder")
    p.add_argument(
        "--annotations",
        action="append",
        default=[],
        metavar="PATH",
        help="coco: a JSON file (repeat it for one file per split) or a folder of them; voc: the folder of .xml files",
    )
    p.add_argument("--source", metavar="DIR", help="yolo: the dataset folder (with data.yaml or classes.txt)")
    p.add_argument("--classes", metavar="A,B,C", help="keep only these classes, in this order (default: all)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="when the source has no splits (default 0.2)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="when the source has no splits (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the made splits (default 0)")
    p.add_argument("--keep-difficult", action="store_true", help="voc: keep difficult objects (default: dropped)")
    p.add_argument(
        "--voc-origin",
        type=int,
        choices=(1, 0),
        help="voc: index of the first pixel in <bndbox>: 1 as the VOC devkit defines it (default), 0 for tools that "
        "write 0-based coordinates (CVAT/Datumaro, Label Studio, labelImg)",
    )
    p.add_argument(
        "--base",
        metavar="VERSION",
        help="add the source to the existing version data/VERSION (its images keep their splits; the source's "
        "are spread over train/val/test): the next data version after reviewing the service's inbox",
    )
    p.add_argument("--force", action="store_true", help="replace an existing data/NAME")
    p = commands.add(
        "tile",
        cmd_tile,
        "cut a dataset of big scenes into the tiles a small-object model trains on (the inference grid)",
        "data",
    )
    p.add_argument("--source", required=True, metavar="DIR", help="a YOLO dataset (e.g. data/small)")
    p.add_argument("--version", required=True, metavar="NAME", help="the tiled dataset: data/NAME/ (replaced)")
    p.add_argument("--tile", default="256x256", metavar="WxH", help="tile size in pixels (default 256x256)")
    p.add_argument("--overlap", type=float, default=0.2, help="share of a tile shared with its neighbour (0.2)")
    p.add_argument(
        "--min-visible", type=float, default=0.5, help="keep an object in a tile holding this share of its box (0.5)"
    )
