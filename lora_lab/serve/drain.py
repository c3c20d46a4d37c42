"""Graceful drain: on SIGTERM (or Ctrl-C) stop taking work, answer what was taken, then exit.

uvicorn already does most of it: it closes the listening socket (new connections are refused),
closes idle keep-alive connections, lets in-flight requests finish for `timeout_graceful_shutdown`
(= `drain_seconds`), and only then runs the app's lifespan shutdown (which stops the batcher). What
it does not do is tell the app, so DrainingServer flips `ServerState.draining` first: `/readyz`
answers 503 at once (a balancer stops sending) and a request that still arrives on an open
connection gets 503 + `Connection: close` instead of joining the queue (app.py's middleware).
"""

from __future__ import annotations

from collections.abc import Callable
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that calls `on_exit` at the first exit signal, before uvicorn's own handling."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


def serve_until_drained(app, host: str, port: int, drain_seconds: float) -> None:
    """Run the app; on SIGTERM/SIGINT drain for at most drain_seconds, then shut down."""
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=drain_seconds)
    DrainingServer(config, on_exit=lambda: start_draining(app)).run()


def start_draining(app) -> None:
    server = getattr(app.state, "server", None)  # None: the exit came before start-up finished
    if server is not None:
        server.draining = True
