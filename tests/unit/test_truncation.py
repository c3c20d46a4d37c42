"""Long texts: max_length=auto, head | tail | head_tail cuts and chunk windows, alike in training,
the Predictor and the server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lora_lab.artifacts import read_json
from lora_lab.data.batching import PadCollator
from lora_lab.data.truncation import Truncation, auto_length, special_tokens
from lora_lab.errors import ConfigError
from tests.helpers import compose_train

# 120 distinct words: each survives as its own token(s), so what a cut kept can be read back.
LONG = " ".join(f"word{i}" for i in range(120))


@pytest.fixture(scope="module", params=["tiny_bert", "tiny_phi"])  # [CLS] ... [SEP]; a decoder's BPE, no specials
def tokenizer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    cfg = compose_train(tmp_path_factory.mktemp("tok"), [f"backbone={request.param}"])
    return instantiate(cfg.backbone).tokenizer


def test_head_cuts_exactly_as_the_tokenizers_own_truncation(tokenizer):
    ids, lengths = Truncation(24, "head").encode(tokenizer, [LONG, "short text"])
    assert ids[0] == tokenizer(LONG, truncation=True, max_length=24)["input_ids"]
    assert ids[1] == tokenizer("short text")["input_ids"]  # a text that fits is untouched
    assert lengths == [len(tokenizer(LONG)["input_ids"]), len(ids[1])] and lengths[0] > 24  # the real length


@pytest.mark.parametrize("mode,head_tokens", [("head_tail", 8), ("head_tail", None), ("tail", None)])
def test_head_tail_and_tail_keep_the_ends_and_the_special_tokens(tokenizer, mode: str, head_tokens: int | None):
    cut = Truncation(32, mode, head_tokens)
    (row,), _ = cut.encode(tokenizer, [LONG])
    full = tokenizer(LONG)["input_ids"]
    prefix, suffix = special_tokens(tokenizer)
    content = full[len(prefix) : len(full) - len(suffix)]
    budget = 32 - len(prefix) - len(suffix)
    head = {"tail": 0, "head_tail": head_tokens if head_tokens is not None else 8}[mode]  # a quarter of 32
    assert len(row) == 32
    assert row == prefix + content[:head] + content[-(budget - head) :] + suffix
    text = tokenizer.decode(row)
    assert "word119" in text and "word60" not in text  # the end kept, the middle dropped
    assert ("word0" in text) == (mode == "head_tail")


def test_auto_length_covers_95_percent_of_the_training_texts_within_the_cap():
    lengths = list(range(1, 101))  # 1..100 tokens
    assert auto_length(lengths, cap=512) == 95
    assert auto_length(lengths, cap=64) == 64
    assert auto_length([7] * 10, cap=512) == 7


def test_bad_truncation_settings_are_config_errors():
    with pytest.raises(ConfigError, match="data.truncation='middle'"):
        Truncation(64, "middle")
    with pytest.raises(ConfigError, match=r"data.head_tokens=64: must lie in \[0, max_length=64\)"):
        Truncation(64, "head_tail", 64)


def test_auto_max_length_resolves_on_the_training_split_and_the_inspector_shows_real_lengths(tiny_cfg):
    from lora_lab.data.__main__ import summarize

    cfg = tiny_cfg("data.max_length=auto", "data.max_length_cap=512", "data.truncation=head_tail")
    dm = instantiate(cfg.data, tokenizer=instantiate(cfg.backbone).tokenizer)
    dm.setup("fit")
    train = sorted(dm.full_lengths["train"])
    assert dm.max_length == auto_length(train, 512) and dm.max_length < train[-1]  # some texts are longer
    assert max(dm.tokenized["train"].lengths) == dm.max_length
    assert dm.truncated["train"] == pytest.approx(sum(n > dm.max_length for n in train) / len(train))
    assert 0 < dm.truncated["train"] <= 0.05
    summary = summarize(dm, 1)
    assert summary["token_length"]["train"]["max"] == train[-1] > dm.max_length  # not capped at max_length
    assert summary["truncation"] == {
        "max_length": dm.max_length,
        "truncation": "head_tail",
        "head_tokens": None,
        "long_text": "truncate",
        "max_chunks": 4,
    }


def _trained(tiny_cfg, *overrides: str):
    """(config, run dir, metrics) of a tiny job trained with `overrides`."""
    from lora_lab.train import train
    from tests.helpers import save_hydra_config

    cfg = tiny_cfg(*overrides)
    run_dir = Path(cfg.paths.output_dir)
    save_hydra_config(cfg, run_dir)
    train(cfg)
    return cfg, run_dir, read_json(run_dir / "metrics.json")


def test_a_job_records_its_cut_and_the_predictor_and_server_cut_alike(tiny_cfg):
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.sources import resolve_source

    _, run_dir, metrics = _trained(tiny_cfg, "data.max_length=24", "data.truncation=head_tail", "data.head_tokens=6")
    recorded = {"max_length": 24, "truncation": "head_tail", "head_tokens": 6, "long_text": "truncate", "max_chunks": 4}
    assert metrics["data/truncation"] == recorded and metrics["data/max_length"] == 24
    assert read_json(run_dir / "merged" / "truncation.json") == recorded
    predictor = Predictor(run_dir / "merged", trace=False)
    assert predictor.cut == Truncation(24, "head_tail", 6)
    assert Predictor(run_dir / "merged", trace=False, max_length=16, truncation="tail").cut == Truncation(16, "tail")
    assert resolve_source(run_dir).truncation == Truncation(24, "head_tail", 6)


def _start(content: list[int], window: list[int]) -> int:
    return next(s for s in range(len(content)) if content[s : s + len(window)] == window)


def test_chunk_windows_cover_the_text_with_overlap_each_with_the_special_tokens(tokenizer):
    cut = Truncation(32, long_text="chunk", max_chunks=64)
    (windows, short), lengths = cut.encode(tokenizer, [LONG, "short text"])
    assert short == [tokenizer("short text")["input_ids"]]  # a text that fits is one window, untouched
    full = tokenizer(LONG)["input_ids"]
    prefix, suffix = special_tokens(tokenizer)
    content, width = full[len(prefix) : len(full) - len(suffix)], 32 - len(prefix) - len(suffix)
    assert lengths[0] == len(full) > 3 * 32
    assert all(len(w) == 32 and w[: len(prefix)] == prefix and w[32 - len(suffix) :] == suffix for w in windows)
    inner = [w[len(prefix) : 32 - len(suffix)] for w in windows]
    starts = [_start(content, w) for w in inner]
    assert starts[0] == 0 and starts[-1] + width == len(content)  # from the first token to the last
    assert all(0 < b - a < width for a, b in zip(starts, starts[1:]))  # each window overlaps the next
    assert {i for s in starts for i in range(s, s + width)} == set(range(len(content)))  # nothing skipped
    assert len(windows) < 64  # the stride, not the cap, set the count


def test_max_chunks_spreads_fewer_windows_from_the_head_to_the_tail(tokenizer):
    (windows,), _ = Truncation(32, long_text="chunk", max_chunks=2).encode(tokenizer, [LONG])
    texts = [tokenizer.decode(w) for w in windows]
    assert len(windows) == 2 and "word0 " in texts[0] + " " and "word119" in texts[1]
    assert "word60" not in " ".join(texts)  # two windows of 32 cannot reach the middle of ~240 tokens


def test_chunk_is_refused_where_windows_mean_nothing_and_bad_counts_are_config_errors(tiny_cfg):
    from lora_lab.config.validation import validate

    for regime in ("tfidf", "contrastive"):
        with pytest.raises(ConfigError, match=f"data.long_text=chunk: regime={regime} .*use data.long_text=truncate"):
            validate(tiny_cfg(f"regime={regime}", "data.long_text=chunk"))
    with pytest.raises(ConfigError, match="data.long_text='window'"):
        validate(tiny_cfg("data.long_text=window"))
    with pytest.raises(ConfigError, match="data.max_chunks=0"):
        validate(tiny_cfg("data.long_text=chunk", "data.max_chunks=0"))


def test_chunked_logits_are_averaged_alike_in_the_module_the_predictor_and_the_server(tiny_cfg):
    from lora_lab.models.classifier import load_classifier
    from lora_lab.models.module import ClassifierModule
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.engine import Engine
    from lora_lab.serve.sources import resolve_source

    cfg, run_dir, metrics = _trained(tiny_cfg, "data.max_length=12", "data.long_text=chunk", "data.max_chunks=3")
    cut = Truncation(12, long_text="chunk", max_chunks=3)
    assert metrics["data/truncation"] == cut.as_dict() == read_json(run_dir / "merged" / "truncation.json")
    assert metrics["data/truncated_share"]["test"] > 0.5  # most test texts have several windows

    dm = instantiate(cfg.data, tokenizer=instantiate(cfg.backbone).tokenizer)
    dm.setup("test")
    texts, labels = dm.splits["test"].texts, dm.tokenized["test"].labels
    classifier = load_classifier(run_dir / "merged").eval()
    rows = cut.encode(dm.tokenizer, texts)[0]
    assert rows == dm.tokenized["test"].input_ids and max(len(r) for r in rows) > 1
    with torch.no_grad():  # by hand: each window alone, unpadded, then the mean of its text's windows
        expected = torch.stack(
            [
                torch.stack(
                    [classifier(torch.tensor([w]), torch.ones(1, len(w), dtype=torch.long))[0] for w in row]
                ).mean(0)
                for row in rows
            ]
        )
        module = ClassifierModule(classifier, learning_rate=1e-3).eval()
        batch = PadCollator(dm.tokenizer.pad_token_id)(list(zip(rows, labels)))
        assert len(batch["input_ids"]) > len(texts)  # one row per window
        _, module_logits = module._loss_and_logits(batch)
    torch.testing.assert_close(module_logits, expected, atol=1e-5, rtol=0)
    for trace in (False, True):
        predictor = Predictor(run_dir / "merged", trace=trace, batch_size=7)
        assert predictor.cut == cut
        torch.testing.assert_close(predictor.logits(texts), expected, atol=1e-4, rtol=0)
        assert predictor.predict_one(texts[0]) == dm.id2label[int(expected[0].argmax())]
    accuracy = (expected.argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert metrics["test/acc"] == pytest.approx(accuracy)  # the job's own test loop averaged alike
    # Its evaluation batches held eval_batch_size windows at most, not eval_batch_size texts.
    dm.eval_batch_size = 4
    loaded = list(dm.test_dataloader())
    assert sum(len(b["labels"]) for b in loaded) == len(texts)
    assert all(len(b["input_ids"]) <= 4 or len(b["labels"]) == 1 for b in loaded)

    engine = Engine()
    engine.load("chunked", resolve_source(run_dir))
    (probs,) = engine.predict([("chunked", texts)])
    torch.testing.assert_close(probs, expected.softmax(-1), atol=1e-4, rtol=0)
