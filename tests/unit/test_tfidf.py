"""regime=tfidf: a real tiny job's outputs, a reload without unpickling that predicts exactly as the
job did, bad settings as one-line errors, and the report's "beats TF-IDF?" marker.

Subprocess: the command-line test runs `python -m lora_lab.train`, because its one error line and
exit code 2 are what it tests; the jobs themselves run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError
from lora_lab.job.build import build_job, load_trained
from lora_lab.models.tfidf import MODEL_FILE, WEIGHTS_FILE, CodepointTokenizer, TfidfClassifier
from lora_lab.regimes import build
from lora_lab.regimes.base import Regime
from lora_lab.report.aggregate import ConfigGroup, baselines, beats_baseline
from lora_lab.report.build import build_report
from lora_lab.report.collect import JobRow
from lora_lab.report.contents import _baseline
from lora_lab.report.document import Document, Paragraph
from lora_lab.train import train
from tests.helpers import TINY, compose_train, save_hydra_config
from tests.unit.test_report import md_table, run_job

ROOT = Path(__file__).resolve().parents[2]
PICKLE_MAGIC = b"\x80"  # every pickle protocol >= 2 starts with PROTO


@pytest.fixture(scope="module")
def tfidf_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tfidf job on the tiny synthetic sales notes, trained as `python -m lora_lab.train` would."""
    run_dir = tmp_path_factory.mktemp("tfidf") / "job"
    cfg = compose_train(run_dir, [*TINY, "regime=tfidf"])
    save_hydra_config(cfg, run_dir)
    train(cfg)
    GlobalHydra.instance().clear()
    return run_dir


def test_a_tfidf_job_leaves_the_outputs_every_regime_leaves(tfidf_job: Path):
    metrics = read_json(tfidf_job / "metrics.json")
    for key in (
        "test/acc",
        "test/f1_macro",
        "val/acc_best",
        "params/trainable",
        "params/trainable_pct",
        "time/train_s",
        "throughput/train_examples_per_s",
        "latency/test_ms_per_example",
        "memory/peak_rss_mb",
        "test/f1_per_class",
        "test/confusion_matrix",
        "artifact/adapter_bytes",
    ):
        assert key in metrics, key
    assert metrics["model_selection"] == "no_gradient_epochs" and metrics["time/train_s"] > 0
    assert metrics["test/acc"] > 0.3  # five labels (chance 0.2) from about 100 noisy training notes
    labels = read_json(tfidf_job / "labels.json")["id2label"]
    assert len(labels) == 5 and len(metrics["test/confusion_matrix"]) == 5
    # params/trainable = the fitted coefficients (labels x features) and intercepts.
    with safe_open(str(tfidf_job / "tfidf" / WEIGHTS_FILE), "np") as f:
        coef, intercept = f.get_tensor("coef"), f.get_tensor("intercept")
    features = sum(len(v) for v in json.loads((tfidf_job / "tfidf" / MODEL_FILE).read_text())["vocabularies"].values())
    assert coef.shape == (5, features) and metrics["params/trainable"] == coef.size + intercept.size
    assert not (tfidf_job / "adapter").exists() and not (tfidf_job / "merged").exists()  # no transformer to ship


