"""API keys, scopes, per-key rate limits and daily quotas, and the audit log of admin actions.

Off while no key is configured (`inference.server.auth.keys` / `keys_file`): the local demo needs nothing. With
keys, every endpoint but `/health` (left open for orchestrators' probes) needs one, sent as `X-API-Key: <key>` or
`Authorization: Bearer <key>`:
- 401 + `WWW-Authenticate` without a key or with an unknown one;
- 403 when the key lacks the endpoint's scope: `predict` for `/predict*`, `metrics` for `/metrics`, `admin` for
  `/admin/*`; any valid key for the rest (`/model`, `/docs`, `/openapi.json`);
- 429 + `Retry-After` past the key's rate (a token bucket: `burst` at once, `rate_per_minute` sustained) or its
  daily quota (requests per UTC day; Retry-After: the seconds until midnight UTC).

Checked in a pure ASGI middleware, from the headers alone: a request without a valid key is refused before its
body is read (a 10 MB upload from a stranger costs nothing). Keys are stored as their SHA-256, never in clear: an
API key is a 256-bit random token, so a fast hash is enough (passwords need a slow one; these are not guessable).
The OpenAPI schema declares the header with FastAPI's `APIKeyHeader`, so Swagger UI's "Authorize" sends it.

The limiter is a few lines here rather than a library (`limits`/`slowapi`): those count fixed or moving windows
from a request's time, not quotas that reset at midnight UTC, and the serving image stays one dependency smaller.
State is per process (one worker: `inference.server.workers`); replicas behind a load balancer each count their own.

Every request under `/admin` is written to the audit log: who (key name, client address), what (method, path and
what the route says it did), when (UTC), result (status).

`python -m api.admission.auth new NAME --scopes predict,metrics` makes a key: it prints the key once, and the entry to
paste into the configuration (or the keys file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.middleware import HttpMiddleware
from detector.config import ApiKeyConfig, AuthConfig
from detector.errors import ConfigError

log = logging.getLogger("api.admission.auth")
audit_log = logging.getLogger("api.audit")

# For the OpenAPI schema (Swagger's "Authorize" button); the middleware below does the checking.
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key (inference.server.auth); not needed for /health, /livez, /readyz",
)
OPEN_PATHS = ("/health", "/livez", "/readyz")  # orchestrators' probes carry no key
AUDIT_STATE = "audit"  # scope["state"][AUDIT_STATE]: what an admin route did, for the audit line


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def required_scope(path: str) -> str | None:
    """The scope a path needs: "predict", "metrics", "admin", "" (any valid key) or None (open)."""
    if path in OPEN_PATHS:
        return None
    if path == "/predict" or path.startswith("/predict/"):
        return "predict"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/admin"):
        return "admin"
    return ""


def load_keys(auth: AuthConfig) -> list[ApiKeyConfig]:
    """The configured keys plus those of `keys_file`; ConfigError for an unreadable file or a duplicate name."""
    keys = list(auth.keys)
    if auth.keys_file:
        try:
            data = yaml.safe_load(Path(auth.keys_file).read_text()) or {}
            keys += [ApiKeyConfig.model_validate(k) for k in (data.get("keys") or [])]
        except (OSError, yaml.YAMLError, ValueError, AttributeError) as exc:
            raise ConfigError(f"inference.server.auth.keys_file {auth.keys_file}: {exc}") from exc
    names = [k.name for k in keys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"inference.server.auth: API key names must be unique; repeated: {', '.join(duplicates)}")
    return keys


@dataclass
class _Usage:
    tokens: float
    updated: float
    day: dt.date
    used_today: int = 0


@dataclass
class KeyRing:
    """The keys by hash, and each key's usage. `clock` (seconds) and `today` are injectable for tests."""

    keys: list[ApiKeyConfig]
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    _by_hash: dict[str, ApiKeyConfig] = field(init=False)
    _usage: dict[str, _Usage] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_hash = {k.sha256: k for k in self.keys}

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def find(self, presented: str) -> ApiKeyConfig | None:
        digest = hash_key(presented)
        for known, key in self._by_hash.items():  # compare_digest on each: no early exit to time
            if secrets.compare_digest(known, digest):
                return key
        return None

    def charge(self, key: ApiKeyConfig) -> tuple[str, int] | None:
        """Count one request; None when it is allowed, else (why, seconds to wait)."""
        now, today = self.clock(), self.now()
        usage = self._usage.get(key.name)
        if usage is None:
            usage = self._usage[key.name] = _Usage(float(key.burst), now, today.date())
        if usage.day != today.date():  # a new UTC day: the quota starts again
            usage.day, usage.used_today = today.date(), 0
        if key.rate_per_minute > 0:
            per_s = key.rate_per_minute / 60
            usage.tokens = min(float(key.burst), usage.tokens + (now - usage.updated) * per_s)
            usage.updated = now
            if usage.tokens < 1:
                return "rate", max(1, math.ceil((1 - usage.tokens) / per_s))
        if key.daily_quota and usage.used_today >= key.daily_quota:
            midnight = dt.datetime.combine(today.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
            return "quota", max(1, math.ceil((midnight - today).total_seconds()))
        if key.rate_per_minute > 0:
            usage.tokens -= 1
        usage.used_today += 1
        return None


def presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        text = bytes(value).decode("latin-1")
        if name == b"x-api-key":
            return text.strip() or None
        if name == b"authorization":
            kind, _, token = text.partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AuthMiddleware(HttpMiddleware):
    """Keys, scopes and limits for every HTTP request (see the module docstring), and the admin audit log."""

    def __init__(self, app: ASGIApp, ring: KeyRing, admin_key_set: bool = False) -> None:
        super().__init__(app)
        self.ring = ring
        self.admin_key_set = admin_key_set  # the legacy inference.server.admin_api_key (checked by the route)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        needed = required_scope(path)
        auditing = path.startswith("/admin")
        who = "-"
        if self.ring.enabled and needed is not None:
            presented = presented_key(scope)
            key = self.ring.find(presented) if presented else None
            refusal: tuple[int, str, dict[str, str]] | None = None
            if key is None:
                what = "missing API key" if not presented else "unknown API key"
                refusal = (
                    401,
                    f"{what}: send it as X-API-Key or Authorization: Bearer",
                    {"WWW-Authenticate": "Bearer"},
                )
            else:
                who = key.name
                if needed and needed not in key.scopes:
                    refusal = (403, f"this API key may not use {path} (it needs the '{needed}' scope)", {})
                elif (limited := self.ring.charge(key)) is not None:
                    why, wait_s = limited
                    detail = (
                        f"API key '{key.name}' is over its rate of {key.rate_per_minute:g} requests a minute"
                        if why == "rate"
                        else f"API key '{key.name}' has used its daily quota of {key.daily_quota} requests"
                    )
                    refusal = (429, f"{detail}; retry after {wait_s} s", {"Retry-After": str(wait_s)})
            if refusal is not None:
                status, detail, headers = refusal
                if auditing:
                    self._audit(scope, who, status)
                await error_response(status, detail, headers)(scope, receive, send)
                return
            scope.setdefault("state", {})["api_key"] = key
        if not auditing:
            await self.app(scope, receive, send)
            return
        status_seen = [500]

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if who == "-" and not self.ring.enabled and self.admin_key_set:
                who = "admin_api_key"
            self._audit(scope, who, status_seen[0])

    @staticmethod
    def _audit(scope: Scope, who: str, status: int) -> None:
        client = scope.get("client")
        record: dict[str, Any] = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "client": client[0] if client else None,
            "what": f"{scope.get('method', '')} {scope.get('path', '')}",
            "result": status,
        }
        done = scope.get("state", {}).get(AUDIT_STATE)
        if done:
            record["action"] = done
        audit_log.info(json.dumps(record))


