"""The OpenAPI document behind `/docs`, `/redoc` and the docs site's HTTP reference.

The pages themselves come from `fastapi_offline.FastAPIOffline` (api/app.py): FastAPI's default pages load their
JavaScript from a CDN, which leaves `/docs` blank on an offline or firewalled host; FastAPIOffline serves the
assets it bundles from this app instead (and honours a proxy's `root_path`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.security.api_key import APIKeyBase
from pydantic import BaseModel

from api.schemas import add_documented_schemas, schema_ref

STATIC_URL = "/static-docs"  # where the Swagger UI and ReDoc assets are served


def install_documented_schemas(
    app: FastAPI, api_key: APIKeyBase | None = None, open_paths: tuple[str, ...] = ()
) -> None:
    """`app.openapi()` (served at /openapi.json, rendered by /docs and the docs site) with the component schemas of
    the models that routes document by hand (`api.schemas.schema_ref`), so every `$ref` in it resolves; with
    `api_key`, every operation but those of `open_paths` says it takes that key (Swagger's "Authorize")."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI builds the document once and caches it in `openapi_schema`
            document = generate()
            add_documented_schemas(document)
            if api_key is not None:
                add_security(document, api_key, open_paths)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def add_security(document: dict[str, Any], api_key: APIKeyBase, open_paths: tuple[str, ...]) -> None:
    """What `dependencies=[Security(api_key)]` on the routers wrote into the document, written directly: a
    dependency the middleware does not need (api/admission/auth.py checks the keys) cost every request a
    dependency to solve: 6 us warm, 0.01-0.05 ms in the service at concurrency 1 (A/B, Intel Xeon VM).
    A scheme of the same name already there (the admin key's, api/deps.py) is kept."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault(api_key.scheme_name, api_key.model.model_dump(by_alias=True, exclude_none=True))
    for path, operations in document.get("paths", {}).items():
        if path not in open_paths:
            for operation in operations.values():
                operation.setdefault("security", [{api_key.scheme_name: []}])


def request_body(
    form: type[BaseModel],
    json: type[BaseModel] | None = None,
    examples: dict[str, Any] | None = None,
    raw: str | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself (the pipeline does, api/admission/bodies.py): a
    multipart `form`, optionally a JSON alternative with its examples, and with `raw` (a media range: `image/*`,
    `video/*`) the file itself as the body, or as `application/octet-stream` (Swagger offers a file to send)."""
    content: dict[str, Any] = {"multipart/form-data": {"schema": schema_ref(form, mode="validation")}}
    if json is not None:
        content["application/json"] = {"schema": schema_ref(json, mode="validation"), "examples": examples or {}}
    if raw is not None:
        for media_type in (raw, "application/octet-stream"):
            content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for query parameters a dependency validates itself (`api.deps.prediction_query`): each
    field of `model` as FastAPI documents a declared one (its schema, with no `default` where that is None, and its
    description); FastAPI appends them to the route's own parameters."""
    schema = model.model_json_schema(mode="validation")
    parameters = []
    for name, field in model.model_fields.items():
        prop = dict(schema["properties"][name])
        if prop.get("default", 0) is None:
            del prop["default"]
        entry: dict[str, Any] = {"name": name, "in": "query", "required": field.is_required(), "schema": prop}
        if field.description:
            entry["description"] = field.description
        parameters.append(entry)
    return {"parameters": parameters}
