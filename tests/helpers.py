"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import lora_lab.config  # noqa: F401 - registers the resolvers

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# A seconds-long job: tiny random BERT, a small synthetic set, one epoch, CSV logging.
TINY = [
    "backbone=tiny_bert",
    "dataset.n_per_class=30",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
    # The TF-IDF stack (on by default) has tests of its own (tests/unit/test_stack.py).
    "stack=none",
]

# Three support-ticket intents, each a fixed wording: a tiny model learns them in three epochs.
TICKETS = {
    "billing": "my invoice shows a double charge on the card",
    "login": "cannot log in and the password reset link is broken",
    "refund": "please send my money back for the returned order",
}


def in_ci() -> bool:
    """CI runs with CI=true (.ci/run installs every service, browser and data set the tests use)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, on a developer's machine; under CI=true fail it instead:
    a missing data dir, browser or service there is a broken CI, not a test to leave out silently."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def digest(value: object) -> str:
    """sha256 of `json.dumps(value, sort_keys=True)`: how the synthetic data sets' rows are pinned."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def compose_train(output_dir: Path, overrides: list[str] = (), config_name: str = "train") -> DictConfig:
    """Compose conf/train.yaml with overrides and point the job at output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def tiny_overrides(*overrides: str) -> list[str]:
    """TINY plus overrides; a `dataset=` override drops TINY's synthetic-set size."""
    base = (
        TINY
        if not any(o.startswith("dataset=") for o in overrides)
        else [o for o in TINY if not o.startswith("dataset.")]
    )
    return [*base, *overrides]


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Six random rows of 12 token ids over three labels, the last three right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (6, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[3:, 8:] = 0  # some right padding
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 0, 1, 2])}


def train_steps(classifier, steps: int = 3) -> None:
    """A few AdamW steps on random batches: enough to move every trainable weight."""
    classifier.train()
    params = [p for p in classifier.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    for step in range(steps):
        b = batch(step)
        loss = torch.nn.functional.cross_entropy(classifier(b["input_ids"], b["attention_mask"]), b["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad()


def logits(classifier) -> torch.Tensor:
    """The classifier's logits on a fixed held-out batch, in eval mode."""
    classifier.eval()
    with torch.no_grad():
        b = batch(99)
        return classifier(b["input_ids"], b["attention_mask"])


def save_hydra_config(cfg, run_dir: Path) -> None:
    """What Hydra does before a job runs (compose API jobs have no launcher to do it)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")


def finished_job(run_dir: Path, *overrides: str) -> Path:
    """A tiny job trained into run_dir as `python -m lora_lab.train` would (its .hydra/ config saved first)."""
    from lora_lab.train import train

    cfg = compose_train(run_dir, tiny_overrides("regime.learning_rate=5e-3", *overrides))
    save_hydra_config(cfg, run_dir)
    train(cfg)
    GlobalHydra.instance().clear()
    return run_dir


def csv_job(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny LoRA job on a CSV of tickets under a data dir of its own: (job dir, data dir)."""
    data = tmp_path / "data"
    (data / "tickets").mkdir(parents=True)
    rows = [f"{text} ({i})" for label, text in TICKETS.items() for i in range(12)]
    labels = [label for label in TICKETS for _ in range(12)]
    (data / "tickets" / "t.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(rows, labels)))
    on_csv = ["dataset=csv", f"paths.data_dir={data}", "dataset.path=${paths.data_dir}/tickets/t.csv", "regime=lora"]
    job = finished_job(tmp_path / "job", *on_csv, "dataset.val_fraction=0.25", "dataset.test_fraction=0.25")
    return job, data


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def ticket_rows(n: int = 60) -> list[dict]:
    """n support tickets (body, intent) over two intents."""
    return [
        {
            "body": f"ticket number {i} about {'billing' if i % 2 else 'login'}",
            "intent": "billing" if i % 2 else "login",
        }
        for i in range(n)
    ]


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
