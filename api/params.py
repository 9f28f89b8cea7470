"""Query parameters shared by the inference routes (the same names, ranges and docs everywhere)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

ConfQuery = Annotated[float | None, Query(ge=0, le=1, description="Confidence threshold (default: config)")]
IouQuery = Annotated[float | None, Query(ge=0, le=1, description="NMS IoU threshold (default: config)")]
MaxDetQuery = Annotated[int | None, Query(ge=1, description="Most boxes returned (default: config)")]
ClassesQuery = Annotated[
    str | None,
    Query(
        description="Only these classes: names or ids, comma-separated (e.g. `circle,square` or `0,1`); "
        "may instead be sent as `classes` in the JSON body or as a multipart text field. Unknown: 422 listing the "
        "model's classes",
        examples=["circle,square"],
    ),
]
