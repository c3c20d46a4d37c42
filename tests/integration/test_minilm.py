"""The embedded MiniLM really learns: a short LoRA run beats chance by a wide margin."""

from __future__ import annotations

from pathlib import Path

from lora_lab.artifacts import read_json
from lora_lab.train import train
from tests.helpers import compose_train


def test_embedded_minilm_lora_learns_the_sales_notes(tmp_path: Path):
    cfg = compose_train(
        tmp_path / "job",
        # 280 training notes, 3 epochs of batch 16 (54 steps): a larger step than the default
        # (which trains 1,400 notes) so a minute of CPU is enough.
        [
            "dataset.n_per_class=80",
            "data.batch_size=16",
            "regime.learning_rate=3e-3",
            "trainer.max_epochs=3",
            "trainer.enable_progress_bar=false",
            "logger=none",
        ],
    )
    assert cfg.backbone.name == "minilm_l6" and cfg.regime.name == "lora"  # the defaults
    train(cfg)
    metrics = read_json(tmp_path / "job" / "metrics.json")
    # 5 balanced classes: chance is 0.20.
    assert metrics["test/acc"] >= 0.55, metrics["test/acc"]
    assert metrics["test/f1_macro"] >= 0.5
    assert metrics["params/trainable_pct"] < 5