def test_the_saved_model_is_json_and_safetensors_and_reloads_to_the_same_predictions(tfidf_job: Path):
    saved = sorted(p.name for p in (tfidf_job / "tfidf").iterdir())
    assert saved == sorted(["lora_lab_classifier.json", MODEL_FILE, WEIGHTS_FILE])
    assert not any(p.read_bytes().startswith(PICKLE_MAGIC) for p in (tfidf_job / "tfidf").iterdir())
    cfg = compose_train(tfidf_job, [*TINY, "regime=tfidf"])
    # The job refitted from scratch (the fit is deterministic) against the saved model read back.
    fresh = build_job(cfg)
    assert isinstance(fresh.classifier, TfidfClassifier) and isinstance(fresh.tokenizer, CodepointTokenizer)
    fresh.regime.prepare(fresh.classifier, fresh.datamodule)
    reloaded, tokenizer = load_trained(tfidf_job, cfg, instantiate(cfg.regime))
    assert isinstance(reloaded, TfidfClassifier) and reloaded.info["C"] == fresh.classifier.info["C"]
    texts = fresh.datamodule.splits["test"].texts
    assert torch.equal(reloaded.scores(texts), fresh.classifier.scores(texts))
    # Through the batches the test loop reads: code points padded and decoded back to the raw texts.
    batch = next(iter(fresh.datamodule.test_dataloader()))
    assert torch.equal(
        reloaded(batch["input_ids"], batch["attention_mask"]),
        fresh.classifier(batch["input_ids"], batch["attention_mask"]),
    )
    # And the job's own test score, recomputed from the reloaded model's predictions.
    test = fresh.datamodule.tokenized["test"]
    preds = reloaded.scores(texts).argmax(1)
    assert (preds == torch.tensor(test.labels)).float().mean().item() == pytest.approx(
        read_json(tfidf_job / "metrics.json")["test/acc"]
    )


