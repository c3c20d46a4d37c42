"""The served models in memory: one base per distinct backbone, every adapter attached to it.

A pooled classifier (backbone.pooling=mean|last, the default MiniLM) is a transformer + a head
outside it. Adapters trained on that base attach to ONE PeftModel (`load_adapter`), each with its
own head and label set, so the tenth adapter costs its adapter bytes, not another base. A mixed
batch runs the transformer once with PEFT's `adapter_names=` (one name per row; the LoRA family
supports it) and then each row's own head; `Base.mixable` holds the adapters whose mixed forward
was checked, on load, to give their own logits. Others run grouped per adapter (`set_adapter`).

Models without an adapter form (full fine-tunes, contrastive body=full, a pooling=cls stock head
whose head lives inside PEFT) are served alone from merged/.

Precision: `precision=bf16` serves a pure bf16 model (`_cast`): every weight, adapter and activation
in bf16, no autocast. Autocast, as training runs, pays a dispatch and a cast per op that a short
text does not earn back; pure bf16 pays neither, so one text comes close to fp32's latency and
batches run faster than under autocast (docs/benchmarks.md, "Serving"). The heads stay fp32 and
read the pooled embedding in fp32. `auto` picks bf16 exactly where training does. The mixed-batch
check (`_mixes_exactly`) runs in the serving precision too. bf16 batches pad to widths in multiples
of 8 (BF16_PAD_MULTIPLE), and `warm` runs each width once on load, so no request pays for building
a kernel.

LoRA runs in lora_lab's inference forward (models/mixed_lora.py), not PEFT's: a batch of one
adapter adds its update inside the base layer's output (fused), a mixed batch adds every row's
update in two bmm per layer, whatever the adapters. The load-time check holds the mixed form to
PEFT's own forward; tests/unit/test_mixed_lora.py holds the one-adapter form to it.

Not thread-safe by design: the server calls every method from one worker thread (batcher.py),
so `set_adapter` and a forward never interleave.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
from hydra.utils import instantiate
from peft import PeftModel
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lora_lab.artifacts import read_json
from lora_lab.config.hardware import cpu_has_native_bf16
from lora_lab.data.batching import PadCollator, Row, average_windows, flatten_windows, length_batches
from lora_lab.data.truncation import Truncation
from lora_lab.errors import ConfigError
from lora_lab.models.backbones import Backbone
from lora_lab.models.classifier import (
    HEAD_FILE,
    SPEC_FILE,
    Classifier,
    PooledClassifier,
    UnitLength,
    load_classifier,
    pool,
)
from lora_lab.models.mixed_lora import fuse_lora_forward, peft_forward
from lora_lab.models.predictor import quantize_int8, traced_and_checked
from lora_lab.models.stack import Stack, load_stack
from lora_lab.serve.sources import ModelSource

log = logging.getLogger(__name__)
PROBE_TEXTS = ("a short probe", "a second, somewhat longer probe text for the mixed batch check")
SUB_BATCH = 16  # rows per forward pass, in order of length (see Engine._logits)
PRECISIONS = ("auto", "fp32", "bf16")
# The gathered mixed form vs PEFT's own forward, per precision (Engine._mixes_exactly). fp32 only sums
# in another order (~1e-7). bf16 kernels for bmm and linear may round apart, by up to 2^-8 (0.4%) per
# op; 1e-2 allows that. It does not judge routing: check (1) does, at 1e-5 in every precision.
MIXED_FORM_TOLERANCE = {"fp32": 1e-5, "bf16": 1e-2}
# bf16 matmuls run oneDNN kernels built per shape on their first call (~9 per MiniLM forward, ~7 ms
# in all: a text of a length not seen before cost 22 ms against 15 ms seen). Widths in multiples of 8
# make a few shapes serve every length; the pad costs at most 7 masked tokens per row.
BF16_PAD_MULTIPLE = 8


@dataclass
class Base:
    """A shared base transformer (PEFT-wrapped once an adapter attaches) and its tokenizer."""

    key: str
    classifier: Classifier
    tokenizer: PreTrainedTokenizerBase
    max_length: int  # probes and a merged model's traced graph; requests are cut by their model's Truncation
    heads: dict[str, nn.Module] = field(default_factory=dict)  # PEFT adapter id -> its own head
    mixable: set[str] = field(default_factory=set)  # adapter ids checked to mix exactly
    # A merged model alone: its frozen TorchScript graph (the eager classifier stays, for embeddings).
    graph: torch.jit.ScriptModule | None = None
    pad_multiple: int = 1  # batch widths round up to this (BF16_PAD_MULTIPLE under bf16)

    @property
    def peft(self) -> PeftModel | None:
        return self.classifier.transformer if isinstance(self.classifier.transformer, PeftModel) else None

    @cached_property
    def collate(self) -> PadCollator:
        """Token-id rows -> a right-padded batch with this tokenizer's pad id."""
        return PadCollator(self.tokenizer.pad_token_id, self.pad_multiple, self.max_length)


