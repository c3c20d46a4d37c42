"""A lora_lab classifier with a pooled head, for `transformers` (shipped in an export's merged/).

    from transformers import pipeline
    classify = pipeline("text-classification", model="<export>/merged", trust_remote_code=True)

Why remote code: transformers' stock sequence-classification heads read the [CLS] token (BERT's
pooler) or the last token (decoders). A sentence-embedding body such as all-MiniLM-L6-v2 was
trained to be read by the *mean* of its token states, and lora_lab's head reads that mean (or the
last real token, for `pooling: last`), optionally scaled to unit length. No stock class does this,
so this file does, and nothing more:

- the body is the dir's own `AutoModel` (config.json's model_type; weights in model.safetensors);
- `pooling` (mean | last) and `normalize` come from config.json's `lora_lab` entry;
- the head is `head.safetensors`: one linear layer (lora_lab's `classifier_head.1`; `.0` is dropout).

It imports only torch, safetensors and transformers, reads no other file, and runs no code from
the dir but this one. Padding must be on the right (the tokenizer saved beside it pads so), which is
what `pooling: last` assumes: a row's last real token is at attention_mask.sum() - 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import cached_file

HEAD_FILE = "head.safetensors"
HEAD_KEYS = ("classifier_head.1.weight", "classifier_head.1.bias")


class LoraLabPooledForSequenceClassification(PreTrainedModel):
    """body -> mean (or last-token) pooling -> [unit length] -> linear head -> logits."""

    base_model_prefix = "encoder"

    def __init__(self, config, encoder: nn.Module | None = None):
        super().__init__(config)
        spec = getattr(config, "lora_lab", None) or {}
        self.pooling = spec.get("pooling", "mean")
        self.normalize = bool(spec.get("normalize", False))
        if self.pooling not in ("mean", "last"):
            raise ValueError(f"config.json lora_lab.pooling={self.pooling!r}: this file pools by mean or last")
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()
        # After post_init, so that a loaded body is not re-initialised.
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """The body through AutoModel (config.json's model_type), then the head from head.safetensors."""
        # The auto class's own bookkeeping (_from_auto, _commit_hash, ...): AutoModel sets it again.
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_") and k != "trust_remote_code"}
        hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        if config is None:
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        encoder = AutoModel.from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        model = cls(config, encoder=encoder)
        head = load_file(cached_file(pretrained_model_name_or_path, HEAD_FILE, **hub))
        weight, bias = (head[key] for key in HEAD_KEYS)
        model.classifier.load_state_dict({"weight": weight, "bias": bias})
        return model.to(encoder.dtype).eval()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # single texts: all zeros; lora_lab's head never reads them
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            last = attention_mask.sum(1) - 1
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        logits = self.classifier(pooled)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
