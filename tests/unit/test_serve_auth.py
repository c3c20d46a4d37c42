"""Who may change what the server serves (serve/auth.py), and that no answer names a server path."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lora_lab.errors import ConfigError
from lora_lab.serve.app import Settings, create_app
from lora_lab.serve.auth import ADMIN_TOKEN_ENV, check_exposure, matches, read_admin_token, read_api_tokens
from tests.helpers import TICKETS
from tests.services import wait_for

TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def root(served_jobs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter root holding a copy of the tickets job; beside it, outside, another copy."""
    base = tmp_path_factory.mktemp("roots")
    shutil.copytree(served_jobs["tickets"], base / "models" / "tickets")
    shutil.copytree(served_jobs["tickets"], base / "outside" / "tickets")
    (base / "models" / "escape").symlink_to(base / "outside" / "tickets")  # a link out of the root
    (base / "models" / "not_a_job").mkdir()
    return base


def client(served_jobs: dict[str, Path], root: Path, **settings) -> Iterator[TestClient]:
    app = create_app(Settings(adapters={"sales": str(served_jobs["sales"])}, **settings))
    with TestClient(app) as c:
        wait_for(lambda: c.get("/readyz").status_code == 200, 120, "the server to load its models")
        yield c


@pytest.fixture(scope="module")
def managed(served_jobs: dict[str, Path], root: Path) -> Iterator[TestClient]:
    yield from client(served_jobs, root, management=True, admin_token=TOKEN, adapter_roots=[str(root / "models")])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_management_is_off_by_default_and_says_how_to_turn_it_on(served_jobs, root):
    for c in client(served_jobs, root):
        put = c.put("/v1/adapters/x", json={"path": str(root / "models" / "tickets")}, headers=bearer(TOKEN))
        assert put.status_code == 403
        assert (
            "management is off" in put.json()["error"]["message"] and ADMIN_TOKEN_ENV in put.json()["error"]["message"]
        )
        assert c.delete("/v1/adapters/sales", headers=bearer(TOKEN)).status_code == 403
        assert c.get("/v1/adapters/sales").status_code == 200  # still served


def test_management_on_without_a_token_answers_403_naming_the_fix(served_jobs, root):
    for c in client(served_jobs, root, management=True, adapter_roots=[str(root / "models")]):
        put = c.put("/v1/adapters/x", json={"path": str(root / "models" / "tickets")})
        assert put.status_code == 403 and "no admin token configured" in put.json()["error"]["message"]


