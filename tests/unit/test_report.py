"""python -m lora_lab.report on a real tiny multirun: tables, states, seeds, best, plots,
self-contained HTML, errors."""

from __future__ import annotations

import re
import shutil
import statistics
from pathlib import Path

import optuna
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write
from PIL import Image

from lora_lab.artifacts import read_json, write_json
from lora_lab.job.dir import JobDir
from lora_lab.report.__main__ import main
from lora_lab.report.aggregate import ConfigGroup, best_groups, compare, pareto_front
from lora_lab.report.build import build_report
from lora_lab.report.collect import JobRow, _set_variants
from lora_lab.report.errors import ReportError
from lora_lab.report.publish import staged_report_dir
from lora_lab.report.study import load_study
from lora_lab.train import train
from tests.helpers import TINY, compose_train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A search space as a sweeper would sample it.
SPACE = {
    "regime.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "rank": optuna.distributions.CategoricalDistribution([4, 8, 16]),
}
# job number -> overrides: two seeds each of LoRA and head, head x rank 16 (head reads no rank: a
# duplicate of job 2, not trained) and a job whose data file does not exist (failed).
SWEEP = {
    0: ["regime=lora", "seed=1"],
    1: ["regime=lora", "seed=2"],
    2: ["regime=head", "seed=1"],
    3: ["regime=head", "seed=2"],
    4: ["regime=head", "seed=1", "rank=16"],
    5: ["dataset=csv", "dataset.path=/nonexistent/tickets.csv", "seed=1"],
}


