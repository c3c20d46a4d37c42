"""A classifier is a transformer (what PEFT wraps) plus a head, with one interface for both kinds:

- StockHeadClassifier: HF's own AutoModelForSequenceClassification (CLS pooler head for
  encoders, last-token `score` head for decoders). Its merged form is a plain transformers model.
- PooledClassifier: a bare AutoModel, mean or last-token pooling, and a dropout + linear head.
  Sentence-embedding models (all-MiniLM-L6-v2) were trained for mean pooling, so this is what
  they need. Its merged form is the encoder in transformers format plus head.safetensors.

Both write `lora_lab_classifier.json`, so `load_classifier(dir)` rebuilds either in one call.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedTokenizerBase

SPEC_FILE = "lora_lab_classifier.json"
HEAD_FILE = "head.safetensors"


class Classifier(nn.Module):
    """forward(input_ids, attention_mask) -> logits; `transformer` is the module PEFT wraps."""

    kind: str
    peft_task_type: str
    # True where the head lives outside `transformer` (PEFT does not see it; it trains in every regime).
    external_head: bool

    def __init__(self, transformer: nn.Module, id2label: dict[int, str]):
        super().__init__()
        self.transformer = transformer
        self.id2label = {int(k): v for k, v in id2label.items()}

    def head(self) -> nn.ModuleDict:
        """The head's modules by name (valid before PEFT wraps the transformer)."""
        raise NotImplementedError

    def is_head_parameter(self, name: str) -> bool:
        """Whether a parameter name (from self.named_parameters(), PEFT-wrapped or not) is the head's."""
        raise NotImplementedError

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, hidden) text embeddings: what the head reads (embedding regimes fit heads on them)."""
        raise TypeError(
            f"{type(self).__name__} has HF's stock head and exposes no pooled embedding; "
            "embedding regimes need backbone.pooling=mean or last"
        )

    def spec(self) -> dict:
        return {"kind": self.kind, "id2label": {str(k): v for k, v in self.id2label.items()}}

    def save_head(self, out_dir: Path) -> None:
        """Head weights as safetensors plus the spec: what a head-only or pooled adapter adds."""
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head().state_dict().items()}
        save_file(state, str(out_dir / HEAD_FILE))
        (out_dir / SPEC_FILE).write_text(json.dumps(self.spec(), indent=2))

    def load_head(self, in_dir: Path) -> None:
        self.head().load_state_dict(load_file(str(in_dir / HEAD_FILE)))

    def save_merged(self, out_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        """The plain (PEFT-free) model: transformers weights + tokenizer + spec (+ head)."""
        self.transformer.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
        (out_dir / SPEC_FILE).write_text(json.dumps(self.spec(), indent=2))


class StockHeadClassifier(Classifier):
    kind = "stock"
    peft_task_type = "SEQ_CLS"
    external_head = False

    def __init__(self, model: nn.Module, id2label: dict[int, str]):
        super().__init__(model, id2label)
        # Everything outside the base model is head: `classifier` (BERT), `score` (GPT-2, Phi),
        # `pre_classifier` + `classifier` (DistilBERT), `pooler` + `classifier` (DeBERTa).
        self.head_names = [
            n for n, m in model.named_children() if n != model.base_model_prefix and any(True for _ in m.parameters())
        ]

    def head(self) -> nn.ModuleDict:
        return nn.ModuleDict({n: getattr(self.transformer, n) for n in self.head_names})

    def is_head_parameter(self, name: str) -> bool:
        # transformer.classifier.weight, or under PEFT transformer.base_model.model.classifier.modules_to_save...
        return any(f".{head}." in name for head in self.head_names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask).logits


class PooledClassifier(Classifier):
    kind = "pooled"
    peft_task_type = "FEATURE_EXTRACTION"
    external_head = True

    def __init__(
        self,
        encoder: nn.Module,
        id2label: dict[int, str],
        pooling: str = "mean",
        dropout: float = 0.1,
        normalize: bool = False,
    ):
        """normalize: the head reads unit-length embeddings (sentence-transformers' Normalize module,
        which all-MiniLM-L6-v2 ends with); the fitted-head regimes set it (regime.normalize)."""
        super().__init__(encoder, id2label)
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling={pooling!r}: PooledClassifier pools by mean or last (cls uses HF's stock head)")
        self.pooling, self.dropout_p, self.normalize = pooling, dropout, normalize
        self.classifier_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, len(id2label)))

    def head(self) -> nn.ModuleDict:
        return nn.ModuleDict({"classifier_head": self.classifier_head})

    def is_head_parameter(self, name: str) -> bool:
        return name.startswith("classifier_head.")

    def spec(self) -> dict:
        return {**super().spec(), "pooling": self.pooling, "dropout": self.dropout_p, "normalize": self.normalize}

    def load_head(self, in_dir: Path) -> None:
        """The head's weights, and whether it reads unit-length embeddings (its saved spec says)."""
        super().load_head(in_dir)
        if (in_dir / SPEC_FILE).is_file():
            self.normalize = bool(json.loads((in_dir / SPEC_FILE).read_text()).get("normalize", False))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if (virtual := hidden.size(1) - attention_mask.size(1)) > 0:
            # Prompt tuning prepended `virtual` tokens that every row attends to: pool them too.
            attention_mask = torch.cat([attention_mask.new_ones(attention_mask.size(0), virtual), attention_mask], 1)
        pooled = pool(hidden, attention_mask, self.pooling)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier_head(self.embed(input_ids, attention_mask))

    def save_merged(self, out_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        super().save_merged(out_dir, tokenizer)
        self.save_head(out_dir)


class UnitLength(nn.Module):
    """x / |x| over the last dim: a served adapter's head input when its regime set normalize."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """(batch, seq, hidden) -> (batch, hidden), ignoring padding (right-padded batches)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if how == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    last = attention_mask.sum(1) - 1  # index of the last real token of each row
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


def load_classifier(model_dir: str | Path) -> Classifier:
    """Rebuild a merged classifier (no PEFT needed) from a `merged/` dir in one call."""
    model_dir = Path(model_dir)
    spec = json.loads((model_dir / SPEC_FILE).read_text())
    id2label = {int(k): v for k, v in spec["id2label"].items()}
    if spec["kind"] == "stock":
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
        return StockHeadClassifier(model, id2label)
    encoder = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    classifier = PooledClassifier(encoder, id2label, spec["pooling"], spec["dropout"])
    classifier.load_head(model_dir)
    return classifier