@dataclass
class Served:
    """One name the API answers to."""

    name: str
    source: ModelSource
    base: Base
    fingerprint: str
    adapter_id: str | None  # the PEFT adapter's name inside the base (None: a merged model alone)
    stack: Stack | None = None  # a stacked model: its probabilities are mixed with its TF-IDF part's

    @property
    def id2label(self) -> dict[int, str]:
        return self.source.id2label

    @property
    def truncation(self) -> Truncation:
        """How this model's training cut long texts; every request to it is cut the same way."""
        return self.source.truncation or Truncation(self.base.max_length)


def resolve_precision(precision: str, quantize: str) -> str:
    """fp32, bf16 or int8: what the served forwards compute in, for `precision` and `quantize`."""
    if quantize not in ("none", "int8"):
        raise ConfigError(f"quantize={quantize!r}: use none or int8")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if quantize == "int8":
        if precision == "bf16":
            raise ConfigError(
                "precision=bf16 with quantize=int8: int8 Linear layers take fp32 activations; "
                "pick one (precision=bf16 quantize=none, or quantize=int8 precision=auto)"
            )
        return "int8"
    if precision == "bf16" and not cpu_has_native_bf16():
        raise ConfigError(
            "precision=bf16: this CPU has no native bf16 unit (no avx512_bf16 or amx_bf16 flag in "
            "/proc/cpuinfo), so bf16 would be emulated and slower than fp32; use precision=fp32"
        )
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


