"""`Server-Timing` (W3C): the response's `timings_ms` as a header, so browser dev tools and proxies show them.

`Server-Timing: read;dur=0.1, decode;dur=0.6, queue_wait;dur=0.1, preprocess;dur=0.3, inference;dur=9, ...`
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"[^A-Za-z0-9!#$%&'*+.^_`|~-]")  # metric names are HTTP tokens


def server_timing(timings_ms: Mapping[str, float]) -> str:
    """One `name;dur=ms` entry per stage, in the order of `timings_ms`."""
    return ", ".join(f"{_TOKEN.sub('_', name)};dur={float(ms):g}" for name, ms in timings_ms.items())


def timing_headers(timings_ms: Mapping[str, float], **extra: str) -> dict[str, str]:
    return {"Server-Timing": server_timing(timings_ms), **extra}
