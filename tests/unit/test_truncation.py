"""Long texts: max_length=auto, and head | tail | head_tail cut alike in training, the Predictor and the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from lora_lab.artifacts import read_json
from lora_lab.data.truncation import Truncation, auto_length, special_tokens
from lora_lab.errors import ConfigError
from tests.conftest import compose_train

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
    content = full[len(prefix): len(full) - len(suffix)]
    budget = 32 - len(prefix) - len(suffix)
    head = {"tail": 0, "head_tail": head_tokens if head_tokens is not None else 8}[mode]  # a quarter of 32
    assert len(row) == 32
    assert row == prefix + content[:head] + content[-(budget - head):] + suffix
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
    assert summary["truncation"] == {"max_length": dm.max_length, "truncation": "head_tail", "head_tokens": None}


def test_a_job_records_its_cut_and_the_predictor_and_server_cut_alike(tiny_cfg):
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.sources import resolve_source
    from lora_lab.train import train
    from tests.helpers import save_hydra_config

    cfg = tiny_cfg("data.max_length=24", "data.truncation=head_tail", "data.head_tokens=6")
    run_dir = Path(cfg.paths.output_dir)
    save_hydra_config(cfg, run_dir)
    train(cfg)
    metrics = read_json(run_dir / "metrics.json")
    recorded = {"max_length": 24, "truncation": "head_tail", "head_tokens": 6}
    assert metrics["data/truncation"] == recorded and metrics["data/max_length"] == 24
    assert read_json(run_dir / "merged" / "truncation.json") == recorded
    predictor = Predictor(run_dir / "merged", trace=False)
    assert predictor.cut == Truncation(24, "head_tail", 6)
    assert Predictor(run_dir / "merged", trace=False, max_length=16, truncation="tail").cut == Truncation(16, "tail")
    assert resolve_source(run_dir).truncation == Truncation(24, "head_tail", 6)
