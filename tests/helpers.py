"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import csv
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Six random rows of 12 token ids over three labels, the last three right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (6, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[3:, 8:] = 0  # some right padding
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 0, 1, 2])}


def train_steps(classifier, steps: int = 3) -> None:  # noqa: ANN001
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


def logits(classifier) -> torch.Tensor:  # noqa: ANN001
    """The classifier's logits on a fixed held-out batch, in eval mode."""
    classifier.eval()
    with torch.no_grad():
        b = batch(99)
        return classifier(b["input_ids"], b["attention_mask"])


def save_hydra_config(cfg, run_dir: Path) -> None:  # noqa: ANN001
    """What Hydra does before a job runs (compose API jobs have no launcher to do it)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def ticket_rows(n: int = 60) -> list[dict]:
    """n support tickets (body, intent) over two intents."""
    return [{"body": f"ticket number {i} about {'billing' if i % 2 else 'login'}", "intent": "billing" if i % 2 else "login"}
            for i in range(n)]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:  # noqa: ANN001
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