def test_a_missing_or_wrong_token_is_401_with_a_bearer_challenge(managed: TestClient, root: Path):
    path = {"path": str(root / "models" / "tickets")}
    for headers in ({}, bearer("wrong-token-wrong-token-wrong"), {"Authorization": f"Basic {TOKEN}"}):
        answer = managed.put("/v1/adapters/x", json=path, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"]["message"].startswith("model management needs the server's admin token")
    assert managed.delete("/v1/adapters/sales").status_code == 401
    assert managed.get("/v1/adapters/x").status_code == 404  # nothing was loaded


def test_the_token_loads_and_removes_a_model_under_the_roots(managed: TestClient, root: Path):
    loaded = managed.put("/v1/adapters/tix", json={"path": str(root / "models" / "tickets")}, headers=bearer(TOKEN))
    assert loaded.status_code == 200 and loaded.json()["name"] == "tix" and "path" not in loaded.json()
    answer = managed.post("/v1/predict", json={"text": TICKETS["refund"], "adapter": "tix"})
    assert answer.status_code == 200
    assert managed.delete("/v1/adapters/tix", headers=bearer(TOKEN)).json() == {"deleted": "tix"}


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink"])
def test_a_path_outside_the_roots_is_403_however_it_is_spelled(managed: TestClient, root: Path, where: str):
    path = {
        "outside": root / "outside" / "tickets",
        "dotdot": root / "models" / ".." / "outside" / "tickets",
        "symlink": root / "models" / "escape",
    }[where]
    answer = managed.put("/v1/adapters/x", json={"path": str(path)}, headers=bearer(TOKEN))
    assert answer.status_code == 403 and answer.json()["error"]["message"] == (
        "that path is outside the server's adapter_roots"
    )
    assert managed.get("/v1/adapters/x").status_code == 404


def test_a_failed_load_answers_without_server_paths_and_the_log_has_them_under_the_request_id(
    managed: TestClient, root: Path, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING, logger="lora_lab.serve.app"):
        answer = managed.put(
            "/v1/adapters/x",
            json={"path": str(root / "models" / "not_a_job")},
            headers={**bearer(TOKEN), "X-Request-ID": "req-42"},
        )
    body = answer.json()["error"]
    assert answer.status_code == 422 and body["request_id"] == "req-42" and answer.headers["x-request-id"] == "req-42"
    assert body["message"].startswith("could not load adapter 'x': <path>: neither a finished job")
    assert str(root) not in answer.text and "/tmp" not in answer.text
    assert any(
        "req-42" in r.getMessage() and str(root / "models" / "not_a_job") in r.getMessage() for r in caplog.records
    )
    listed = managed.get("/v1/adapters").json()
    assert listed and all("path" not in info for info in listed) and str(root) not in managed.get("/v1/adapters").text


def test_every_answer_carries_a_request_id_and_a_strange_one_is_replaced(managed: TestClient):
    made = managed.get("/healthz").headers["x-request-id"]
    assert len(made) == 16
    assert managed.get("/healthz", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"] != "a b\tc"
    missing = managed.post("/v1/predict", json={"text": "x", "adapter": "nope"}).json()["error"]
    assert missing["code"] == 404 and len(missing["request_id"]) == 16


def test_api_tokens_guard_the_prediction_routes_when_set(served_jobs, root):
    for c in client(served_jobs, root, api_tokens=["reader-one-0123456789", "reader-two-0123456789"]):
        ask = {"text": "need 40 more boxes", "adapter": "sales"}
        assert c.post("/v1/predict", json=ask).status_code == 401
        assert c.post("/v1/similar", json={"text": "x", "adapter": "sales"}).status_code == 401
        assert c.post("/v1/predict", json=ask, headers=bearer("reader-two-0123456789")).status_code == 200
        assert c.get("/v1/adapters").status_code == 200 and c.get("/readyz").status_code == 200


def test_tokens_come_from_the_environment_or_a_file_and_a_short_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    monkeypatch.delenv("LORA_LAB_API_TOKENS", raising=False)
    assert read_admin_token(None) is None and read_api_tokens(None) == []
    (tmp_path / "admin").write_text(TOKEN + "\n")
    assert read_admin_token(str(tmp_path / "admin")) == TOKEN
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-the-environment-0123")
    assert read_admin_token(str(tmp_path / "admin")) == "from-the-environment-0123"  # the environment wins
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "short")
    with pytest.raises(ConfigError, match="has 5 characters; use at least 16"):
        read_admin_token(None)
    with pytest.raises(ConfigError, match=r"api_tokens_file=.*nope: cannot read it"):
        read_api_tokens(str(tmp_path / "nope"))
    (tmp_path / "readers").write_text("one-0123456789abcdef\n\ntwo-0123456789abcdef\n")
    assert read_api_tokens(str(tmp_path / "readers")) == ["one-0123456789abcdef", "two-0123456789abcdef"]
    assert matches("two-0123456789abcdef", read_api_tokens(str(tmp_path / "readers")))
    assert not matches("two-0123456789abcdeX", ["two-0123456789abcdef"]) and not matches(None, ["x"])


def test_an_exposed_server_with_management_and_no_token_does_not_start(served_jobs, monkeypatch):
    with pytest.raises(ConfigError, match="host=0.0.0.0 with management=true and no admin token"):
        check_exposure("0.0.0.0", True, None)
    check_exposure("127.0.0.1", True, None)  # loopback: the routes answer 403 instead
    check_exposure("::1", True, None)
    check_exposure("0.0.0.0", False, None)
    check_exposure("0.0.0.0", True, TOKEN)
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    for args, says in (
        (["host=0.0.0.0", "management=true"], "error: host=0.0.0.0 with management=true and no admin token"),
        ([f"admin_token={TOKEN}"], "error: tokens are never read from the command line"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "lora_lab.serve", f"adapters.sales={served_jobs['sales']}", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
