"""Every request's id, and the drain's accounting, as a pure ASGI middleware.

Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) runs the route in a task of its own and
streams the response through a memory channel, a cost on every request (docs/benchmarks.md,
"Serving"). This wraps `send` instead, as Starlette's docs describe pure ASGI middleware.

- The request id: the caller's `X-Request-ID` if it looks like one (REQUEST_ID), else a fresh one;
  kept in the scope's state (`request.state.request_id`) and echoed on the response.
- Drain (drain.py): an API request (`/v1/...`) that arrives after SIGTERM on a connection still
  open gets 503 + `Connection: close` and is not taken; every other one is counted when taken and
  when its answer has been sent, so the drain can log that the two counts match.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a caller's X-Request-ID is echoed only if it looks like one
RETRY_AFTER_S = 1


def error_response(request_id: str, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error body: {"error": {"code", "message", "request_id"}}."""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=code, headers=headers)


class RequestAccounting:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Request(scope).headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        server: Any = getattr(scope["app"].state, "server", None)
        if server is None or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send_with_id)
        elif server.draining:  # arrived on an open connection after SIGTERM: not taken
            headers = {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"}
            message = "the server is shutting down: retry on another instance"
            await error_response(request_id, 503, message, headers)(scope, receive, send_with_id)
        else:
            server.accepted += 1
            await self.app(scope, receive, send_with_id)
            server.answered += 1
