"""Show what a job would train on: python -m lora_lab.data dataset=<name> [backbone=...] [format=json].

Split sizes, labels with counts, text lengths in tokens for the backbone's tokenizer, examples
of each class, and every problem loading found or repaired.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.config import CONF_DIR  # also registers the resolvers
from lora_lab.errors import ConfigError

if TYPE_CHECKING:  # instantiate() imports it (and Lightning) when the data is read, not for --help
    from lora_lab.data.datamodule import TextClassificationDataModule


def summarize(dm: TextClassificationDataModule, examples_per_class: int) -> dict:
    """The JSON form: splits, num_labels, label_counts, token_length percentiles of the texts as written
    (before truncation), max_length and how longer texts are cut, examples, problems."""
    out: dict = {
        "dataset": dm.source.name,
        "splits": {},
        "num_labels": len(dm.labels),
        "label_counts": {},
        "token_length": {},
        "truncation": dm.truncation.as_dict(),
        "truncated_share": dm.truncated,
        "examples": {},
        "problems": dm.problems,
    }
    for name, split in dm.splits.items():
        out["splits"][name] = len(split)
        out["label_counts"][name] = split.label_counts()
        lengths = np.array(dm.full_lengths[name])
        out["token_length"][name] = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)} | {
            "max": int(lengths.max())
        }
    train = dm.splits["train"]
    for label in dm.labels:
        out["examples"][label] = [t for t, y in zip(train.texts, train.labels) if y == label][:examples_per_class]
    return out


def render(summary: dict) -> str:
    lines = [f"dataset {summary['dataset']}: {summary['num_labels']} labels"]
    for name, n in summary["splits"].items():
        tl = summary["token_length"][name]
        lines.append(
            f"  {name:<10} {n:>7,} rows   tokens p50 {tl['p50']}, p90 {tl['p90']}, p99 {tl['p99']}, max {tl['max']}"
            f"   {summary['truncated_share'][name]:.1%} longer than max_length"
        )
    cut = summary["truncation"]
    lines.append(
        f"max_length {cut['max_length']} tokens, truncation {cut['truncation']}"
        + (f" (head_tokens {cut['head_tokens']})" if cut["head_tokens"] is not None else "")
    )
    lines.append("labels (train / validation / test):")
    for label in summary["examples"]:
        counts = " / ".join(str(summary["label_counts"][s].get(label, 0)) for s in summary["splits"])
        lines.append(f"  {label:<40} {counts}")
    lines.append("examples:")
    for label, texts in summary["examples"].items():
        lines += [f"  [{label}] {t[:160]}" for t in texts]
    lines.append("problems:" if summary["problems"] else "problems: none found")
    lines += [f"  - {p}" for p in summary["problems"]]
    return "\n".join(lines)


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="inspect")
@report_user_errors
def main(cfg: DictConfig) -> None:
    if cfg.format not in ("text", "json"):
        raise ConfigError(f"format={cfg.format!r}: use text or json")
    backbone = instantiate(cfg.backbone)
    dm = instantiate(cfg.data, tokenizer=backbone.tokenizer)
    dm.setup("fit")
    summary = summarize(dm, cfg.examples_per_class)
    print(json.dumps(summary, ensure_ascii=False) if cfg.format == "json" else render(summary))


if __name__ == "__main__":
    main()
