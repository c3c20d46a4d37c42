"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import csv
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