def install_audit_file(path: str) -> None:
    """Also append the audit lines to `path` (JSON lines), once per process."""
    if not path:
        return
    resolved = str(Path(path).resolve())
    if any(getattr(h, "baseFilename", None) == resolved for h in audit_log.handlers):
        return
    Path(resolved).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(resolved, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit_log.addHandler(handler)
    audit_log.setLevel(logging.INFO)


def new_key(name: str, scopes: Sequence[str], rate_per_minute: float, daily_quota: int) -> tuple[str, dict[str, Any]]:
    """A fresh key and its configuration entry (holding only its hash)."""
    key = "det_" + secrets.token_urlsafe(32)
    entry = {
        "name": name,
        "sha256": hash_key(key),
        "scopes": list(scopes),
        "rate_per_minute": rate_per_minute,
        "daily_quota": daily_quota,
    }
    ApiKeyConfig.model_validate(entry)
    return key, entry


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - a small CLI over new_key
    parser = argparse.ArgumentParser(
        prog="python -m api.admission.auth", description="Make an API key for the service."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new", help="print a new key (once) and its configuration entry")
    make.add_argument("name")
    make.add_argument("--scopes", default="predict", help="comma-separated: predict, metrics, admin")
    make.add_argument("--rate-per-minute", type=float, default=600.0)
    make.add_argument("--daily-quota", type=int, default=0)
    args = parser.parse_args(argv)
    key, entry = new_key(args.name, args.scopes.split(","), args.rate_per_minute, args.daily_quota)
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print("entry for inference.server.auth.keys (or the keys_file's `keys:` list):")
    print(yaml.safe_dump([entry], sort_keys=False), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