class Engine:
    def __init__(self, quantize: str = "none", precision: str = "fp32"):
        self.precision = resolve_precision(precision, quantize)
        self.quantize = quantize
        self.bases: dict[str, Base] = {}
        self.models: dict[str, Served] = {}
        # Per model name, counted on the model thread, read by /metrics: texts scored, and of them those
        # longer than max_length (cut, or read in windows), whatever the model then made of them.
        self.texts_scored: Counter[str] = Counter()
        self.texts_long: Counter[str] = Counter()
        self._loads = 0  # adapter ids are fresh per load, so a replacement loads beside the old one
        self.pad_multiple = BF16_PAD_MULTIPLE if self.precision == "bf16" else 1

    # --- loading -----------------------------------------------------------------------------

    def load(self, name: str, source: ModelSource) -> Served:
        """Attach `source` under `name` (replacing a model of that name only once the new one loaded)."""
        backbone: Backbone = instantiate(source.backbone)
        shares_base = source.adapter_dir is not None and source.pooled and self.quantize == "none"
        if shares_base:
            fingerprint = backbone.fingerprint(source.seed)
            if source.fingerprint is not None and source.fingerprint != fingerprint:
                raise ConfigError(
                    f"{source.path}: trained on a base with fingerprint {source.fingerprint[:12]}, but this machine's "
                    f"{backbone.name} weights give {fingerprint[:12]}; serve its merged/ or install the same base"
                )
            base = self.bases.get(fingerprint) or self._new_base(fingerprint, backbone, source)
            self._loads += 1
            adapter_id = f"a{self._loads}"
            self._attach(base, adapter_id, source)
        else:
            if source.merged_dir is None:
                raise ConfigError(
                    f"{source.path}: regime {source.regime} with backbone.pooling={source.backbone.get('pooling')} "
                    "has no merged/ to serve alone, and only pooled (mean/last) adapters share a base"
                )
            self._loads += 1
            fingerprint, adapter_id = f"merged:{source.path}", None
            base = self._merged_base(f"merged:{self._loads}", source)
        self.bases[base.key] = base
        old = self.models.get(name)
        stack = load_stack(source.stack_dir) if source.stack_dir is not None else None
        self.models[name] = Served(name, source, base, fingerprint, adapter_id, stack)  # the swap: one assignment
        if old is not None:
            self._release(old)
        return self.models[name]

    def _new_base(self, key: str, backbone: Backbone, source: ModelSource) -> Base:
        # The label map only sizes a head this base never uses: every adapter brings its own.
        classifier = self._cast(backbone.build_classifier(source.id2label, seed=source.seed).eval())
        return Base(key, classifier, backbone.tokenizer, backbone.max_length, pad_multiple=self.pad_multiple)

    def _cast(self, module: nn.Module) -> nn.Module:
        """Under bf16, `module` with every floating-point weight and buffer in bf16 (in place)."""
        return module.to(torch.bfloat16) if self.precision == "bf16" else module

    def _merged_base(self, key: str, source: ModelSource) -> Base:
        """A merged model served alone, as Predictor runs it: int8 if asked, traced and frozen (checked
        against the eager model; it skips HF's Python-level ops per call), eager under bf16."""
        classifier = self._cast(load_classifier(source.merged_dir).eval())
        if self.quantize == "int8":
            classifier = quantize_int8(classifier)
        tokenizer = AutoTokenizer.from_pretrained(str(source.merged_dir))
        length = source.truncation.max_length if source.truncation else int(source.backbone.get("max_length", 512))
        base = Base(key, classifier, tokenizer, length, pad_multiple=self.pad_multiple)
        if self.precision != "bf16":  # a traced graph keeps its fp32 kernels: under bf16 it runs eager
            base.graph = traced_and_checked(classifier, lambda texts: self._batch(base, texts))
        return base

    @staticmethod
    def _batch(base: Base, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> a right-padded batch as this base's tokenizer and max_length make it."""
        ids = Truncation(base.max_length).encode(base.tokenizer, texts)[0]
        return base.collate([(row, 0) for row in ids])

    def _attach(self, base: Base, adapter_id: str, source: ModelSource) -> None:
        """Load the adapter into the base's PeftModel and its head beside it; check mixed batches."""
        hidden = base.classifier.transformer.config.hidden_size
        head = nn.Linear(hidden, len(source.id2label))
        state = load_file(str(source.adapter_dir / HEAD_FILE))
        # PooledClassifier saves head() = {"classifier_head": Sequential(Dropout, Linear)}.
        head.load_state_dict({"weight": state["classifier_head.1.weight"], "bias": state["classifier_head.1.bias"]})
        spec_file = source.adapter_dir / SPEC_FILE
        if spec_file.is_file() and read_json(spec_file).get("normalize"):
            head = nn.Sequential(UnitLength(), head)  # its head was fitted on unit-length embeddings (regime.normalize)
        if base.peft is None:
            base.classifier.transformer = PeftModel.from_pretrained(
                base.classifier.transformer, str(source.adapter_dir), adapter_name=adapter_id, is_trainable=False
            )
        else:
            base.peft.load_adapter(str(source.adapter_dir), adapter_name=adapter_id, is_trainable=False)
        # PEFT loads an adapter's weights in fp32 even beside a bf16 base (autocast_adapter_dtype); in
        # fp32 they would cost a cast of every LoRA input.
        self._cast(base.peft).eval()
        fuse_lora_forward(base.peft)
        base.heads[adapter_id] = head.eval()
        if self._mixes_exactly(base, adapter_id):
            base.mixable.add(adapter_id)
        else:
            log.warning(
                "%s: a mixed batch does not reproduce this adapter's own logits (or %s takes no adapter_names=); "
                "its requests run grouped per adapter",
                source.path,
                source.regime,
            )

    def unload(self, name: str) -> None:
        self._release(self.models.pop(name))
        self.reset_counts(name)

    def _release(self, served: Served) -> None:
        """Drop a model's adapter and head; free its base once no model uses it."""
        base = served.base
        if not any(m.base is base for m in self.models.values()):
            self.bases.pop(base.key, None)
            return
        if served.adapter_id is not None:
            base.peft.delete_adapter(served.adapter_id)
            base.heads.pop(served.adapter_id)
            base.mixable.discard(served.adapter_id)

    # --- inference ---------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[torch.Tensor | None]:
        """Probabilities (n_texts, n_labels) for each (model name, texts) request, in order; None for a
        model unloaded since the request was queued (the other requests of the batch are unaffected)."""
        rows = [
            (i, j, name, text)
            for i, (name, texts) in enumerate(requests)
            if name in self.models
            for j, text in enumerate(texts)
        ]
        out = [
            torch.empty(len(texts), len(self.models[name].id2label)) if name in self.models else None
            for name, texts in requests
        ]
        by_base: dict[str, list] = {}
        for row in rows:
            by_base.setdefault(self.models[row[2]].base.key, []).append(row)
        for key, base_rows in by_base.items():
            base = self.bases[key]
            served = [self.models[r[2]] for r in base_rows]
            # A chunked model's text is several windows: each runs as a row, their logits are averaged.
            ids, lengths = self._encode(base, served, [r[3] for r in base_rows])
            for model, length in zip(served, lengths):  # telemetry: texts longer than the model reads whole
                self.texts_scored[model.name] += 1
                self.texts_long[model.name] += length > model.truncation.max_length
            windows, owner = flatten_windows(ids)
            logits = self._logits(base, [served[t].adapter_id for t in owner], windows)
            # Row by row: models sharing a base may have different label counts.
            per_text: list[list[torch.Tensor]] = [[] for _ in base_rows]
            for t, row_logits in zip(owner, logits):
                per_text[t].append(row_logits.float())
            for (i, j, _, _), rows in zip(base_rows, per_text):
                out[i][j] = torch.stack(rows).mean(0).softmax(-1)
        # A stacked model's TF-IDF part: one pass over all its requests' texts. Called per request,
        # scikit-learn's per-call overhead took a fifth of the model thread at 32 one-text clients.
        stacked: dict[str, list[int]] = {}
        for i, (name, _) in enumerate(requests):
            if out[i] is not None and self.models[name].stack is not None:
                stacked.setdefault(name, []).append(i)
        for name, indices in stacked.items():
            texts = [text for i in indices for text in requests[i][1]]
            mixed = self.models[name].stack.mix(torch.cat([out[i] for i in indices]), texts)
            for i, part in zip(indices, mixed.split([len(requests[i][1]) for i in indices])):
                out[i] = part
        return out

    @torch.inference_mode()
    def warm(self, name: str) -> None:
        """Run `name` once end to end, then, under bf16, once per padded width up to its max_length, so
        the first request of each length finds its kernels built (BF16_PAD_MULTIPLE); counts start afresh."""
        self.predict([(name, ["warm-up"])])
        served, base = self.models[name], self.models[name].base
        if base.pad_multiple > 1:
            for width in range(base.pad_multiple, served.truncation.max_length + 1, base.pad_multiple):
                batch = base.collate([([base.tokenizer.unk_token_id or 0] * width, 0)])
                self._forward(base, batch, [served.adapter_id])
        self.reset_counts(name)

    def reset_counts(self, name: str) -> None:
        """Start `name`'s telemetry counts afresh (after its warm-up; when it is replaced or unloaded)."""
        self.texts_scored.pop(name, None)
        self.texts_long.pop(name, None)

    @staticmethod
    def _encode(base: Base, models: list[Served], texts: list[str]) -> tuple[list[Row], list[int]]:
        """Each text's token ids, cut (or cut into windows) as its own model's training did (models may
        differ), and its full length in tokens."""
        ids: list[Row] = [[] for _ in texts]
        lengths = [0] * len(texts)
        by_cut: dict[Truncation, list[int]] = {}
        for i, model in enumerate(models):
            by_cut.setdefault(model.truncation, []).append(i)
        for cut, rows in by_cut.items():
            # A fan-out request brings the same text once per adapter: tokenized once, its ids shared.
            unique = list(dict.fromkeys(texts[i] for i in rows))
            cut_ids, full = cut.encode(base.tokenizer, unique)
            encoded = {text: (row, n) for text, row, n in zip(unique, cut_ids, full)}
            for i in rows:
                ids[i], lengths[i] = encoded[texts[i]]
        return ids, lengths

    def _logits(self, base: Base, names: list[str | None], ids: list[list[int]]) -> list[torch.Tensor]:
        """One logits row per text, through each text's own adapter id (None: the base is a merged model).

        Rows run in order of token length, SUB_BATCH at a time, each padded to its own longest row:
        texts vary widely in length (Banking77: 2 to 80 tokens), and sorted halves pad less than one
        batch padded to its longest row (docs/benchmarks.md).
        """
        result: list[torch.Tensor | None] = [None] * len(ids)
        for rows, batch in length_batches(ids, SUB_BATCH, base.collate):
            logits = self._forward(base, batch, [names[i] for i in rows])
            for i, row in zip(rows, logits):
                result[i] = row
        return result

    def _forward(self, base: Base, batch: dict[str, torch.Tensor], names: list[str | None]) -> list[torch.Tensor]:
        """Logits rows of one padded batch: the merged graph, one mixed PEFT forward, or one per adapter."""
        if base.peft is None:  # a merged model served alone
            return list((base.graph or base.classifier)(batch["input_ids"], batch["attention_mask"]))
        result: list[torch.Tensor | None] = [None] * len(names)
        if set(names) <= base.mixable:
            # One adapter: the fused forward (no adapter_names=: no per-module hooks, no weight gather).
            embedded = self._embed(base, batch, names, mixed=len(set(names)) > 1)
            for name in set(names):
                rows = [i for i, n in enumerate(names) if n == name]
                for i, row in zip(rows, base.heads[name](embedded[rows])):
                    result[i] = row
            return result
        for name in dict.fromkeys(names):  # grouped per adapter, in order of first appearance
            rows = [i for i, n in enumerate(names) if n == name]
            sub = {k: v[rows] for k, v in batch.items()}
            for i, row in zip(rows, base.heads[name](self._embed(base, sub, [name] * len(rows), mixed=False))):
                result[i] = row
        return result

    @staticmethod
    def _embed(base: Base, batch: dict[str, torch.Tensor], names: list[str], mixed: bool) -> torch.Tensor:
        """Pooled embeddings of a batch, row i through adapter names[i]: `mixed`, in one forward with
        PEFT's adapter_names= (the gathered form, models/mixed_lora.py); otherwise through the one
        active adapter (names all equal; the fused one-adapter form)."""
        peft, mask = base.peft, batch["attention_mask"]
        if mixed:
            hidden = peft(input_ids=batch["input_ids"], attention_mask=mask, adapter_names=list(names))
        else:
            if peft.active_adapter != names[0]:  # set_adapter walks every module: only on a change
                peft.set_adapter(names[0], inference_mode=True)
            hidden = peft(input_ids=batch["input_ids"], attention_mask=mask)
        return pool(hidden.last_hidden_state, mask, base.classifier.pooling).float()  # the heads are fp32

    @torch.inference_mode()
    def embed(self, name: str, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(n, hidden) unit-length pooled embeddings through `name`'s own model (for /v1/similar).

        Rows are embedded in order of token length, so each batch pads to rows of its own length
        (the sales notes: 8 to 72 tokens; unsorted, most batches would pay for the longest).
        """
        served = self.models[name]
        base = served.base
        if not isinstance(base.classifier, PooledClassifier):
            raise ConfigError(f"model {name!r} has HF's stock head and no pooled embedding to search by")
        windows, owner = flatten_windows(served.truncation.encode(base.tokenizer, texts)[0])
        out = torch.empty(len(windows), base.classifier.transformer.config.hidden_size)
        for rows, batch in length_batches(windows, batch_size, base.collate):
            if base.peft is None:
                vectors = base.classifier.embed(batch["input_ids"], batch["attention_mask"])
            else:
                vectors = self._embed(base, batch, [served.adapter_id] * len(rows), mixed=False)
            out[rows] = vectors.float()
        # A chunked model's text: the mean of its windows, as its head reads it.
        return torch.nn.functional.normalize(average_windows(out, owner, len(texts)), dim=-1)

    def _mixes_exactly(self, base: Base, name: str) -> bool:
        """Whether adapter `name` may share batches with the base's other adapters.

        Two checks on probe texts, in the serving precision: (1) routing: in a batch mixing `name` with
        another adapter, each row gets what the same batch run through its own adapter alone gives it
        (same shapes, so equal up to 1e-5 whatever the precision); (2) the gathered form: `name`'s
        batch equals PEFT's own forward through the active adapter, up to this precision's rounding.
        """
        others = [n for n in base.heads if n != name][:1]
        names = [name, *others] * len(PROBE_TEXTS)
        batch = self._batch(base, [t for t in PROBE_TEXTS for _ in range(1 + len(others))])
        with torch.inference_mode():
            try:
                mixed = self._embed(base, batch, names, mixed=True)
                alone = {n: self._embed(base, batch, [n] * len(names), mixed=True) for n in set(names)}
            except (ValueError, TypeError, NotImplementedError):
                return False  # this method takes no adapter_names= (e.g. IA3): grouped per adapter
            with peft_forward():
                peft_own = self._embed(base, batch, [name] * len(names), mixed=False)
        routed = torch.stack([alone[n][i] for i, n in enumerate(names)])
        rounding = MIXED_FORM_TOLERANCE[self.precision]
        return torch.allclose(mixed.float(), routed.float(), atol=1e-5, rtol=1e-5) and torch.allclose(
            alone[name].float(), peft_own.float(), atol=rounding, rtol=rounding
        )
