"""Per-domain adapters (python -m lora_lab.domains) on tiny_bert and a tiny two-domain CSV.

One comparison (2 domain jobs + all + a head baseline, one epoch each) is trained once for the
module; the tests read its dirs, its report, and load its adapters again.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lora_lab.artifacts import read_json
from lora_lab.data.files import TableFile
from lora_lab.domains.__main__ import run
from lora_lab.domains.evaluation import OVERALL
from lora_lab.domains.scoring import domain_test_rows, predict
from lora_lab.errors import ConfigError, DataError
from lora_lab.job.build import load_trained
from lora_lab.models.multi_adapter import MultiAdapterClassifier
from tests.helpers import compose_train

DOMAINS = ["books", "kitchen"]
WORDS = {"positive": ["great", "lovely", "superb", "reliable"], "negative": ["awful", "broken", "dull", "flimsy"]}


def _write_reviews(path: Path, per_label: int = 20) -> Path:
    """Unique review texts; each domain has its own nouns, each label its own adjectives."""
    rng = random.Random(0)
    rows = [
        {
            "text": f"{rng.choice(WORDS[label])} {domain} item number {i}, {rng.choice(WORDS[label])} overall",
            "label": label,
            "domain": domain,
        }
        for domain in DOMAINS
        for label in WORDS
        for i in range(per_label)
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "domain"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _overrides(csv_path: Path, *extra: str) -> list[str]:
    return [
        "backbone=tiny_bert",
        "dataset=csv",
        f"dataset.path={csv_path}",
        "dataset.extra_columns=[domain]",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "regime.learning_rate=5e-3",
        "baselines=[head]",
        "switch_repeats=5",
        *extra,
    ]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """(cfg, run dir, results) of one finished tiny comparison."""
    tmp = tmp_path_factory.mktemp("domains")
    cfg = compose_train(tmp / "out", _overrides(_write_reviews(tmp / "reviews.csv")), config_name="domains")
    results = run(cfg)
    yield cfg, tmp / "out", results
    GlobalHydra.instance().clear()


def test_subset_keeps_exactly_the_whole_split_s_rows_of_a_domain(tmp_path):
    path = _write_reviews(tmp_path / "r.csv")
    whole = TableFile(str(path), name="r", extra_columns=["domain"]).load()
    books = TableFile(str(path), name="r", extra_columns=["domain"], subset={"domain": "books"}).load()
    for name in ("train", "validation", "test"):
        expected = [t for t, d in zip(whole[name].texts, whole[name].extra["domain"]) if d == "books"]
        assert books[name].texts == expected and set(books[name].extra["domain"]) == {"books"}
    # The subset's test rows are none of the whole dataset's training rows: no model trains on them.
    assert not set(books["test"].texts) & set(whole["train"].texts)


def test_subset_and_extra_column_errors_name_the_setting(tmp_path):
    path = _write_reviews(tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"column 'domain'.*extra_columns=\[domain\]"):
        TableFile(str(path), name="r", subset={"domain": "books"}).load()
    with pytest.raises(DataError, match=r"no train rows.*'books', 'kitchen'"):
        TableFile(str(path), name="r", extra_columns=["domain"], subset={"domain": "toys"}).load()
    with pytest.raises(DataError, match=r"no column 'shop' \(dataset.extra_columns\)"):
        TableFile(str(path), name="r", extra_columns=["shop"]).load()


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["regime=head"], r"regime=head: .*PEFT.*baselines"),
        (["domains=[books,toys]"], r"'toys' has no train/validation/test rows.*'kitchen'"),
        (["baselines=[nosuch]"], r"no regime 'nosuch'.*'lora'"),
        (["baselines=[head,head]"], r"baselines=\['head', 'head'\]: name each one once"),
        (["domain_column=shop"], r"domain_column='shop'.*\['domain'\]"),
    ],
)
def test_a_bad_comparison_config_fails_before_training(tmp_path, extra: list[str], error: str):
    cfg = compose_train(tmp_path / "out", _overrides(_write_reviews(tmp_path / "r.csv"), *extra), config_name="domains")
    with pytest.raises(ConfigError, match=error):
        run(cfg)
    assert not (tmp_path / "out" / "adapters").exists()
    GlobalHydra.instance().clear()


def test_adapters_are_saved_side_by_side_each_with_its_labels(comparison):
    _, out, results = comparison
    assert results["domains"] == DOMAINS
    for name in [*DOMAINS, "all"]:
        job = out / "adapters" / name
        assert (job / "adapter" / "adapter_model.safetensors").is_file() and (
            job / "adapter" / "head.safetensors"
        ).is_file()
        assert read_json(job / "labels.json")["id2label"] == {"0": "negative", "1": "positive"}
        assert read_json(job / "status.json")["state"] == "complete"
        assert (job / ".hydra" / "config.yaml").is_file()  # so lora_lab.eval run_dir=<job> works
    assert read_json(out / "baselines" / "head" / "status.json")["state"] == "complete"
    all_metrics = read_json(out / "adapters" / "all" / "metrics.json")
    domain_metrics = {d: read_json(out / "adapters" / d / "metrics.json") for d in DOMAINS}
    # The domain jobs split the all-domains training rows between them, and nothing else.
    assert sum(m["data/train_rows"] for m in domain_metrics.values()) == all_metrics["data/train_rows"]
    for domain, metrics in domain_metrics.items():
        # Each domain job was tested on the rows the report scores for its domain.
        assert metrics["data/test_rows"] == results["rows"][domain]
        # Same rows, same adapter, same batches: the report's own score is the job's own test score.
        assert results["scores"][domain]["own"]["acc"] == pytest.approx(metrics["test/acc"], abs=1e-9)
    # The domains partition the test split, so the pooled row of "all" and the baseline is each job's own test score.
    assert sum(results["rows"].values()) == all_metrics["data/test_rows"]
    assert results["scores"][OVERALL]["all"]["acc"] == pytest.approx(all_metrics["test/acc"], abs=1e-9)


def test_switching_adapters_matches_each_standalone_adapter_and_changes_predictions(comparison):
    cfg, out, results = comparison
    assert max(v for column in results["max_abs_logit_diff"].values() for v in column.values()) <= 1e-5
    backbone = instantiate(cfg.backbone)
    rows = domain_test_rows(cfg, backbone.tokenizer, "domain", DOMAINS)["books"]
    batch = (cfg.data.eval_batch_size, backbone.tokenizer.pad_token_id)
    names = [*DOMAINS, "all"]
    model = MultiAdapterClassifier.load(
        backbone, {n: out / "adapters" / n / "adapter" for n in names}, {0: "negative", 1: "positive"}, cfg.seed
    )
    served = {}
    for name in names:
        model.use(name)
        served[name], _ = predict(model, rows, *batch)
        job_dir = out / "adapters" / name
        job_cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
        standalone, _ = load_trained(job_dir, job_cfg, instantiate(job_cfg.regime), "adapter")
        expected, _ = predict(standalone, rows, *batch)
        torch.testing.assert_close(served[name], expected, atol=1e-5, rtol=0)
    # Each adapter (and its head) is its own: switching changes the logits on the same rows.
    for other in names[1:]:
        assert (served["books"] - served[other]).abs().max() > 1e-4, other
    assert not torch.equal(
        model.heads["books"]["classifier_head"][1].weight, model.heads["kitchen"]["classifier_head"][1].weight
    )
    with pytest.raises(KeyError, match=r"no adapter 'toys'.*'books'"):
        model.use("toys")
    with pytest.raises(ValueError, match="holds no PEFT adapter"):
        MultiAdapterClassifier.load(
            backbone, {"head": out / "baselines" / "head" / "adapter"}, {0: "negative", 1: "positive"}, 0
        )


def test_the_report_has_a_row_per_domain_and_a_column_per_model(comparison):
    _, out, results = comparison
    saved = read_json(out / "domains_report.json")
    assert saved["columns"] == ["own", "all", "head"] and saved["baselines"] == ["head"]
    assert set(saved["scores"]) == {*DOMAINS, OVERALL}
    for cells in saved["scores"].values():
        for column in ("own", "all", "head"):
            assert set(cells[column]) == {"acc", "f1_macro", "ms_per_example"}
            assert 0 <= cells[column]["acc"] <= 1 and cells[column]["ms_per_example"] > 0
    assert saved["switch_ms"] > 0 and saved["jobs"]["own/books"]["adapter_bytes"] > 0
    table = (out / "domains_report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| domain"))
    assert "| head |" in header and "ms/example head" in header
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| domain", "| ---"))]
    assert [line.split(" | ")[0][2:] for line in body] == [*DOMAINS, f"{OVERALL} (own: routed by domain)"]
    assert all(line.count("|") == header.count("|") for line in body)
    assert not list(out.glob(".domains_report*"))  # atomic writes leave no temp files
