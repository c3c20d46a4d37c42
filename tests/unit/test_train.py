"""train() end to end on tiny backbones: artifacts, metrics, status, re-evaluation, guards."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file

from lora_lab.artifacts import read_json
from lora_lab.callbacks.ema import EMA
from lora_lab.cli.hydra_callbacks import FinishedDirError, RefuseFinishedDirs
from lora_lab.cli.run import is_ddp_worker
from lora_lab.config.hardware import launches_processes
from lora_lab.data.batching import PadCollator
from lora_lab.errors import ConfigError, DataError, UserError
from lora_lab.eval import evaluate
from lora_lab.job.record import JobRecord, fingerprint
from lora_lab.models.embedding import embed_split, head_linear
from lora_lab.models.fitted_heads import logistic_regression_head, prototype_head
from lora_lab.models.module import ClassifierModule
from lora_lab.train import check_relaunch, train
from tests.helpers import compose_train, save_hydra_config

REQUIRED_METRICS = [
    "test/acc",
    "test/f1_macro",
    "test/precision_macro",
    "test/recall_macro",
    "val/acc_best",
    "val/acc",
    "val/f1_macro",
    "latency/p50_ms",
    "latency/p95_ms",
    "params/trainable",
    "params/total",
    "params/trainable_pct",
    "artifact/adapter_bytes",
    "time/train_s",
    "throughput/train_examples_per_s",
    "memory/peak_rss_mb",
]


@pytest.mark.parametrize("regime", ["head", "lora", "full"])
def test_a_job_leaves_metrics_labels_adapter_and_merged_model(tiny_cfg, regime: str):
    cfg = tiny_cfg(f"regime={regime}", "regime.learning_rate=5e-3")
    run_dir = Path(cfg.paths.output_dir)
    save_hydra_config(cfg, run_dir)
    value = train(cfg)
    metrics = read_json(run_dir / "metrics.json")
    assert value == metrics["val/acc_best"] == metrics["val/acc"]  # the selected epoch's scores
    for key in REQUIRED_METRICS:
        assert isinstance(metrics[key], (int, float)), key
    assert 0 <= metrics["test/acc"] <= 1 and metrics["params/trainable"] <= metrics["params/total"]
    n_test = sum(map(sum, metrics["test/confusion_matrix"]))
    assert n_test == 20 == metrics["data/test_rows"]  # stratified: 5 classes x round(0.15 x 30 rows) = 5 x 4
    assert metrics["data/train_rows"] + metrics["data/validation_rows"] + n_test == 150
    assert isinstance(metrics["data/problems"], list)
    correct = sum(metrics["test/confusion_matrix"][i][i] for i in range(5))
    assert metrics["test/acc"] == pytest.approx(correct / n_test)
    assert set(metrics["test/f1_per_class"]) == set(read_json(run_dir / "labels.json")["id2label"].values())
    assert read_json(run_dir / "status.json")["state"] == "complete"
    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000
    assert (run_dir / "merged" / "model.safetensors").is_file()
    assert (run_dir / "adapter").is_dir() == (regime != "full")
    assert not (run_dir / "checkpoints").exists()
    assert not [p for p in run_dir.rglob(".*") if p.name != ".hydra" and ".hydra" not in p.parts]  # no temp leftovers
    if regime == "lora":
        assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
        assert metrics["artifact/adapter_bytes"] < 0.2 * metrics["artifact/merged_bytes"]
    # Re-evaluation from the saved job reproduces its test accuracy, from merged and from the adapter.
    for load in ("merged", "adapter") if regime != "full" else ("merged",):
        again = evaluate(run_dir, run_dir.parent / f"eval_{load}", load=load)
        assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6), load
    assert not (run_dir / "eval_metrics.json").exists()  # eval never writes into the job dir


def test_training_learns_the_synthetic_task_beyond_chance(tiny_cfg):
    cfg = tiny_cfg("regime=full", "dataset.n_per_class=80", "trainer.max_epochs=4", "regime.learning_rate=3e-3")
    assert train(cfg) > 0.45  # 5 classes: chance is 0.2


def test_a_failing_job_records_its_error_and_leaves_no_metrics(tiny_cfg, tmp_path: Path):
    table = tmp_path / "tickets.csv"
    table.write_text("body,label\nhello,a\n")  # no `text` column: found only when the rows are read
    cfg = tiny_cfg("dataset=csv", f"dataset.path={table}")
    with pytest.raises(DataError, match="text"):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed" and status["error"].startswith("DataError")
    assert not (run_dir / "metrics.json").exists()


def test_a_batch_that_does_not_fit_in_memory_names_the_settings_to_lower(tiny_cfg, monkeypatch):
    from lora_lab.models.module import ClassifierModule

    def allocation_fails(self, batch, batch_idx):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes.")

    monkeypatch.setattr(ClassifierModule, "training_step", allocation_fails)
    cfg = tiny_cfg("data.batch_size=16")
    with pytest.raises(
        ConfigError, match=r"data.batch_size=16 texts .* Lower data.batch_size \(e.g. data.batch_size=8"
    ):
        train(cfg)
    status = read_json(Path(cfg.paths.output_dir) / "status.json")
    assert status["state"] == "failed" and "can't allocate memory" in status["error"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("rank=0", "rank=0"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("dataset.val_fraction=0.9", "together leave rows for training"),
        ("trainer=gpu", "no CUDA GPU"),
        ("trainer.precision=16-mixed", "fp16 autocast is a GPU feature"),
        ("module.label_smoothing=1.0", r"module.label_smoothing=1.0: must lie in \[0, 1\)"),
        ("dataset=csv dataset.path=/nonexistent/tickets.csv", "/nonexistent/tickets.csv: no such file"),
        ("train_rows=0", "train_rows=0: must be a positive integer"),
        ("module.max_tokens_per_pass=0", "module.max_tokens_per_pass=0: must be a positive integer"),
        ("trainer=ddp_cpu stack=tfidf", "stack=tfidf with a DDP trainer"),
    ],
)
def test_bad_configs_fail_fast_naming_the_key(tiny_cfg, override: str, message: str):
    cfg = tiny_cfg(*override.split())
    with pytest.raises(UserError, match=message):
        train(cfg)
    assert not Path(cfg.paths.output_dir).exists()  # nothing half-written


@pytest.mark.parametrize(
    "override,message",
    [
        ("module.head_init=kmeans", "module.head_init='kmeans': use auto, null"),
        ("backbone.pooling=cls module.head_init=prototype", "set backbone.pooling=mean"),
    ],
)
def test_config_errors_found_while_building_fail_the_job_with_the_message(tiny_cfg, override: str, message: str):
    # Settings only the model can judge are checked as it is built: the job records them as its failure.
    cfg = tiny_cfg(*override.split())
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert read_json(run_dir / "status.json")["state"] == "failed" and not (run_dir / "metrics.json").exists()


def test_finished_dirs_are_never_reused(tmp_path: Path):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "status.json").write_text(json.dumps({"state": "complete"}))
    (tmp_path / "done" / "metrics.json").write_text("{}")
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "status.json").write_text(json.dumps({"state": "running"}))
    guard = RefuseFinishedDirs()
    with pytest.raises(FinishedDirError, match="holds a finished job"):
        guard.on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "done")}}}))
    with pytest.raises(FinishedDirError, match="did not finish .* Add resume=true to continue it"):
        guard.on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "killed")}}}))
    with pytest.raises(FinishedDirError, match="earlier multirun"):
        guard.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    guard.on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "fresh")}}}))


def test_fingerprint_ignores_rank_only_where_the_regime_ignores_it(tiny_cfg, tmp_path: Path):
    def fp(*overrides: str) -> str:
        cfg = tiny_cfg(*overrides)
        cfg.paths.output_dir = str(tmp_path / "_".join(overrides))  # every job has its own dir
        return fingerprint(cfg)

    assert fp("regime=full", "rank=8") == fp("regime=full", "rank=16")
    assert fp("regime=lora", "rank=8") != fp("regime=lora", "rank=16")
    assert fp("regime=full", "seed=1") != fp("regime=full", "seed=2")
    assert fp("regime=full", "logger=none") == fp("regime=full", "logger=csv")

    sweep = tmp_path / "sweep"
    first, second = (tiny_cfg("regime=full", f"rank={r}") for r in (8, 16))
    JobRecord(sweep / "0", first, sweep).start()
    assert JobRecord(sweep / "1", second, sweep).find_original() == sweep / "0"
    assert JobRecord(sweep / "1", tiny_cfg("regime=lora"), sweep).find_original() is None


def test_wandb_logs_offline_with_group_and_tags(tiny_cfg, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline must come from lora_lab's config
    cfg = tiny_cfg("logger=wandb")
    with open_dict(cfg):
        cfg.logger.wandb.group = "sweep-abc"
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run in the job dir"
    assert (run_dir / "csv" / "metrics.csv").is_file()  # CSV stays on beside W&B
    # Offline runs keep run record + config in the protobuf log that `wandb sync` uploads.
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    expected_keys = (b"val/acc_best", b"test/acc", b"params/trainable", b"artifact/adapter_bytes", b"time/train_s")
    for expected in (b"sweep-abc", b"tiny_bert", b"b2b_sales_notes", b"rank=8", *expected_keys):
        assert expected in record, expected


def test_class_weights_inverse_frequency_and_given(tiny_cfg, tiny_job, tmp_path: Path):
    path = tmp_path / "imbalanced.csv"
    rows = (
        ["text,label"]
        + [f"refund request {i},refund" for i in range(90)]
        + [f"login trouble {i},login" for i in range(30)]
    )
    path.write_text("\n".join(rows) + "\n")
    cfg = tiny_cfg("dataset=csv", f"dataset.path={path}", "module.class_weights=inverse_frequency", "regime=head")
    run_dir = Path(cfg.paths.output_dir)
    train(cfg)
    assert read_json(run_dir / "status.json")["state"] == "complete"

    # The weights themselves: n / (k * count) on the training split.
    job = tiny_job("dataset=csv", f"dataset.path={path}", "module.class_weights=inverse_frequency", "regime=head")
    dm, module = job.datamodule, job.module
    module.trainer = type("T", (), {"datamodule": dm})()  # what Lightning attaches before setup()
    module.setup("fit")
    counts = torch.bincount(torch.tensor(dm.tokenized["train"].labels))
    expected = counts.sum() / (2 * counts.float())
    torch.testing.assert_close(module.loss_weights, expected)
    assert module.loss_weights[dm.labels.index("login")] > 1 > module.loss_weights[dm.labels.index("refund")]
    with pytest.raises(ConfigError, match="3 weights for 2 labels"):
        ClassifierModule(job.classifier, learning_rate=1e-3, class_weights=[1.0, 2.0, 3.0])


def test_label_smoothing_shapes_the_training_loss_only(tiny_job):
    job = tiny_job("regime=full")
    batch = next(iter(job.datamodule.train_dataloader()))
    classifier = job.classifier.eval()  # no dropout: same logits twice
    plain, smoothed = (ClassifierModule(classifier, learning_rate=1e-3, label_smoothing=eps) for eps in (0.0, 0.2))
    plain.classifier.eval()
    loss, logits = plain._loss_and_logits(batch)
    loss_smoothed, _ = smoothed._loss_and_logits(batch, smoothed.hparams.label_smoothing)
    # (1 - eps) * CE + eps * mean over labels of -log p: the formula, not just "different".
    log_p = logits.log_softmax(-1)
    expected = 0.8 * loss + 0.2 * (-log_p.mean(-1)).mean()
    torch.testing.assert_close(loss_smoothed, expected)
    assert smoothed.hparams.label_smoothing == 0.2


@pytest.mark.parametrize("method", ["logistic_regression", "prototype"])
def test_head_init_starts_training_from_the_fitted_probe(tiny_job, method: str):
    job = tiny_job("dataset.n_per_class=40", "regime=full", f"module.head_init={method}")
    dm, classifier, module = job.datamodule, job.classifier, job.module
    # What on_fit_start() reads: a fresh fit (no checkpoint to resume).
    module.trainer = type("T", (), {"datamodule": dm, "estimated_stepping_batches": 10, "ckpt_path": None})()
    x, y = embed_split(classifier, dm)
    random_acc = (classifier.eval()(*_train_tensors(dm)).argmax(-1) == y).float().mean()
    module.on_fit_start()
    n = len(dm.id2label)
    weight, bias = (
        logistic_regression_head(x, y, n, 1.0, 1000, dm.seed)
        if method == "logistic_regression"
        else prototype_head(x, y, n, "cosine", 20.0)
    )
    torch.testing.assert_close(head_linear(classifier).weight, weight)
    torch.testing.assert_close(head_linear(classifier).bias, bias)
    # The classifier now predicts what the probe predicts, well above its random head.
    fitted_acc = (classifier.eval()(*_train_tensors(dm)).argmax(-1) == y).float().mean()
    assert torch.equal(classifier(*_train_tensors(dm)).argmax(-1), (x @ weight.T + bias).argmax(-1))
    assert fitted_acc > random_acc + 0.2, (float(random_acc), float(fitted_acc))


def _train_tensors(dm):
    """(input_ids, attention_mask) of the whole training split, padded to its longest row."""

    batch = PadCollator(dm.tokenizer.pad_token_id)([(ids, 0) for ids in dm.tokenized["train"].input_ids])
    return batch["input_ids"], batch["attention_mask"]


def test_a_job_with_head_init_trains_and_ships(tiny_cfg):
    cfg = tiny_cfg("regime=lora", "module.head_init=prototype")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert read_json(run_dir / "status.json")["state"] == "complete"
    assert (run_dir / "adapter").is_dir() and (run_dir / "merged").is_dir()


@pytest.mark.parametrize(
    "overrides, head",
    [
        ([], "logistic_regression on the frozen backbone's embeddings (auto: LP-FT)"),
        (["backbone.pooling=cls"], "random (auto: this head exposes no pooled embedding to fit on)"),
        (["module.head_init=null"], "random (module.head_init=null)"),
    ],
)
def test_the_default_head_init_fits_the_head_where_it_can_and_says_which(tiny_cfg, overrides, head):
    """module.head_init=auto (the default) is LP-FT on a pooled backbone, a random head on HF's stock
    (cls) head, and the job's metrics and closing table say which."""
    cfg = tiny_cfg("regime=lora", *overrides)
    assert cfg.module.head_init == ("auto" if not overrides or "pooling" in overrides[0] else None)
    train(cfg)
    assert read_json(Path(cfg.paths.output_dir) / "metrics.json")["train/head_init"] == head


