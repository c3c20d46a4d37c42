"""python -m lora_lab.export on tiny jobs: the dir's layout, what a server rebuilds from it, the card, ONNX, refusals.

Subprocess: the two command-line tests run `python -m lora_lab.export`, because its output line,
its exit code 2 and its one-line error are what they test; the rest calls export in-process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from lora_lab.artifacts import read_json
from lora_lab.errors import ConfigError
from lora_lab.export import onnx_check
from lora_lab.export.bundle import EXPORT_FILE, export_job
from lora_lab.models.classifier import Classifier, load_classifier
from lora_lab.train import train
from tests.helpers import TINY, compose_train, csv_job, save_hydra_config

TEXTS = [
    "we need 40 more units by friday, the line is down",
    "same order as last month please",
    "can you make it in blue with our logo",
    "do you carry the new sensor model",
]


def _train(tmp: Path, *overrides: str) -> Path:
    """A finished tiny job dir, as `python -m lora_lab.train` leaves it (config saved under .hydra/)."""
    cfg = compose_train(tmp / "job", [*TINY, "regime.learning_rate=5e-3", *overrides])
    save_hydra_config(cfg, tmp / "job")
    train(cfg)
    GlobalHydra.instance().clear()
    return tmp / "job"


@pytest.fixture(scope="module")
def lora_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA on a mean-pooled tiny BERT: merged/ and adapter/ (a PEFT dir plus the external head)."""
    return _train(tmp_path_factory.mktemp("lora"), "regime=lora")


@pytest.fixture(scope="module")
def full_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full fine-tune with HF's stock head: merged/ only."""
    return _train(tmp_path_factory.mktemp("full"), "regime=full", "backbone.pooling=cls")