def run_job(sweep: Path, num: int, overrides: list[str]) -> None:
    """One job of a multirun as Hydra's launcher runs it: .hydra/ written first, then train() in MULTIRUN mode."""
    # Two training steps per job are enough for a report (its numbers need not be good).
    overrides = ["trainer.limit_train_batches=2", *overrides]
    base = (
        TINY
        if not any(o.startswith("dataset=") for o in overrides)
        else [o for o in TINY if not o.startswith("dataset.")]
    )
    run_dir = sweep / str(num)
    cfg = compose_train(run_dir, [*base, *overrides])
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep)
    HydraConfig().set_config(cfg)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(list(cfg.hydra.overrides.task), run_dir / ".hydra" / "overrides.yaml")
    train(cfg)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny multirun (4 trained jobs, a duplicate, a failure); tests copy it before changing it."""
    sweep = tmp_path_factory.mktemp("sweep")
    for num, overrides in SWEEP.items():
        if num == 5:
            with pytest.raises(Exception, match="no such file"):
                run_job(sweep, num, overrides)
        else:
            run_job(sweep, num, overrides)
    return sweep


@pytest.fixture(scope="module")
def report(sweep: Path) -> Path:
    """The report in its default place, <sweep>/report, with job artifacts fingerprinted before and after."""
    before = _snapshot(sweep)
    out = build_report(sweep)
    assert _snapshot(sweep) == before, "the report changed a job's artifacts"
    return out


def test_jobs_table_has_every_job_with_its_state(sweep: Path, report: Path):
    rows = {r["job"]: r for r in md_table(report / "report.md", "Jobs")}
    assert sorted(rows) == ["0", "1", "2", "3", "4", "5"]
    assert {n: r["state"] for n, r in rows.items()} == {
        "0": "complete",
        "1": "complete",
        "2": "complete",
        "3": "complete",
        "4": "duplicate",
        "5": "failed",
    }
    assert rows["4"]["note"] == "repeats job 2"
    assert "no such file" in rows["5"]["note"]
    assert rows["0"]["rank"] == "8" and rows["2"]["rank"] == "-"  # head reads no rank
    for n in ("0", "2"):
        metrics = read_json(sweep / n / "metrics.json")
        assert rows[n]["test acc"] == f"{metrics['test/acc']:.4f}"
        assert rows[n]["trainable params"] == f"{metrics['params/trainable']:,}"
        assert rows[n]["adapter MiB"] == f"{metrics['artifact/adapter_bytes'] / 2**20:.2f}"
    assert rows["4"]["test acc"] == rows["5"]["test acc"] == "-"


def test_seeds_are_aggregated_and_the_best_config_is_marked(sweep: Path, report: Path):
    configs = {r["config"]: r for r in md_table(report / "report.md", "Configurations over seeds")}
    assert sorted(configs) == ["head", "lora r=8"]  # the duplicate and the failure form no configuration
    val = {}
    for name, jobs in (("lora r=8", ["0", "1"]), ("head", ["2", "3"])):
        metrics = [read_json(sweep / n / "metrics.json") for n in jobs]
        acc = [m["test/acc"] for m in metrics]
        assert configs[name]["seeds"] == "1, 2" and configs[name]["jobs"] == ", ".join(jobs)
        assert (
            configs[name]["test/acc mean ± std (n)"] == f"{statistics.fmean(acc):.3f} ± {statistics.stdev(acc):.3f} (2)"
        )
        val[name] = (
            statistics.fmean(m["val/acc_best"] for m in metrics),
            -metrics[0]["params/trainable"],
            jobs,
            metrics,
        )
    # Selection on mean validation accuracy, ties to fewer parameters; then that config's best seed.
    winner = max(val, key=lambda k: val[k][:2])
    assert [n for n, r in configs.items() if r["best"] == "★"] == [winner]
    jobs, metrics = val[winner][2], val[winner][3]
    best_seed = jobs[max(range(2), key=lambda i: (metrics[i]["val/acc_best"], i == 0))]
    marked = [r["job"] for r in md_table(report / "report.md", "Jobs") if r["best"] == "★"]
    assert marked == [best_seed]
    assert (report / f"confusion_matrix_job_{best_seed}.png").is_file()
    # Two regimes, two seeds each: the comparison states its rule and a verdict.
    comparison = md_table(report / "report.md", "Are the regimes apart?")
    assert len(comparison) == 1 and comparison[0]["verdict"] in ("within noise", "apart")
    assert "Welch's t-test" in (report / "report.md").read_text()


def test_plots_are_valid_pngs_and_the_html_is_self_contained(report: Path):
    md = (report / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"accuracy_vs_params.png", "accuracy_vs_train_time.png", "accuracy_by_config.png"} <= set(linked)
    for name in linked:
        data = (report / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(report / name) as image:
            image.verify()
            assert min(image.size) > 200
    html = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "an external reference in report.html"
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/png;base64,') == len(linked)


def test_a_report_replaces_only_an_earlier_report_and_never_enters_a_job_dir(sweep: Path, report: Path, tmp_path: Path):
    out = tmp_path / "report"
    for text in ("first", "second"):
        with staged_report_dir(out) as tmp:
            (tmp / "report.md").write_text(text)
            if text == "first":
                (tmp / "stale.png").write_bytes(PNG_SIGNATURE)
    assert (out / "report.md").read_text() == "second" and not (out / "stale.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"], "no temp dir left behind"
    with pytest.raises(RuntimeError), staged_report_dir(out) as tmp:
        (tmp / "report.md").write_text("half")
        raise RuntimeError("a plot failed")
    assert (out / "report.md").read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["report"]
    with pytest.raises(ReportError, match="lies in the job dir"):
        build_report(sweep, out=sweep / "0" / "report")
    assert not (sweep / "0" / "report").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(ReportError, match="holds no earlier report"):
        build_report(sweep, out=tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"


def test_missing_empty_and_single_job_dirs_give_clear_errors(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    with pytest.raises(ReportError, match="is not a directory"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no job dirs in"):
        build_report(tmp_path / "empty")
    with pytest.raises(ReportError, match="is a single job's dir"):
        build_report(sweep / "0")
    assert main([str(tmp_path / "empty")]) == 2
    assert "no job dirs in" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report").exists()


def test_wandb_offline_logs_the_tables_and_plots_in_the_sweeps_group(sweep: Path, tmp_path: Path):
    # W&B starts its service process: several seconds on top of the report
    copy = _light_copy(sweep, tmp_path / "sweep")
    assert main([str(copy), "--wandb"]) == 0
    run = next((copy / "wandb").glob("offline-run-*"))
    record = next(run.glob("run-*.wandb")).read_bytes()
    for expected in (copy.name.encode(), b"report", b"accuracy_vs_params"):
        assert expected in record, expected
    tables = list((run / "files" / "media" / "table").glob("jobs_*.table.json"))
    assert len(tables) == 1
    table = read_json(tables[0])
    assert table["columns"][0] == "job" and [row[0] for row in table["data"]] == ["0", "1", "2", "3", "4", "5"]
    assert len(list((run / "files" / "media" / "images").glob("*.png"))) >= 4
    # The same front (members marked) and the configurations with their 95% interval column.
    (front,) = [read_json(p) for p in (run / "files" / "media" / "table").glob("front_*.table.json")]
    assert front["columns"][-2:] == ["front", "job dir"] and any("★" in row[-2] for row in front["data"])
    (configs,) = [read_json(p) for p in (run / "files" / "media" / "table").glob("configurations_*.table.json")]
    assert any("95%" in column for column in configs["columns"]), configs["columns"]


def test_an_optuna_sweep_gets_history_importances_and_its_trial_states(sweep: Path, tmp_path: Path):
    copy = _light_copy(sweep, tmp_path / "sweep")
    # Trial n ran job n; trial 3 was pruned, trial 5 (the failed job) failed;
    # the duplicate (4) reports its original's value.
    study = _study(
        tmp_path,
        "sweep",
        {3: optuna.trial.TrialState.PRUNED, 5: optuna.trial.TrialState.FAIL},
        values={n: read_json(copy / str(2 if n == 4 else n) / "metrics.json")["val/acc_best"] for n in (0, 1, 2, 4)},
    )
    write_json(
        copy / "study.json",
        {
            "storage": study.storage_url,
            "study_name": "sweep",
            "direction": "maximize",
            "optimized_metric": "val/acc_best",
        },
    )
    out = build_report(copy)
    rows = {r["job"]: r for r in md_table(out / "report.md", "Jobs")}
    assert rows["3"]["state"] == "pruned" and rows["3"]["trial"] == "3 PRUNED"
    assert rows["0"]["trial"] == "0 COMPLETE" and rows["5"]["trial"] == "5 FAIL"
    configs = {r["config"]: r for r in md_table(out / "report.md", "Configurations over seeds")}
    assert configs["head"]["seeds"] == "1"  # the pruned seed is left out
    md = (out / "report.md").read_text()
    assert "4 complete, 1 fail, 1 pruned" in md
    for name in ("optuna_history.png", "optuna_importances.png"):
        assert f"]({name})" in md and (out / name).read_bytes().startswith(PNG_SIGNATURE)


def test_importances_need_two_completed_trials_and_a_varying_parameter(tmp_path: Path):
    fixed = {"rank": optuna.distributions.CategoricalDistribution([8])}
    for values, space, expected in (
        ({0: 0.5}, SPACE, "at least 2 completed trials; this study has 1"),
        ({0: 0.5, 1: 0.6}, fixed, "a parameter that took two values"),
    ):
        name = f"s{len(values)}"
        study = _study(tmp_path, name, {}, values=values, space=space)
        write_json(tmp_path / "study.json", {"storage": study.storage_url, "study_name": name})
        importances, note = load_study(tmp_path).importances()
        assert importances == {} and expected in note
    write_json(tmp_path / "study.json", {"storage": f"sqlite:///{tmp_path}/gone.db", "study_name": "s"})
    with pytest.raises(ReportError, match="gone.db does not exist"):
        load_study(tmp_path)
    assert not (tmp_path / "gone.db").exists()  # optuna would have created an empty one


def test_the_front_marks_its_members_and_knee_and_prints_the_commands_that_ship_them(sweep: Path, report: Path):
    rows = md_table(report / "report.md", "Which configuration for the compute?")
    assert {r["configuration"] for r in rows} == {"lora r=8", "head"}
    assert all(r["latency/p50_ms"] != "-" and r["artifact/adapter_bytes"] != "-" for r in rows)
    assert any("★" in r["front"] for r in rows) and sum("◆" in r["front"] for r in rows) == 1
    md = (report / "report.md").read_text()
    assert f"Serve: `python -m lora_lab.serve adapters.b2b_sales_notes={sweep} pick=best`" in md
    assert f"export: `python -m lora_lab.export run_dir={sweep} pick=best out=exports/b2b_sales_notes`" in md
    assert 'pick="latency/p50_ms<=20"' in md or "best val/acc_best with latency/p50_ms<=20: none." in md


def test_jobs_record_their_test_answers_and_the_report_pairs_winner_and_runner_up(sweep: Path, report: Path):
    for n in (0, 1, 2, 3):
        correct = JobDir(sweep / str(n)).test_correct()
        assert sum(correct) / len(correct) == pytest.approx(read_json(sweep / str(n) / "metrics.json")["test/acc"])
    md = (report / "report.md").read_text()
    section = md.split("## Winner against runner-up\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(
        r"(beats|loses to|within noise of) .*paired bootstrap over \d+ test rows, 2 and 2 seed\(s\)", section
    )
    rows = md_table(report / "report.md", "Configurations over seeds")
    assert all(re.fullmatch(r"0\.\d{4} ± 0\.\d{4}", r["test/acc 95% CI (t over seeds)"]) for r in rows)


def test_a_multi_objective_study_reports_on_its_own_objectives(sweep: Path, tmp_path: Path):
    copy = _light_copy(sweep, tmp_path / "sweep")
    objectives = {"val/acc_best": "maximize", "latency/p50_ms": "minimize"}
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="mo", storage=storage, directions=list(objectives.values()))
    for n in (0, 1, 2, 3):
        metrics = read_json(copy / str(n) / "metrics.json")
        study.tell(study.ask(SPACE), [metrics[m] for m in objectives])
    spec = {"storage": storage, "study_name": "mo", "direction": "maximize", "optimized_metric": "val/acc_best"}
    write_json(copy / "study.json", {**spec, "objectives": objectives})
    out = build_report(copy, constraints=["latency/p50_ms<=100000"])
    rows = md_table(out / "report.md", "Which configuration for the compute?")
    assert "latency/p50_ms" in rows[0] and "artifact/adapter_bytes" not in rows[0]
    md = (out / "report.md").read_text()
    assert "4 complete" in md and f'run_dir={copy} pick="latency/p50_ms<=100000"' in md
    assert (out / "optuna_history.png").read_bytes().startswith(PNG_SIGNATURE)


def _study(tmp_path: Path, name: str, states: dict, values: dict[int, float], space: dict = SPACE) -> optuna.Study:
    """A real study in SQLite: trial n asked (random sampling), then told its value or its state."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for number in range(max([*values, *states]) + 1):
        trial = study.ask(space)
        if number in values:
            study.tell(trial, values[number])
        else:
            study.tell(trial, state=states[number])
    study.storage_url = storage  # what the sweeper writes into study.json
    return study


