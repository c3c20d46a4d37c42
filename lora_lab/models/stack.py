"""A stacked model: a trained classifier's probabilities averaged with a TF-IDF model's.

    p(label | text) = w * p_model(label | text) + (1 - w) * p_tfidf(label | text)

Why: a fine-tuned encoder and a bag of n-grams err on different rows (the encoder reads
meaning, the n-grams rare exact words and names), so their average beats either on data the
encoder was not tuned for, while the TF-IDF part costs seconds to fit and a sparse product to
run. `w` is picked on the validation split only (job/stacking.py); w = 1 is the model alone, so a
useless TF-IDF part costs nothing but the pick.

Saved as `stack/` beside the job's merged/ and adapter/: stack.json (the weight, how it was
picked, the parts) plus the TF-IDF model's own JSON + safetensors; no pickle. merged/ carries a
pointer (POINTER_FILE), so a loader of merged/ alone knows a stack belongs to it and fails
loudly, rather than silently answering with the first part, when stack/ was left behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lora_lab.models.metrics import log_loss
from lora_lab.models.tfidf import TfidfClassifier

STACK_FILE = "stack.json"
POINTER_FILE = "lora_lab_stack.json"  # in merged/: where its stack lives, relative to merged/
FORMAT = "lora_lab_stack"
# The mixing weights tried on validation: steps of 0.05 from the TF-IDF model alone (0) to the
# trained model alone (1). Finer steps only fit validation noise (300 rows: one row is 0.3 points).
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass
class Stack:
    """The TF-IDF part and the weight of the trained model's probabilities."""

    weight: float
    tfidf: TfidfClassifier
    info: dict = field(default_factory=dict)  # how the weight was picked, the parts' names and scores

    def mix(self, model_probs: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(n, labels) probabilities of the stack, from the trained model's probabilities of `texts`."""
        return mix(model_probs, self.tfidf_probs(texts), self.weight)

    def tfidf_probs(self, texts: Sequence[str]) -> torch.Tensor:
        return tfidf_probabilities(self.tfidf, texts)

    def save(self, out_dir: Path) -> None:
        self.tfidf.save(out_dir)
        stack = {"format": FORMAT, "version": 1, "weight": self.weight, **self.info}
        (out_dir / STACK_FILE).write_text(json.dumps(stack, indent=2))


def tfidf_probabilities(tfidf: TfidfClassifier, texts: Sequence[str]) -> torch.Tensor:
    return tfidf.scores(list(texts)).softmax(-1)


def mix(model_probs: torch.Tensor, tfidf_probs: torch.Tensor, weight: float) -> torch.Tensor:
    return weight * model_probs.float() + (1.0 - weight) * tfidf_probs.float()


def pick_weight(
    model_probs: torch.Tensor, tfidf_probs: torch.Tensor, labels: torch.Tensor, grid: Sequence[float] = WEIGHT_GRID
) -> tuple[float, list[dict]]:
    """The weight with the lowest validation log loss, and every weight's loss and accuracy.

    Log loss, not accuracy: it moves with every row's confidence, where accuracy moves only when a
    row flips, so on a few hundred validation rows it picks a steadier weight. Ties (equal to 1e-9)
    go to the larger weight, the trained model: the simpler claim."""
    table = []
    for w in grid:
        probs = mix(model_probs, tfidf_probs, w)
        table.append(
            {
                "weight": w,
                "val_log_loss": log_loss(probs, labels),
                "val_acc": float((probs.argmax(-1) == labels).float().mean()),
            }
        )
    best = min(table, key=lambda row: (round(row["val_log_loss"], 9), -row["weight"]))
    return best["weight"], table


def stack_dir_of(model_dir: Path) -> Path | None:
    """The stack that belongs to a merged/ dir (its pointer file says where), or None if it has none."""
    pointer = model_dir / POINTER_FILE
    if not pointer.is_file():
        return None
    return (model_dir / json.loads(pointer.read_text())["stack_dir"]).resolve()


def write_pointer(model_dir: Path, stack_dir: Path) -> None:
    """Tell merged/ where its stack lives (a relative path: the pair moves together)."""
    relative = Path("..") / stack_dir.name if stack_dir.parent == model_dir.parent else stack_dir
    (model_dir / POINTER_FILE).write_text(json.dumps({"stack_dir": str(relative)}))


def load_stack(stack_dir: Path) -> Stack:
    """Read what Stack.save wrote; a missing dir is an error that says what to copy."""
    if not (stack_dir / STACK_FILE).is_file():
        raise FileNotFoundError(
            f"{stack_dir}: no {STACK_FILE}. This model was stacked with a TF-IDF model saved there: copy the job's "
            "stack/ beside merged/ (or export the job), or load the trained model alone with stack=false"
        )
    info = json.loads((stack_dir / STACK_FILE).read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{stack_dir / STACK_FILE}: not a lora_lab stack (format {info.get('format')!r})")
    model = json.loads((stack_dir / "tfidf.json").read_text())
    tfidf = TfidfClassifier({int(k): v for k, v in model["id2label"].items()})
    tfidf.load(stack_dir)
    weight = float(info.pop("weight"))
    return Stack(weight, tfidf, {k: v for k, v in info.items() if k not in ("format", "version")})