@pytest.fixture(scope="module")
def lora_export(lora_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "sales"
    out.mkdir()  # an empty dir is a free place to export to
    export_job(lora_job, out)
    return out


def _logits(classifier: Classifier, tokenizer, texts: list[str] = TEXTS) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return classifier.eval()(enc["input_ids"], enc["attention_mask"])


def test_the_export_holds_merged_adapter_labels_tokenizer_metadata_and_card(lora_job: Path, lora_export: Path):
    for name in (
        "merged/model.safetensors",
        "merged/lora_lab_classifier.json",
        "adapter/adapter_model.safetensors",
        "adapter/head.safetensors",
        "labels.json",
        "tokenizer.json",
        "tokenizer_config.json",
        EXPORT_FILE,
        "README.md",
    ):
        assert (lora_export / name).is_file(), name
    assert not (lora_export / "onnx").exists() and not (lora_export / "adapter" / "README.md").exists()
    assert read_json(lora_export / "labels.json") == read_json(lora_job / "labels.json")
    meta, metrics = read_json(lora_export / EXPORT_FILE), read_json(lora_job / "metrics.json")
    assert read_json(lora_export / "adapter" / "adapter_config.json")["base_model_name_or_path"] == meta["base_model"]
    assert (meta["regime"], meta["rank"], meta["backbone"], meta["base_model"]) == (
        "lora",
        8,
        "tiny_bert",
        "random_init:tiny_bert",
    )
    assert meta["labels"] == list(read_json(lora_job / "labels.json")["id2label"].values())
    assert (
        meta["metrics"]["test/acc"] == metrics["test/acc"]
        and meta["metrics"]["test/f1_macro"] == metrics["test/f1_macro"]
    )
    assert meta["params"]["trainable"] == metrics["params/trainable"] and meta["seed"] == 42
    assert (meta["has_merged"], meta["has_adapter"], meta["has_onnx"]) == (True, True, False)
    assert meta["trained_at"].startswith("20") and meta["format_version"] == 1
    assert [p.name for p in lora_export.parent.iterdir()] == ["sales"]  # no temp dir left beside it
    # The exported merged model is the job's, read through the exported tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(str(lora_export))
    exported, job_model = load_classifier(lora_export / "merged"), load_classifier(lora_job / "merged")
    assert torch.equal(_logits(exported, tokenizer).argmax(-1), _logits(job_model, tokenizer).argmax(-1))


def test_the_adapter_on_the_base_rebuilt_from_the_metadata_gives_the_merged_logits(lora_export: Path):
    """What the server does: instantiate the backbone node, check the fingerprint, attach adapter/."""
    meta = read_json(lora_export / EXPORT_FILE)
    backbone = instantiate(meta["backbone_config"])
    assert backbone.fingerprint(meta["seed"]) == meta["base_fingerprint"]
    classifier = backbone.build_classifier(dict(enumerate(meta["labels"])), seed=meta["seed"])
    instantiate(meta["regime_config"]).load_adapter(classifier, lora_export / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(str(lora_export))
    merged = _logits(load_classifier(lora_export / "merged"), tokenizer)
    assert torch.allclose(_logits(classifier, tokenizer), merged, atol=1e-5)


def _front_matter_and_body(readme: Path) -> tuple[dict, str]:
    _, front, body = readme.read_text().split("---\n", 2)
    return yaml.safe_load(front), body


def test_the_model_card_carries_model_index_results_and_describes_the_model(lora_job: Path, lora_export: Path):
    card, body = _front_matter_and_body(lora_export / "README.md")
    metrics = read_json(lora_job / "metrics.json")
    result = card["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification" and result["dataset"]["split"] == "test"
    assert result["dataset"]["name"] == "b2b_sales_notes"
    scores = {m["type"]: m["value"] for m in result["metrics"]}
    assert scores == {"accuracy": metrics["test/acc"], "f1": metrics["test/f1_macro"]}
    assert card["library_name"] == "peft" and "lora" in card["tags"]
    assert "base_model" not in card  # a random model is no hub reference
    for text in (
        "| regime | lora |",
        "| rank | 8 |",
        "random_init:tiny_bert",
        f"{metrics['params/trainable']:,} of",
        "| learning rate | 0.005 |",
        f"| train | {metrics['data/train_rows']:,} |",
        "<details>",
        "Intended use and limits",
        "synthetic",
        "a test fixture",
    ):
        assert text in body, text
    provenance = read_json(lora_job / "provenance.json")
    shipped = read_json(lora_export / "provenance.json")  # beside the card, its paths under placeholders
    assert shipped["git"] == provenance["git"] and shipped["versions"] == provenance["versions"]
    assert [f["sha256"] for f in shipped["data_files"]] == [f["sha256"] for f in provenance["data_files"]]
    data_file = shipped["data_files"][0]
    assert data_file["path"].startswith("<") and not data_file["path"].startswith("/")
    for text in (
        "## Provenance",
        f"`{provenance['git']['commit']}`" if provenance["git"]["commit"] else "unknown (",
        f"| torch | {provenance['versions']['torch']} |",
        f"`{data_file['sha256']}`",
        data_file["path"],
    ):
        assert text in body, text


def test_a_full_fine_tune_exports_merged_only_and_onnx_agrees_with_pytorch(full_job: Path, tmp_path: Path):
    out = tmp_path / "full"
    export = export_job(full_job, out, onnx=True)
    meta, metrics = read_json(out / EXPORT_FILE), read_json(full_job / "metrics.json")
    assert (meta["has_merged"], meta["has_adapter"], meta["has_onnx"], meta["rank"]) == (True, False, True, None)
    card, body = _front_matter_and_body(out / "README.md")
    assert card["library_name"] == "transformers" and "| rank | none (regime full has no rank) |" in body
    check = read_json(out / "onnx" / "check.json")
    assert check == export.onnx_check and check["rows"] == metrics["data/test_rows"]
    assert check["agreement"] >= 0.995
    assert check["accuracy_pytorch"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert abs(check["accuracy_onnx"] - check["accuracy_pytorch"]) <= 1 - check["agreement"]
    # onnxruntime alone, on a batch of another size and length than the trace's, padded rows included.
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    enc = tokenizer(TEXTS, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})[0]
    np.testing.assert_allclose(logits, _logits(load_classifier(out / "merged"), tokenizer).numpy(), atol=1e-4)


def test_onnx_disagreeing_beyond_the_tolerance_is_an_error_that_leaves_no_export(
    full_job: Path, tmp_path: Path, monkeypatch
):
    fake = {
        "rows": 20,
        "agreement": 0.9,
        "disagreements": 2,
        "accuracy_pytorch": 0.5,
        "accuracy_onnx": 0.45,
        "max_abs_logit_diff": 1.0,
    }
    monkeypatch.setattr(onnx_check, "compare_on_test", lambda *args: fake)
    with pytest.raises(ConfigError, match=r"2 of 20 test rows .*onnx_tolerance=0.005"):
        export_job(full_job, tmp_path / "out", onnx=True)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_is_never_overwritten(lora_job: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"out=.*exists and is not empty.*new out="):
        export_job(lora_job, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="inside run_dir"):
        export_job(lora_job, lora_job / "export")


def test_a_dir_that_is_not_a_finished_job_is_refused(tmp_path: Path):
    (tmp_path / "job").mkdir()
    with pytest.raises(ConfigError, match=r"run_dir=.*no metrics.json .*not a finished lora_lab job"):
        export_job(tmp_path / "job", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _copy(job: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(job, tmp_path / "job"))


def test_onnx_needs_a_merged_model(lora_job: Path, tmp_path: Path):
    job = _copy(lora_job, tmp_path)
    shutil.rmtree(job / "merged")  # what a prompt-tuning job leaves: adapter/ alone
    with pytest.raises(ConfigError, match=r"onnx=true: .* has no merged/"):
        export_job(job, tmp_path / "out", onnx=True)
    assert not (tmp_path / "out").exists()
    export_job(job, tmp_path / "out")  # without onnx the adapter ships, with the base's tokenizer
    assert (tmp_path / "out" / "adapter").is_dir() and (tmp_path / "out" / "tokenizer.json").is_file()
    assert not (tmp_path / "out" / "merged").exists()


def test_a_pickle_in_the_job_is_refused(lora_job: Path, tmp_path: Path):
    job = _copy(lora_job, tmp_path)
    (job / "adapter" / "adapter_model.bin").write_bytes(b"not read")
    with pytest.raises(ConfigError, match=r"adapter/adapter_model.bin is in a pickle format"):
        export_job(job, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lora_lab.export", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_the_command_line_writes_the_export_and_says_where(lora_job: Path, tmp_path: Path):
    """Run from inside the job dir, which Hydra's cwd run dir must leave as it was (no .hydra/, no log)."""
    before = sorted(p.relative_to(lora_job) for p in lora_job.rglob("*"))
    done = _cli("run_dir=.", f"out={tmp_path / 'exported'}", cwd=lora_job)
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'exported'}: merged/, adapter/" in done.stdout
    assert sorted(p.relative_to(lora_job) for p in lora_job.rglob("*")) == before
    assert read_json(tmp_path / "exported" / EXPORT_FILE)["source_job"] == lora_job.name


def test_a_bad_run_dir_on_the_command_line_is_one_error_line_and_exit_2(tmp_path: Path):
    done = _cli(f"run_dir={tmp_path / 'nope'}", f"out={tmp_path / 'out'}", cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run_dir=" in errors[0] and "not a finished lora_lab job" in errors[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_no_path_of_the_training_machine_is_in_any_exported_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A job on a CSV in a data dir, exported: no text file names the job dir, the data dir, the
    virtualenv, the working dir or the home dir. The data file is named under <data dir> with its
    sha256; the backbone by what ships it; a server's dataset node by LORA_LAB_DATA_DIR."""
    job, data = csv_job(tmp_path)
    out = tmp_path / "exported"
    export_job(job, out)
    local = {
        "job dir": str(job.resolve()),
        "data dir": str(data.resolve()),
        "virtualenv": sys.prefix,
        "home": str(Path.home()),
        "working dir": os.getcwd(),
    }
    texts = {p: p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".safetensors"}
    assert {p.name for p in texts} >= {"README.md", EXPORT_FILE, "provenance.json", "adapter_config.json"}
    found = [(p.relative_to(out), what) for p, text in texts.items() for what, path in local.items() if path in text]
    assert found == []
    provenance = read_json(out / "provenance.json")
    (data_file,) = provenance["data_files"]
    assert data_file["path"] == "<data dir>/tickets/t.csv" and len(data_file["sha256"]) == 64
    card = (out / "README.md").read_text()
    assert "| <data dir>/tickets/t.csv | `" + data_file["sha256"] + "`" in card
    # A server reads the training rows (/v1/similar) from its own LORA_LAB_DATA_DIR.
    meta = read_json(out / EXPORT_FILE)
    assert meta["dataset_config"]["path"] == "${oc.env:LORA_LAB_DATA_DIR,data}/tickets/t.csv"
    monkeypatch.setenv("LORA_LAB_DATA_DIR", str(data))
    assert OmegaConf.create(meta["dataset_config"]).path == str(data / "tickets" / "t.csv")


def test_an_export_that_would_still_hold_a_local_path_is_refused_and_leaves_nothing(
    lora_job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The last check reads the files back: a field nobody scrubs (here: all of them) fails the export."""
    from lora_lab.export import bundle

    monkeypatch.setattr(bundle, "scrub", lambda value, roots: value)  # as if a new field were missed
    with pytest.raises(ConfigError, match=r"(?s)would publish paths of this machine.*\n  README.md: .*report it"):
        export_job(lora_job, tmp_path / "out")
    assert not (tmp_path / "out").exists()
