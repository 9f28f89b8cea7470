"""The query parameters of the inference routes (the same names, ranges and docs everywhere), checked once into the
pipeline's `Options` by one dependency, before the body is read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from api.deps import ReadyPipelineDep
from api.inference.pipeline import Options

ConfQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="Confidence threshold for every class (default: the model's per-class thresholds where it has "
        "them, see GET /model, else the configured conf)",
    ),
]
IouQuery = Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold (default: config)")]
MaxDetQuery = Annotated[int | None, Query(ge=1, description="Most boxes returned (default: config)")]
ConfPerClassQuery = Annotated[
    str | None,
    Query(
        description="Confidence threshold per class, `CLASS:CONF` pairs, comma-separated (names or ids, e.g. "
        "`circle:0.4,square:0.6`); overrides the threshold of those classes only (the others keep the model's "
        "per-class thresholds, or `conf` when given). May instead be sent as `conf_per_class` in the JSON body "
        "(an object or the same string) or as a multipart text field. Unknown class: 422",
        examples=["circle:0.4,square:0.6"],
        max_length=20_000,
    ),
]
ClassesQuery = Annotated[
    str | None,
    Query(
        description="Only these classes: names or ids, comma-separated (e.g. `circle,square` or `0,1`); "
        "may instead be sent as `classes` in the JSON body or as a multipart text field. Unknown: 422 listing the "
        "model's classes",
        examples=["circle,square"],
    ),
]


async def prediction_options(
    pipeline: ReadyPipelineDep,
    conf: ConfQuery = None,
    iou: IouQuery = None,
    max_det: MaxDetQuery = None,
    classes: ClassesQuery = None,
    conf_per_class: ConfPerClassQuery = None,
) -> Options:
    """422 for a bad value, before any body is read."""
    return pipeline.options(conf, iou, max_det, conf_per_class, classes)


OptionsDep = Annotated[Options, Depends(prediction_options)]
