"""Texts -> labels with a shipped `merged/` model: what a service or a batch job calls.

The fast settings are the defaults; each has a switch, so its worth can be measured
(`make bench` prints them; figures in docs/benchmarks.md):
- sorted batches: texts sorted by token length and padded to each batch's longest row, so a
  batch of short texts does not pay for one long one (Banking77: 2 to 80 tokens);
- `torch.inference_mode`: no autograd graph, no version counters;
- `trace=True`: TorchScript trace + freeze. HF's eager forward runs ~400 Python-level ops per
  text (mask building, module calls); a frozen graph runs the same kernels without them;
- `quantize="int8"`: dynamic int8 quantization of every nn.Linear (weights int8 once, activations
  quantized per call; fbgemm kernels use AVX-512 VNNI). The Linear layers are ~98% of MiniLM's
  FLOPs (12 d^2 per token and layer against the attention's 2 * seq * d) and at batch 1 they are
  bound by reading 42 MB of fp32 weights per text; int8 reads a quarter of that. It moves
  predictions slightly: check its accuracy on your test set (the benchmark prints both).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer

from lora_lab.data.batching import PadCollator, average_windows, flatten_windows, length_batches
from lora_lab.data.truncation import Truncation
from lora_lab.models.classifier import Classifier, load_classifier
from lora_lab.models.stack import load_stack, stack_dir_of

QUANTIZE = ("none", "int8")


def quantize_int8(classifier: Classifier) -> Classifier:
    """Dynamic int8 quantization of the Linear layers, in place of fp32 (CPU inference only)."""
    with warnings.catch_warnings():
        # torch 2.13 deprecates eager-mode quantization in favour of torchao (not a dependency
        # here); the API works and is what the benchmark measures.
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return torch.ao.quantization.quantize_dynamic(classifier, {nn.Linear}, dtype=torch.qint8)


def trace_and_freeze(classifier: Classifier, example: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """The classifier as a frozen TorchScript graph, traced on a padded batch.

    Tracing records the ops one call runs, with Python branches taken as they went. The example
    batch holds rows of different lengths, so the attention-mask path HF skips for unpadded
    inputs is recorded and applies to every later batch (an all-ones mask changes nothing).
    Predictor checks the graph against the eager model on other shapes before using it.
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the branches described above
        traced = torch.jit.trace(classifier, (example["input_ids"], example["attention_mask"]), strict=False)
    return torch.jit.freeze(traced.eval())


# Rows of different token lengths: what tracing and its check run on.
TRACE_TEXTS = ("ok", "the second example text is a little longer than the first one")
CHECK_TEXTS = ("a third text, of yet another length, checks the traced graph", "one more", "and a last one here")


def traced_and_checked(
    eager: nn.Module, encode: Callable[[Sequence[str]], dict[str, torch.Tensor]]
) -> torch.jit.ScriptModule:
    """The frozen graph, once it gives the eager model's logits on unseen shapes (else an error).

    `encode` turns texts into a padded batch, as the caller will at run time."""
    graph = trace_and_freeze(eager, encode(TRACE_TEXTS))
    with torch.inference_mode():
        for check in (encode(CHECK_TEXTS), encode(CHECK_TEXTS[:1])):
            want = eager(check["input_ids"], check["attention_mask"])
            got = graph(check["input_ids"], check["attention_mask"])
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                raise RuntimeError(
                    f"the traced graph of {type(eager).__name__} disagrees with the eager model on a batch of shape "
                    f"{tuple(check['input_ids'].shape)} (max |diff| {(got - want).abs().max():.2e}): this "
                    "architecture branches on input shapes; use Predictor(..., trace=False)"
                )
    return graph


class Predictor:
    """A merged classifier and its tokenizer, predicting labels for texts."""

    def __init__(
        self,
        model_dir: str | Path,
        quantize: str = "none",
        trace: bool = True,
        batch_size: int = 128,
        max_length: int | None = None,
        sort_by_length: bool = True,
        truncation: str | None = None,
        head_tokens: int | None = None,
        long_text: str | None = None,
        stack: bool = True,
    ):
        """max_length, truncation, head_tokens, long_text: None reads merged/truncation.json, written
        by the job (its data.max_length resolved, its head|tail|head_tail cut, or its windows when it
        trained with data.long_text=chunk); without it, the head to 512.

        stack: a stacked job's merged/ names its stack/ (models/stack.py); the Predictor answers with
        the mix. stack=False answers with the trained model alone."""
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize={quantize!r}: choose one of {QUANTIZE}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"{model_dir}: no such merged/ dir; a finished job writes <run_dir>/merged/")
        stack_dir = stack_dir_of(model_dir) if stack else None
        self.stack = load_stack(stack_dir) if stack_dir is not None else None
        eager = load_classifier(model_dir).eval()
        self.id2label = eager.id2label
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.collate = PadCollator(self.tokenizer.pad_token_id)
        saved = Truncation.load(model_dir)
        self.cut = Truncation(
            max_length or saved.max_length,
            truncation or saved.mode,
            head_tokens if head_tokens is not None or truncation else saved.head_tokens,
            long_text or saved.long_text,
            saved.max_chunks,
        )
        self.quantize, self.trace, self.batch_size, self.max_length = quantize, trace, batch_size, self.cut.max_length
        self.sort_by_length = sort_by_length
        if quantize == "int8":
            eager = quantize_int8(eager)
        self.classifier = self._traced(eager) if trace else eager

    def _batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """A padded batch of short texts (tracing and its check: one window each)."""
        ids = dataclasses.replace(self.cut, long_text="truncate").encode(self.tokenizer, texts)[0]
        return self.collate([(row, 0) for row in ids])

    def _traced(self, eager: nn.Module) -> torch.jit.ScriptModule:
        return traced_and_checked(eager, self._batch)

    @torch.inference_mode()
    def predict_ids(self, texts: Sequence[str]) -> list[int]:
        """Label ids for `texts`, in their order."""
        return self.logits(texts).argmax(-1).tolist()

    @torch.inference_mode()
    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), labels) logits; a chunked model's are the mean over each text's windows.
        A stack's are the log of its mixed probabilities (their softmax is the mix)."""
        windows, owner = flatten_windows(self.cut.encode(self.tokenizer, texts)[0])
        out = torch.empty(len(windows), len(self.id2label))
        for rows, batch in length_batches(windows, self.batch_size, self.collate, group=self.sort_by_length):
            out[rows] = self.classifier(batch["input_ids"], batch["attention_mask"]).float()
        logits = average_windows(out, owner, len(texts))
        if self.stack is not None:
            return self.stack.mix(logits.softmax(-1), texts).log()
        return logits

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), labels) probabilities, in the order of `texts`."""
        return self.logits(texts).softmax(-1)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Labels for `texts`, in their order."""
        return [self.id2label[i] for i in self.predict_ids(texts)]

    @torch.inference_mode()
    def predict_one(self, text: str) -> str:
        """The label of one text: no sorting or collating (a chunked model's windows, a stack's TF-IDF part
        go the batch way)."""
        if self.cut.chunked or self.stack is not None:
            return self.predict([text])[0]
        ids = torch.tensor(self.cut.encode(self.tokenizer, [text])[0])
        return self.id2label[int(self.classifier(ids, torch.ones_like(ids)).argmax(-1))]
