"""`/docs` and `/redoc` work offline: every asset they reference is served by the app itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_pages_use_only_local_assets(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert urls, f"{page} references no assets"
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from outside the app"
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_openapi_documents_both_input_forms(client: TestClient) -> None:
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
