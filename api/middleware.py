"""The shape every middleware of the service shares (admission limits, API keys, metrics): plain ASGI, HTTP only.

Plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which wraps each request in an extra task and buffers
streaming responses (the video route streams); lifespan and websocket messages pass through untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request; subclasses call `self.app` (or answer themselves)."""
        raise NotImplementedError
