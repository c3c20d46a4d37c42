"""regime=dendrites (PerforatedAI) on tiny_bert: what it wraps, what trains, restructuring, artifacts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from peft.tuners.lora import Linear as LoraLinear

from lora_lab.artifacts import read_json
from lora_lab.eval import evaluate
from lora_lab.job.outputs import write_job_outputs
from lora_lab.models.classifier import load_classifier
from lora_lab.regimes.dendrite_switching import DendriteSwitching
from lora_lab.regimes.dendrites import DendriteMergeError, Dendrites, matching_modules
from lora_lab.regimes.perforated import contributing, dendrite_sets, pai_call, settle, wrapped_modules
from lora_lab.train import train
from tests.helpers import TINY, compose_train, logits, save_hydra_config, train_steps

LABELS = {0: "a", 1: "b", 2: "c"}


def _build(tiny_job, *overrides: str):
    job = tiny_job("regime=dendrites", *overrides)
    return job.classifier, job.regime, job.backbone


def _add_dendrite_set(classifier, regime) -> None:
    """One validation score into PerforatedAI in every-epoch mode: it adds a dendrite set."""
    regime.pai_tracker.set_optimizer_instance(torch.optim.AdamW(classifier.parameters()))
    with pai_call(regime.work_dir):
        net, restructured, complete = regime.pai_tracker.add_validation_score(0.5, classifier)
    settle(classifier)
    assert net is classifier and restructured and not complete


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_apply_wraps_every_target_the_loss_reaches_and_trains_only_the_base_regimes_weights(tiny_job, pooling):
    classifier, regime, _ = _build(tiny_job, f"backbone.pooling={pooling}")
    wrapped = wrapped_modules(classifier)
    targets = set(matching_modules(classifier, ["query", "key", "value", "dense"]))
    # BERT's pooler feeds the CLS head only; mean pooling never reaches it.
    assert set(wrapped) == (targets if pooling == "cls" else {n for n in targets if ".pooler." not in n})
    assert all(isinstance(m.main_module, LoraLinear) for m in wrapped.values())
    assert set(dendrite_sets(classifier).values()) == {0}
    trainable = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or classifier.is_head_parameter(n) for n in trainable)
    assert not any("parent_module" in n for n in trainable), "PerforatedAI's template copies must stay frozen"


def test_a_restructure_adds_dendrites_that_train_and_the_adapter_reproduces(tiny_job, tmp_path: Path):
    classifier, regime, backbone = _build(tiny_job, "regime.switch_mode=every_epoch")
    train_steps(classifier, steps=1)  # the first backward sizes each module's dendrites
    before = logits(classifier)
    _add_dendrite_set(classifier, regime)
    assert set(dendrite_sets(classifier).values()) == {1}
    # PerforatedAI reloaded its best model (this epoch) and added sets that weigh 0: same function.
    torch.testing.assert_close(logits(classifier), before, atol=1e-5, rtol=1e-5)
    assert not contributing(classifier)

    frozen = {n: p.detach().clone() for n, p in classifier.named_parameters() if not p.requires_grad}
    dendrites = {n: p.detach().clone() for n, p in classifier.named_parameters() if ".dendrite_module.layers." in n}
    assert dendrites and all(classifier.get_parameter(n).requires_grad for n in dendrites)
    train_steps(classifier, steps=3)  # step 1 moves the weights into the neurons off 0, then the dendrites learn
    assert all(torch.equal(p, frozen[n]) for n, p in classifier.named_parameters() if n in frozen)
    assert all(not torch.equal(classifier.get_parameter(n), d) for n, d in dendrites.items())
    assert contributing(classifier)
    trained = logits(classifier)

    regime.save_adapter(classifier, tmp_path / "adapter")
    fresh = backbone.build_classifier(classifier.id2label, seed=42)
    regime.load_adapter(fresh, tmp_path / "adapter")
    assert set(dendrite_sets(fresh).values()) == {1}
    torch.testing.assert_close(logits(fresh), trained)
    with pytest.raises(DendriteMergeError, match="no merged form; deploy adapter/"):
        regime.merge(classifier)
    # The job's outputs: adapter/ only, and no merged size to report.
    out = tmp_path / "job"
    out.mkdir()
    metrics = write_job_outputs(
        out,
        classifier,
        regime,
        backbone.tokenizer,
        {"test/acc": 1.0, "test/confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
    )
    assert (out / "adapter" / "dendrites.safetensors").is_file() and not (out / "merged").exists()
    assert metrics["artifact/merged_bytes"] is None and metrics["artifact/adapter_bytes"] > 0
    assert read_json(out / "metrics.json")["artifact/merged_bytes"] is None


def test_merge_is_exact_while_no_dendrite_contributes(tiny_job, tmp_path: Path):
    classifier, regime, backbone = _build(tiny_job, "regime.switch_mode=every_epoch")
    train_steps(classifier, steps=1)
    _add_dendrite_set(classifier, regime)
    expected = logits(classifier)
    assert regime.can_merge(classifier)
    regime.merge(classifier)
    assert not wrapped_modules(classifier) and not any("lora_" in n for n, _ in classifier.named_parameters())
    classifier.save_merged(tmp_path / "merged", backbone.tokenizer)
    torch.testing.assert_close(logits(load_classifier(tmp_path / "merged")), expected, atol=1e-5, rtol=1e-5)


def test_full_base_and_bad_settings(tiny_job, tiny_cfg):
    classifier, regime, _ = _build(tiny_job, "regime@regime.base=full")
    assert regime.learning_rate == 1e-4  # the base regime's step size
    assert all(isinstance(m.main_module, torch.nn.Linear) for m in wrapped_modules(classifier).values())
    assert all(p.requires_grad for n, p in classifier.named_parameters() if "parent_module" not in n)
    with pytest.raises(InstantiationException, match=r"regime.base='head': dendrites grow on \('lora', 'full'\)"):
        instantiate(tiny_cfg("regime=dendrites", "regime@regime.base=head").regime)
    with pytest.raises(InstantiationException, match="regime.switch_mode='sometimes': choose one of"):
        instantiate(tiny_cfg("regime=dendrites", "regime.switch_mode=sometimes").regime)


@dataclass
class Job:
    run_dir: Path
    switching: DendriteSwitching


@pytest.fixture(scope="module")
def dendrite_job(tmp_path_factory) -> Job:
    """A 3-epoch tiny job in which PerforatedAI may add a dendrite set after every epoch."""
    run_dir = tmp_path_factory.mktemp("dendrites") / "job"
    cfg = compose_train(run_dir, [*TINY, "regime=dendrites", "trainer.max_epochs=3", "regime.learning_rate=5e-3"])
    save_hydra_config(cfg, run_dir)
    seen: list[DendriteSwitching] = []
    make_callbacks = Dendrites.callbacks

    def keep_callbacks(self: Dendrites) -> list:
        seen.extend(callbacks := make_callbacks(self))
        return callbacks

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Dendrites, "callbacks", keep_callbacks)
        train(cfg)
    GlobalHydra.instance().clear()
    return Job(run_dir, seen[0])


def test_the_job_restructures_rebuilds_the_optimizer_and_tests_the_best_epoch(dendrite_job: Job):
    history = dendrite_job.switching.history
    assert len(history) == 3 and dendrite_job.switching.restructures >= 1
    assert max(h["dendrite_sets"] for h in history) >= 1
    # After every epoch the optimizer holds every trainable weight, the dendrites added since included.
    assert all(h["optimized"] == h["trainable"] for h in history)
    rows = list(csv.DictReader(open(dendrite_job.run_dir / "csv" / "metrics.csv")))
    # test/acc is logged only if trainer.test(ckpt_path="best") loaded the (rewritten) best checkpoint.
    assert any(r.get("test/acc") for r in rows)
    assert any(r.get("dendrites/sets") for r in rows)


def test_the_job_writes_metrics_and_eval_rebuilds_its_adapter(dendrite_job: Job, tmp_path: Path):
    metrics = read_json(dendrite_job.run_dir / "metrics.json")
    assert metrics["params/trainable"] > 0 and metrics["time/train_s"] > 0
    assert (dendrite_job.run_dir / "adapter" / "dendrites.safetensors").is_file()
    # merged/ exists exactly when the tested model's dendrites leave its output unchanged.
    assert (dendrite_job.run_dir / "merged").is_dir() == (metrics["artifact/merged_bytes"] is not None)
    again = evaluate(dendrite_job.run_dir, tmp_path / "eval", load="adapter")
    assert again["test/acc"] == pytest.approx(metrics["test/acc"])
