"""lora_lab's own rows, so the recipe trains and tests on exactly the rows lora_lab uses.

The parent composes conf/train.yaml with the data overrides its lora_lab jobs get
(dataset=banking77, and shots_per_class in --quick), takes the splits from lora_lab's
DataModule and writes them to rows.json: one code path decides the rows for everyone, and the
recipe and inference workers read that file (bench.worker.read_rows) without importing
lora_lab's training stack or Hydra, so their peak RSS is their own.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import lora_lab.config  # noqa: F401 - registers the resolvers the configs use

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
ROWS_SPLITS = ("train", "test")


def compose_lab(overrides: list[str]) -> DictConfig:
    """conf/train.yaml composed with `overrides`, as `python -m lora_lab.train` would compose it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=list(overrides))


def check_data(overrides: list[str]) -> None:
    """Fail before any run when the dataset's files are missing (lora_lab's own message)."""
    source = instantiate(compose_lab(overrides).dataset)
    for relative in source.relative_files():
        source.file(relative)


def write_rows(overrides: list[str], path: Path) -> dict:
    """Write lora_lab's train and test rows (after its repairs, split and shots_per_class) and the
    settings the workers share with lora_lab (seed, max_length, eval batch size) to `path`."""
    cfg = compose_lab(overrides)
    backbone = instantiate(cfg.backbone)
    datamodule = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    datamodule.setup("fit")
    rows = {
        "overrides": list(overrides),
        "seed": int(cfg.seed),
        "max_length": int(datamodule.max_length),  # data.max_length=auto resolved on the training texts
        "eval_batch_size": int(cfg.data.eval_batch_size),
        "model_path": str(backbone.pretrained),
        **{
            name: {"texts": datamodule.splits[name].texts, "labels": datamodule.splits[name].labels}
            for name in ROWS_SPLITS
        },
    }
    path.write_text(json.dumps(rows))
    return rows
