"""Where a served model comes from: a file path, or an MLflow registry URI (`models:/name@alias`,
`models:/name/3`) that something above the runtime resolves to a local file.

Only the types live here: the resolver itself (`detector.registry`) imports mlflow, which the serving runtime and
the API never import; the CLI injects it (like the TensorRT engine builder).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import ModelLoadError

REGISTRY_PREFIX = "models:/"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class RegistryRef:
    name: str
    alias: str | None
    version: str | None  # None until resolved when an alias was given


@dataclass(frozen=True)
class ResolvedModel:
    """A registry URI resolved to a concrete version and downloaded to `path` (a local ONNX file)."""

    uri: str
    name: str
    version: str
    alias: str | None
    path: Path
    run_id: str | None = None

    def describe(self) -> dict[str, Any]:
        """What `/model` reports under `registry` (never the tracking URI: it may hold credentials)."""
        return {"uri": self.uri, "name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id}


# registry URI -> the resolved, downloaded model; raises ModelLoadError saying what is wrong.
ModelResolver = Callable[[str], ResolvedModel]


def is_registry_uri(value: str) -> bool:
    return value.startswith(REGISTRY_PREFIX)


def parse_registry_uri(uri: str) -> RegistryRef:
    match = _URI.match(uri)
    if match is None:
        raise ModelLoadError(
            f"{uri!r} is not a registry model URI: use models:/<name>@<alias> (e.g. models:/yolo-detector@champion) "
            "or models:/<name>/<version>"
        )
    return RegistryRef(match["name"], match["alias"], match["version"])
