"""How commands print results: JSON on stdout, so scripts can read it (logs go to stderr)."""

from __future__ import annotations

import json
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
