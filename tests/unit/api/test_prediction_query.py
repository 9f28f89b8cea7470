"""The inference routes' query parameters, validated by `prediction_query` in one call of `PredictionQuery`, are
answered exactly as FastAPI answers the same model declared as query parameters: the same values, the same 422s,
the same documentation."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient

from api.deps import prediction_query
from api.docs import query_parameters
from api.errors import install_error_handlers
from api.schemas import PredictionQuery


def apps() -> tuple[TestClient, TestClient]:
    ours, theirs = FastAPI(), FastAPI()
    install_error_handlers(ours)
    install_error_handlers(theirs)

    @ours.post("/predict", openapi_extra=query_parameters(PredictionQuery))
    async def validated_by_us(query: Annotated[PredictionQuery, Depends(prediction_query)]) -> dict[str, Any]:
        return query.model_dump()

    @theirs.post("/predict")
    async def validated_by_fastapi(query: Annotated[PredictionQuery, Query()]) -> dict[str, Any]:
        return query.model_dump()

    return TestClient(ours), TestClient(theirs)


QUERIES = [
    "",
    "conf=0.3&classes=circle,square",
    "conf=0&iou=1&max_det=1&overlap=0",
    "tile=640x640&overlap=0.5",
    "conf_per_class=circle:0.4,square:0.6",
    "conf=0.1&conf=0.7",  # a repeated name: the last
    "unknown=1&conf=0.5",  # an unknown name: ignored
    "conf=2",
    "conf=-0.1",
    "conf=abc",
    "conf=",
    "conf=nan",
    "iou=1.5",
    "max_det=0",
    "max_det=1.5",
    "max_det=99999999999999999999999",
    "overlap=1",
    "overlap=-1",
    "tile=" + "x" * 17,
    "conf_per_class=" + "a" * 20_001,
    "conf=2&iou=2&max_det=0&overlap=5",  # several problems in one answer
    "conf=0.1&conf=2",
]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_is_answered_as_fastapi_answers_it(query: str) -> None:
    ours, theirs = apps()
    want = theirs.post(f"/predict?{query}")
    got = ours.post(f"/predict?{query}")
    assert (got.status_code, got.json()) == (want.status_code, want.json())
    assert got.status_code in (200, 422)


def test_the_bad_value_is_named_in_the_answer() -> None:
    ours, _ = apps()
    r = ours.post("/predict?conf=2")
    assert r.status_code == 422
    assert "query parameter conf" in r.json()["detail"] and "'2'" in r.json()["detail"]


def test_the_parameters_are_documented_as_fastapi_documents_them() -> None:
    ours, theirs = apps()

    def documented(client: TestClient) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["parameters"]
        return params

    assert documented(ours) == documented(theirs)
    assert [p["name"] for p in documented(ours)] == list(PredictionQuery.model_fields)