def test_eval_reloads_a_tfidf_job_and_scores_what_it_saved(tfidf_job: Path, tmp_path: Path):
    from lora_lab.eval import evaluate

    GlobalHydra.instance().clear()
    results = evaluate(tfidf_job, tmp_path / "eval")
    assert results["test/acc"] == pytest.approx(results["saved/test/acc"], abs=0)
    assert results["test/f1_macro"] == pytest.approx(results["saved/test/f1_macro"], abs=0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("regime.C=-1", "regime.C="),
        ("regime.C=[]", "regime.C="),
        ("regime.word_ngram_range=[2,1]", "regime.word_ngram_range=[2, 1]"),
        ("regime.char_ngram_range=[0,3]", "regime.char_ngram_range"),
        ("regime.min_df=0", "regime.min_df=0"),
        ("regime.max_features=0", "regime.max_features=0"),
        ("regime.max_iter=0", "regime.max_iter=0"),
    ],
)
def test_a_tfidf_setting_out_of_range_is_a_config_error_naming_it(tiny_cfg, override: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _regime(tiny_cfg("regime=tfidf", override))


def test_a_tfidf_with_no_feature_kind_is_refused(tiny_cfg):
    with pytest.raises(ConfigError, match="keep at least one feature kind"):
        _regime(tiny_cfg("regime=tfidf", "regime.word_ngram_range=null", "regime.char_ngram_range=null"))


def _regime(cfg: DictConfig) -> Regime:
    """The regime the config builds, its ConfigError unwrapped from Hydra's InstantiationException."""
    settings = OmegaConf.to_container(cfg.regime, resolve=True)
    settings.pop("_target_")
    return build(**settings)


def test_the_command_line_prints_one_error_line_and_exits_2(tmp_path: Path):
    env = {**os.environ, "LORA_LAB_DEBUG": "0", "HYDRA_FULL_ERROR": "0"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lora_lab.train",
            *TINY,
            "regime=tfidf",
            "regime.C=-1",
            f"hydra.run.dir={tmp_path / 'job'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: regime.C=-1") and "Traceback" not in done.stderr


def _group(regime: str, accuracies: list[float], dataset: str = "d", backbone: str = "b") -> ConfigGroup:
    return ConfigGroup(
        [
            JobRow(
                name=f"{regime}{seed}",
                path=Path(regime),
                state="complete",
                dataset=dataset,
                backbone=backbone,
                regime=regime,
                seed=seed,
                metrics={"test/acc": acc, "val/acc_best": acc, "params/trainable": 100},
                group_key=regime,
            )
            for seed, acc in enumerate(accuracies)
        ]
    )


def test_beats_tfidf_on_known_numbers():
    tfidf = _group("tfidf", [0.80, 0.80, 0.80])  # deterministic: every seed alike
    assert beats_baseline(tfidf, tfidf) == "baseline"
    assert beats_baseline(_group("lora", [0.90, 0.91, 0.92]), tfidf).startswith("yes (+0.1")
    assert beats_baseline(_group("lora", [0.70, 0.71, 0.72]), tfidf).startswith("no (-0.0")
    assert beats_baseline(_group("lora", [0.79, 0.81, 0.80]), tfidf).startswith("within noise")
    assert beats_baseline(_group("lora", [0.95]), tfidf).startswith("cannot tell, single seed")
    assert beats_baseline(_group("lora", [0.9, 0.9]), None) is None
    # The baseline is matched by dataset alone (the backbone is unused), the best by validation where several ran.
    other = _group("tfidf", [0.85, 0.85], backbone="other")
    elsewhere = _group("tfidf", [0.5, 0.5], dataset="e")
    assert baselines([tfidf, other, elsewhere, _group("lora", [0.9, 0.9])]) == {"d": other, "e": elsewhere}


def test_a_report_without_a_tfidf_job_says_to_add_one():
    doc = Document("t")
    groups = [_group("lora", [0.9, 0.91])]
    _baseline(doc, groups, [None])
    text = " ".join(p.text for p in doc.of_type(Paragraph))
    assert "No regime=tfidf job on d" in text and "Add regime=tfidf to the sweep" in text


def test_the_report_marks_a_lora_config_below_tfidf_beyond_noise(tmp_path: Path):
    """A real tiny sweep: LoRA after two steps from a random head (near chance) and tfidf, three seeds
    each (two leave Welch's test one degree of freedom: even 0.2 below reads as noise)."""
    sweep = tmp_path / "sweep"
    for num, (regime, seed) in enumerate((regime, seed) for regime in ("lora", "tfidf") for seed in (1, 2, 3)):
        run_job(sweep, num, [f"regime={regime}", f"seed={seed}", "module.head_init=null"])
        GlobalHydra.instance().clear()
    report = build_report(sweep)
    rows = {row["config"].split()[0]: row for row in md_table(report / "report.md", "Configurations over seeds")}
    assert rows["tfidf"]["beats TF-IDF?"] == "baseline"
    assert rows["lora"]["beats TF-IDF?"].startswith("no (-")
    section = (
        (report / "report.md").read_text().split("## Against the bag-of-words baseline\n", 1)[1].split("\n## ", 1)[0]
    )
    assert "Not beating TF-IDF beyond noise:" in section and "lora" in section


@pytest.mark.parametrize("n_labels, present", [(4, [0, 2, 3]), (3, [0, 2])])
def test_labels_without_training_rows_are_never_predicted_and_the_rest_are_scored(n_labels: int, present: list[int]):
    """A small train_rows can leave labels without a row (64 rows of Banking77's 77): the fit keeps
    going, gives those labels probability 0, and predicts the present ones from their own words,
    for a multi-class fit and for a binary fit spread over more labels."""
    words = {0: "apple banana", 1: "cherry grape", 2: "lemon melon", 3: "peach plum"}
    texts = [f"{words[y]} {words[y]} number {i}" for y in present for i in range(6)]
    labels = [y for y in present for _ in range(6)]
    regime = build("tfidf", learning_rate=0.0, C=[10.0], min_df=1, char_ngram_range=None)
    classifier = TfidfClassifier({i: f"l{i}" for i in range(n_labels)})
    regime.fit(classifier, texts, labels, texts, labels)
    probs = classifier.scores([f"{words[y]} again" for y in range(n_labels)]).softmax(-1)
    absent = [y for y in range(n_labels) if y not in present]
    assert probs.shape == (n_labels, n_labels) and torch.isfinite(probs).all()
    assert probs[:, absent].max() == 0.0
    assert [int(probs[y].argmax()) for y in present] == present


def test_a_fit_on_one_label_names_the_problem():
    regime = build("tfidf", learning_rate=0.0, C=[10.0], min_df=1)
    with pytest.raises(ValueError, match="1 label.*raise train_rows"):
        regime.fit(TfidfClassifier({0: "a", 1: "b"}), ["apple pie", "apple tart"], [0, 0], ["apple pie"], [0])
