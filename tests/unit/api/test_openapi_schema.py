"""The OpenAPI document the app serves at /openapi.json (and the docs site renders) is self-contained: every `$ref`
points at something in it. A model's `model_json_schema()` embedded by hand refers to `#/$defs/...`, which only
exists inside that model's own schema, so Swagger UI and the docs site cannot show what it points to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.app import create_app
from detector.config import load_config

REPO = Path(__file__).resolve().parents[3]


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """(`$ref` value, where it is written) for every reference in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value, where
            else:
                yield from _refs(value, f"{where}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{where}/{i}")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    """The node a local JSON pointer (`#/components/schemas/X`) names; KeyError when there is none."""
    assert ref.startswith("#/"), f"{ref} is not a reference inside the document"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_in_the_openapi_document_resolves() -> None:
    # Built as the docs site builds it (scripts/docs_hooks.py): no model is loaded, the lifespan never runs.
    document = create_app(load_config(config_dir=REPO / "configs", environ={})).openapi()
    refs = list(_refs(document))
    assert refs, "the document has no references at all: the walk is broken"
    broken = []
    for ref, where in refs:
        try:
            _resolve(document, ref)
        except (KeyError, TypeError):
            broken.append(f"{where}: {ref}")
    assert not broken, "references that point nowhere:\n" + "\n".join(broken)


def test_every_route_but_the_probes_documents_the_api_key() -> None:
    """Swagger's "Authorize" button sends `X-API-Key` on every route that takes a key (api/admission/auth.py); the
    orchestrators' probes take none."""
    document = create_app(load_config(config_dir=REPO / "configs", environ={})).openapi()
    scheme = document["components"]["securitySchemes"]["APIKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    secured = {
        (method, path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert {key for key, security in secured.items() if security is None} == {
        ("get", "/health"),
        ("get", "/livez"),
        ("get", "/readyz"),
    }
    assert all(s == [{"APIKeyHeader": []}] for s in secured.values() if s is not None)
    assert ("post", "/predict") in secured and ("post", "/admin/reload") in secured
