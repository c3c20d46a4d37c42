"""optuna-dashboard opens a sweep's study from its study.json, offline, through its own WSGI app:
the objectives by name, every trial, the Pareto front and each trial's job dir."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from optuna_dashboard import wsgi

from lora_lab.artifacts import read_json
from tests.unit.test_sweeper_objectives import OBJECTIVES, _first_run

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _get(app, path: str) -> dict:
    """One GET through the WSGI app, as optuna-dashboard's server would pass it; the JSON body."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    assert status == ["200 OK"], (path, status, body[:500])
    return json.loads(body)


def test_optuna_dashboard_shows_the_sweeps_objectives_trials_and_front(tmp_path: Path):
    sweep = tmp_path / "sweep"
    _first_run(sweep)  # LoRA r=4, (IA)^3 r=4, (IA)^3 r=8 (a repeat of r=4's job)
    app = wsgi(read_json(sweep / "study.json")["storage"])  # what `optuna-dashboard <storage>` serves
    (summary,) = _get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "s" and summary["directions"] == ["maximize", "minimize", "minimize"]
    study = _get(app, f"/api/studies/{summary['study_id']}")
    assert study["objective_names"] == list(OBJECTIVES)  # named, not "Objective 0, 1, 2"
    assert [t["state"] for t in study["trials"]] == ["Complete"] * 3
    assert [t["values"] for t in study["trials"]][0] == [0.84, 12.0, 4000.0]
    front = sorted(t["number"] for t in study["best_trials"])
    assert front == [0, 1, 2]  # LoRA is more accurate, (IA)^3 faster and smaller: neither dominates
    job_dirs = {a["key"]: a["value"] for a in study["trials"][0]["user_attrs"]}
    assert Path(job_dirs["job_dir"]) == sweep / "0"