def _light_copy(sweep: Path, dest: Path) -> Path:
    """The sweep without its model artifacts (the report reads metrics, configs and labels)."""
    shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns("merged", "adapter", "report", "wandb"))
    return dest


def test_the_noise_rule_on_known_numbers():
    lead = _config("lora", [0.80, 0.82, 0.84])  # mean 0.82, sample std 0.02
    near = compare(lead, _config("head", [0.78, 0.80, 0.82]))
    assert (
        near.verdict == "within noise"
        and near.difference == pytest.approx(0.02)
        and near.larger_std == pytest.approx(0.02)
    )
    far = compare(lead, _config("head", [0.50, 0.51, 0.52]))
    assert far.verdict == "apart" and far.p_value < 0.001
    # Difference 0.03 above both stds (0.0141), but two seeds a side: t = 0.03 / 0.0141 = 2.1 on 2 df, p = 0.17.
    weak = compare(_config("lora", [0.80, 0.82]), _config("head", [0.77, 0.79]))
    assert (
        weak.verdict == "within noise"
        and weak.difference > weak.larger_std
        and weak.p_value == pytest.approx(0.168, abs=0.01)
    )
    assert compare(lead, _config("head", [0.5])).verdict == "cannot tell (single seed)"
    # Every seed scoring alike: no t-test, the std rule alone decides.
    same = compare(_config("lora", [0.8, 0.8]), _config("head", [0.8, 0.8]))
    assert same.verdict == "within noise" and same.p_value is None
    assert compare(_config("lora", [0.8, 0.8]), _config("head", [0.7, 0.7])).verdict == "apart"