def test_no_checkpoint_callback_tests_the_last_epoch(tiny_cfg):
    # `callbacks.model_checkpoint=null` (fixed-epoch training, e.g. on nearly all rows) must not
    # hand Lightning a None callback.
    cfg = tiny_cfg("regime=head", "callbacks.model_checkpoint=null")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert read_json(run_dir / "metrics.json")["model_selection"] == "last_epoch"
    assert not list(run_dir.rglob("*.ckpt"))  # nor Lightning's own every-epoch checkpoint


def test_callbacks_ema_validates_tests_and_ships_the_averaged_weights(tiny_cfg, tmp_path: Path):
    def trained(name: str, *overrides: str) -> Path:
        cfg = tiny_cfg("regime=head", "trainer.max_epochs=2", "keep_checkpoints=true", *overrides)
        cfg.paths.output_dir = str(tmp_path / name)
        train(cfg)
        return Path(cfg.paths.output_dir)

    def head(run_dir: Path) -> torch.Tensor:
        return load_file(str(run_dir / "merged" / "head.safetensors"))["classifier_head.1.weight"]

    plain = head(trained("plain"))
    torch.testing.assert_close(head(trained("plain_again")), plain)  # same seed, same batches: same weights
    ema_dir = trained("ema", "callbacks=ema", "callbacks.ema.decay=0.5")
    checkpoint = torch.load(ema_dir / "checkpoints" / "best.ckpt", weights_only=False)
    key = "classifier.classifier_head.1.weight"
    averaged, current = checkpoint["state_dict"][key], checkpoint["current_model_state"][key]
    assert not torch.allclose(averaged, current)  # the average lags the training weights
    # The shipped model is the averaged one that validation chose, not the training weights.
    torch.testing.assert_close(head(ema_dir), averaged)
    assert not torch.allclose(head(ema_dir), plain)


