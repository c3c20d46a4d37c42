"""What to load: a pretrained hub id / local dir / GGUF file / embedded model, or a tiny random model."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property, lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from lora_lab.artifacts import file_sha256
from lora_lab.models.classifier import Classifier, PooledClassifier, StockHeadClassifier
from lora_lab.models.gguf import converted_gguf_dir, is_gguf

POOLINGS = ("cls", "mean", "last")


class Backbone:
    """The `backbone/` config group: where the weights and tokenizer come from, and how to pool.

    pooling: `cls` uses HF's stock sequence-classification head (the CLS pooler for encoders,
    the last-token `score` head for decoders); `mean` / `last` pool token states into our head.

    pretrained: a hub id, a local dir, or a GGUF file (`*.gguf`), which is converted once into a
    transformers dir under `cache_dir` (weights and tokenizer both come from the file).
    """

    def __init__(
        self,
        name: str,
        pretrained: str | None,
        pooling: str,
        max_length: int,
        target_modules: list[str] | str,
        tokenizer: str | None = None,
        random_init: dict | None = None,
        head_dropout: float = 0.1,
        cache_dir: str | None = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"backbone.pooling={pooling!r}: choose one of {POOLINGS}")
        if (pretrained is None) == (random_init is None):
            raise ValueError(
                f"backbone {name}: set exactly one of backbone.pretrained (hub id or dir) "
                "and backbone.random_init (a transformers config for a random model)"
            )
        self.name, self.pretrained, self.pooling, self.max_length = name, pretrained, pooling, max_length
        self.target_modules = target_modules if isinstance(target_modules, str) else list(target_modules)
        if is_gguf(pretrained) and cache_dir is None:
            raise ValueError(
                f"backbone {name}: backbone.pretrained={pretrained} is a GGUF file, converted once into a "
                "transformers dir; set backbone.cache_dir=${paths.cache_dir}/converted to say where"
            )
        self.tokenizer_override = tokenizer  # null: the tokenizer that comes with the weights
        self.random_init = dict(random_init) if random_init is not None else None
        self.head_dropout = head_dropout
        self.cache_dir = cache_dir

    @cached_property
    def weights_source(self) -> str | None:
        """What from_pretrained reads: `pretrained`, or for a GGUF file its converted dir (converted on first use)."""
        if is_gguf(self.pretrained):
            return str(converted_gguf_dir(Path(self.pretrained), Path(self.cache_dir)))
        return self.pretrained

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer_override == "synthetic-bpe":
            tokenizer = synthetic_bpe_tokenizer(self.random_init["vocab_size"])
        else:
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_override or self.weights_source)
        if tokenizer.pad_token is None:
            # Decoder tokenizers (GPT-2, Phi, Llama) have no pad token. Padding with EOS is safe:
            # the attention mask hides pads, and we right-pad so the last real token stays findable.
            # (A GGUF may name a pad token: SmolLM2's is its EOS <|im_end|> already.)
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        tokenizer.padding_side = "right"
        return tokenizer

    def fingerprint(self, seed: int) -> str:
        """sha256 naming the exact base weights an adapter was trained on, the same on any machine.

        Pretrained weights on disk: their config and weight files' bytes (not their path, which differs
        between machines). A random model: its config and the seed build_classifier() draws it with.
        A hub id that is not on disk: the id itself (nothing else can be read offline).
        """
        digest = hashlib.sha256()
        if self.random_init is not None:
            digest.update(json.dumps({"random_init": self.random_init, "seed": seed}, sort_keys=True).encode())
            return digest.hexdigest()
        source = Path(self.weights_source)
        if not source.is_dir():
            return hashlib.sha256(f"hub:{self.pretrained}".encode()).hexdigest()
        for path in sorted(source.glob("*.safetensors")) + sorted(source.glob("config.json")):
            digest.update(path.name.encode())
            digest.update(_file_sha256(path).encode())
        return digest.hexdigest()

    def config(self, id2label: dict[int, str]) -> AutoConfig:
        labels = {
            "num_labels": len(id2label),
            "id2label": dict(id2label),
            "label2id": {v: k for k, v in id2label.items()},
        }
        if self.random_init is not None:
            kwargs = dict(self.random_init)
            config = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs, **labels)
        else:
            config = AutoConfig.from_pretrained(self.weights_source, **labels)
        config.pad_token_id = self.tokenizer.pad_token_id
        return config

    def build_classifier(self, id2label: dict[int, str], seed: int = 0) -> Classifier:
        """Load (or randomly initialise) the transformer and put the configured head on it.

        Seeded here, so a random backbone and a fresh head are functions of (config, seed): a
        saved adapter re-applied to build_classifier(..., seed) meets the base it was trained on.
        """
        torch.manual_seed(seed)
        config = self.config(id2label)
        auto = AutoModelForSequenceClassification if self.pooling == "cls" else AutoModel
        if self.random_init is not None:
            model = auto.from_config(config)
        else:
            # fp32 master weights: mixed precision is the Trainer's job (autocast), not the weights'.
            model = auto.from_pretrained(self.weights_source, config=config, dtype=torch.float32)
        if self.pooling == "cls":
            return StockHeadClassifier(model, id2label)
        return PooledClassifier(model, id2label, self.pooling, self.head_dropout)


_file_sha256 = lru_cache(maxsize=16)(file_sha256)  # per path: a server fingerprints each adapter's base


@lru_cache(maxsize=4)
def synthetic_bpe_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer trained in about a second on the synthetic notes.

    Tests need a decoder tokenizer without a hub download; like GPT-2's it has an EOS token
    and no pad token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from lora_lab.data.synthetic.sales_notes import generate_sales_notes

    texts = [row["text"] for row in generate_sales_notes(n_per_class=200, seed=1234, noise=0.3)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