def test_pareto_front_and_the_tie_break_on_parameters():
    points = [(10, 0.5), (100, 0.7), (50, 0.4), (100, 0.6), (1000, 0.7), (5, 0.3)]
    assert pareto_front(points) == [5, 0, 1]  # (1000, 0.7) buys nothing over (100, 0.7)
    small, big = _config("head", [0.8], params=10), _config("lora", [0.8], params=1000)
    assert best_groups([big, small]) == {("d", "b"): small}


def _config(regime: str, accuracies: list[float], params: int = 100) -> ConfigGroup:
    """Finished jobs of one config with the given test (and validation) accuracies, one per seed."""
    return ConfigGroup(
        [
            JobRow(
                name=f"{regime}{seed}",
                path=Path(regime),
                state="complete",
                dataset="d",
                backbone="b",
                regime=regime,
                seed=seed,
                metrics={"test/acc": acc, "val/acc_best": acc, "params/trainable": params},
                group_key=regime,
            )
            for seed, acc in enumerate(accuracies)
        ]
    )


def md_table(path: Path, heading: str) -> list[dict[str, str]]:
    """The first pipe table after `## heading` in a markdown file, as dicts."""
    section = path.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:]]


def _snapshot(sweep: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file in the job dirs."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sweep.glob("[0-9]*/**/*") if p.is_file()}


def test_a_variant_names_what_changes_the_result_not_how_the_job_ran_or_logged(tmp_path: Path):
    jobs = [
        JobRow(
            "0",
            tmp_path,
            "complete",
            dataset="d",
            backbone="b",
            overrides=["regime=lora", "trainer.enable_progress_bar=false", "logger=wandb", "regime.lora_alpha=32"],
        ),
        JobRow(
            "1",
            tmp_path,
            "complete",
            dataset="d",
            backbone="b",
            overrides=[
                "regime=lora",
                "++trial.number=1",
                "hydra.sweep.subdir=1",
                "paths.cache_dir=/c",
                "regime.lora_alpha=8",
            ],
        ),
    ]
    _set_variants(jobs)
    assert [job.variant for job in jobs] == ["regime.lora_alpha=32", "regime.lora_alpha=8"]