def test_ema_update_is_decay_times_average_plus_the_rest_times_weights():
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

    module, ema = Tiny(), EMA(decay=0.9, use_buffers=False)
    ema.setup(None, module, "fit")  # builds the AveragedModel with the foreach lerp
    first = module.linear.weight.detach().clone()
    ema._average_model.update_parameters(module)  # the first update copies
    with torch.no_grad():
        module.linear.weight.add_(1.0)
    ema._average_model.update_parameters(module)
    torch.testing.assert_close(ema._average_model.module.linear.weight, 0.9 * first + 0.1 * (first + 1.0))


@pytest.mark.parametrize(("trainer", "launches"), [("cpu", False), ("gpu", False), ("ddp", True), ("ddp_cpu", True)])
def test_ddp_trainers_relaunch_the_command_so_only_a_single_train_run_may_use_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer: str, launches: bool
):
    cfg = compose_train(tmp_path, [f"trainer={trainer}"])
    assert launches_processes(cfg.trainer) is launches
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning gives the process it starts for rank 1
    assert is_ddp_worker(cfg) is launches  # a stray LOCAL_RANK never turns a one-process job into a silent worker
    if launches:  # here the command is pytest's, which Lightning would re-run for rank 1
        with pytest.raises(ConfigError, match=r"re-running the command, here `.*pytest"):
            check_relaunch(cfg)
    else:
        check_relaunch(cfg)
