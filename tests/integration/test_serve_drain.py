"""SIGTERM under load: every request the server took is answered (serve/drain.py).

A real `python -m lora_lab.serve` process on a loopback port, 32 clients on keep-alive
connections, then SIGTERM. The server logs how many API requests it took and answered; the
clients count their 200s. Equal counts mean no taken request was lost: whatever else a client
saw (connection refused, 503, a keep-alive connection closed before it was read) is a request
the server never took. No timing is assumed: every wait is on an event, with generous limits.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from lora_lab.serve.app import Settings, create_app
from tests.helpers import TICKETS, free_port
from tests.services import wait_for

CLIENTS = 32


def test_sigterm_under_load_answers_every_request_the_server_took(served_jobs: dict[str, Path], tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "lora_lab.serve", f"adapters.tickets={served_jobs['tickets']}", f"port={port}"]
        + ["drain_seconds=300", "max_wait_ms=2"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 300, "the server to load its model")
        outcomes: Counter[str] = Counter()
        lock, enough = threading.Lock(), threading.Event()

        def client(i: int) -> None:
            body = {"text": f"{TICKETS['refund']} ({i})", "adapter": "tickets"}
            with httpx.Client(timeout=300) as c:  # one keep-alive connection, reopened after a close
                while True:
                    try:
                        outcome = str(c.post(f"{url}/v1/predict", json=body).status_code)
                    except httpx.ConnectError:
                        outcome = "refused"
                    except (httpx.RemoteProtocolError, httpx.ReadError):
                        outcome = "closed before an answer"
                    with lock:
                        outcomes[outcome] += 1
                        if outcomes["200"] >= 4 * CLIENTS:
                            enough.set()
                    if outcome in ("refused", "503"):
                        return

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        assert enough.wait(600), f"the load never reached {4 * CLIENTS} answers: {outcomes}"
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down: the exit status is SIGTERM's own.
        assert server.wait(timeout=600) in (0, -signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a client is still waiting after the server exited"
    finally:
        if server.poll() is None:
            server.kill()
    text = (tmp_path / "server.log").read_text()
    drained = re.search(r"drained: (\d+) requests accepted, (\d+) answered", text)
    assert drained, text[-3000:]
    accepted, answered = map(int, drained.groups())
    print(f"drain: {accepted} taken, {answered} answered; the clients saw {dict(outcomes)}")  # pytest -s
    assert accepted == answered == outcomes["200"], (accepted, answered, outcomes)
    assert set(outcomes) <= {"200", "503", "refused", "closed before an answer"}, outcomes
    assert "Traceback" not in text


def test_draining_turns_readyz_503_at_once_and_refuses_new_work(served_jobs: dict[str, Path]):
    with TestClient(create_app(Settings(adapters={"tickets": str(served_jobs["tickets"])}))) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, 120, "the server to load its model")
        c.app.state.server.draining = True  # what drain.py's DrainingServer does at SIGTERM
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["message"] == "draining: shutting down"
        refused = c.post("/v1/predict", json={"text": TICKETS["refund"], "adapter": "tickets"})
        assert refused.status_code == 503 and refused.headers["connection"] == "close"
        assert refused.headers["retry-after"] == "1" and "shutting down" in refused.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200  # alive while it drains
