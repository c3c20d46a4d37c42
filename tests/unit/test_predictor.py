"""Predictor: a finished job's merged/ model -> labels, sorted batches, int8 quantization, guards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lora_lab.data.synthetic.sales_notes import SyntheticSalesNotes
from lora_lab.models.classifier import load_classifier
from lora_lab.models.predictor import Predictor
from lora_lab.train import train

N_PER_CLASS = 80


@pytest.fixture(scope="module")
def merged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny job's merged/, trained past chance on synthetic sales notes (as in test_train)."""
    from tests.helpers import TINY, compose_train

    out = tmp_path_factory.mktemp("predictor") / "job"
    overrides = [
        "regime=full",
        f"dataset.n_per_class={N_PER_CLASS}",
        "trainer.max_epochs=4",
        "regime.learning_rate=3e-3",
    ]
    train(compose_train(out, [*TINY, *overrides]))
    return out / "merged"


def _texts() -> list[str]:
    """The tiny job's own validation and test notes (120 texts of varied lengths)."""
    splits = SyntheticSalesNotes(name="b2b_sales_notes", n_per_class=N_PER_CLASS).load()
    return splits["validation"].texts + splits["test"].texts


def _reference(merged_dir: Path, texts: list[str]) -> list[str]:
    """One text per forward, no padding, no sorting: what the Predictor's batching must not change.
    Each text cut as the job cut it (merged/truncation.json: its data.max_length=auto, resolved)."""
    predictor = Predictor(merged_dir, trace=False)
    classifier = load_classifier(merged_dir).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor(predictor.cut.encode(predictor.tokenizer, [text])[0])
            out.append(classifier.id2label[int(classifier(ids, torch.ones_like(ids)).argmax(-1))])
    return out


def test_sorted_padded_batches_predict_what_one_text_at_a_time_does(merged_dir: Path):
    texts = _texts()
    expected = _reference(merged_dir, texts)
    for sort in (True, False):
        predictor = Predictor(merged_dir, batch_size=8, sort_by_length=sort)
        assert predictor.predict(texts) == expected, f"sort_by_length={sort}"
    assert [Predictor(merged_dir).predict_one(t) for t in texts[:5]] == expected[:5]
    assert len(set(expected)) > 1  # a trained model, not a constant


def test_the_traced_graph_predicts_what_the_eager_model_does(merged_dir: Path):
    texts = _texts()
    traced, eager = Predictor(merged_dir), Predictor(merged_dir, trace=False)
    assert isinstance(traced.classifier, torch.jit.ScriptModule) and not isinstance(
        eager.classifier, torch.jit.ScriptModule
    )
    for batch_size in (1, 7, 128):  # unpadded single rows, ragged small batches, one big padded batch
        traced.batch_size = eager.batch_size = batch_size
        assert traced.predict(texts) == eager.predict(texts), batch_size
    batch = traced._batch(texts[:9])
    with torch.inference_mode():
        torch.testing.assert_close(
            traced.classifier(batch["input_ids"], batch["attention_mask"]),
            eager.classifier(batch["input_ids"], batch["attention_mask"]),
            rtol=1e-4,
            atol=1e-4,
        )


def test_int8_quantizes_every_linear_and_keeps_the_predictions(merged_dir: Path):
    texts = _texts()
    fp32 = Predictor(merged_dir).predict(texts)
    int8 = Predictor(merged_dir, quantize="int8", trace=False)
    linears = [m for m in int8.classifier.modules() if type(m) is nn.Linear]
    quantized = [m for m in int8.classifier.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linears and len(quantized) >= 2 * 6 + 1  # tiny BERT: 2 layers x (q, k, v, o, up, down), + head
    agreement = sum(a == b for a, b in zip(fp32, int8.predict(texts))) / len(texts)
    assert agreement >= 0.9
    assert Predictor(merged_dir, quantize="int8").predict(texts) == int8.predict(texts)  # traced int8 too


def test_bad_arguments_name_the_problem(merged_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="quantize='fp8'.*none.*int8"):
        Predictor(merged_dir, quantize="fp8")
    with pytest.raises(ValueError, match="batch_size=0"):
        Predictor(merged_dir, batch_size=0)
    with pytest.raises(FileNotFoundError, match="merged/"):
        Predictor(tmp_path / "nope")


class _BranchesOnBatchSize(nn.Module):
    """A model whose Python branch depends on the batch's shape: tracing bakes in one branch."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = attention_mask.float().sum(1, keepdim=True).expand(-1, 2)
        return logits * 2 if input_ids.shape[0] == 2 else logits


def test_a_graph_that_disagrees_with_the_eager_model_is_refused(merged_dir: Path):
    predictor = Predictor(merged_dir, trace=False)
    with pytest.raises(RuntimeError, match=r"disagrees with the eager model.*trace=False"):
        predictor._traced(_BranchesOnBatchSize())
