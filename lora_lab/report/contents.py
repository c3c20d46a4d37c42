"""What the report says, in order: the jobs, the configs over seeds, the regimes against noise, the figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lora_lab.report import plots, significance
from lora_lab.report.aggregate import (
    BASELINE_REGIME,
    BASELINE_RULE,
    NOISE_RULE,
    SELECTION_RULE,
    ConfigGroup,
    baselines,
    beats_baseline,
    best_groups,
    best_job,
    compare_regimes,
    config_groups,
    ranked,
)
from lora_lab.report.collect import JobRow
from lora_lab.report.document import Document, Figure, Heading, Paragraph
from lora_lab.report.front import (
    DEFAULT_CONSTRAINTS,
    FRONT,
    KNEE,
    build_front,
    front_table,
    objectives_of,
    recommendations,
)
from lora_lab.report.study import SweepStudy
from lora_lab.report.table import comparisons_table, configs_table, jobs_table, provenance_table


def compose(
    sweep_dir: Path,
    jobs: Sequence[JobRow],
    study: SweepStudy | None,
    fig_dir: Path,
    constraints: Sequence[str] = DEFAULT_CONSTRAINTS,
) -> Document:
    """The whole report for `jobs`; figures are written into fig_dir, beside the report files.
    `constraints` (job/pick.py's grammar): one recommendation line each."""
    groups = config_groups(jobs)
    best_group = best_groups(groups)
    baseline = baselines(groups)
    beats = [beats_baseline(g, baseline.get(str(g.first.dataset))) for g in groups]
    best = {key: best_job(group) for key, group in best_group.items()}
    states = Counter(j.state for j in jobs)
    doc = Document(f"lora_lab report: {sweep_dir.name}")
    doc.add(
        Paragraph(
            f"{len(jobs)} jobs in {sweep_dir}: "
            + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            + f". {sum(j.finished for j in jobs)} finished jobs form {len(groups)} configurations."
        )
    )
    if study is not None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(study.state_counts().items()))
        doc.add(
            Paragraph(
                f"Optuna study {study.name} ({'maximize' if study.maximize else 'minimize'} {study.metric}): "
                f"{len(study.trials)} trials: {counts}. "
                "A job's trial is the one whose user attribute job_dir names it, "
                "else the one numbered like the job; a pruned trial marks its job pruned."
            )
        )

    doc.add(Heading("Jobs"), Paragraph(SELECTION_RULE), jobs_table(jobs, {j.name for j in best.values()}))
    doc.add(
        Heading("Configurations over seeds"),
        Paragraph(
            "Finished jobs whose effective configs differ only by seed form one configuration; "
            "mean ± sample standard deviation (number of seeds). Duplicates, failed, pruned and running "
            "jobs are left out."
        ),
        configs_table(groups, list(best_group.values()), beats),
    )
    _front(doc, sweep_dir, groups, study, constraints)
    _winner(doc, groups)
    _regimes(doc, groups)
    _baseline(doc, groups, beats)
    _figures(doc, jobs, groups, study, fig_dir)
    doc.add(Heading("Best job per (dataset, backbone)"))
    if not best:
        doc.add(Paragraph("No job finished."))
    for (dataset, backbone), job in best.items():
        path = plots.best_confusion_matrix(job, fig_dir / f"confusion_matrix_job_{job.name}.png")
        doc.add(
            Figure(
                path.name,
                f"{dataset} / {backbone}: test confusion matrix of job {job.name} ({job.regime}), "
                f"rows true labels, shading the share of each row.",
            )
        )
    doc.add(
        Heading("Provenance"),
        Paragraph(
            "What each job ran on (its provenance.json): the git commit of lora_lab's code, the library "
            "versions and the sha256 of the data files it read. Jobs that share all three share a row."
        ),
        provenance_table(jobs),
    )
    return doc


def _front(
    doc: Document,
    sweep_dir: Path,
    groups: Sequence[ConfigGroup],
    study: SweepStudy | None,
    constraints: Sequence[str],
) -> None:
    """The Pareto front of the sweep's objectives, its knee, and what to serve under each constraint."""
    objectives = objectives_of(sweep_dir, study.spec if study is not None else None)
    front = build_front(groups, objectives)
    doc.add(Heading("Which configuration for the compute?"))
    if not front.groups:
        doc.add(Paragraph(f"No configuration has all of {', '.join(objectives)}: no front."))
        return
    wanted = ", ".join(f"{d} {m}" for m, d in objectives.items())
    left_out = len(groups) - len(front.groups)
    doc.add(
        Paragraph(
            f"Objectives: {wanted}; each configuration's mean over its seeds. {FRONT}: on the Pareto front "
            f"({len(front.members)} of {len(front.groups)}): no other configuration is as good on every objective "
            f"and better on one. {KNEE}: the knee, the member closest to the ideal once each objective is scaled "
            "to [0, 1] over the front."
            + (f" {left_out} configuration(s) lack an objective and are left out." if left_out else "")
        ),
        front_table(front),
        *recommendations(sweep_dir, front, constraints),
    )


def _winner(doc: Document, groups: Sequence[ConfigGroup]) -> None:
    """Per (dataset, backbone): the best configuration against the runner-up, paired on the test rows."""
    doc.add(Heading("Winner against runner-up"), Paragraph(significance.__doc__.split("\n\n", 1)[1].strip()))
    scopes: dict[tuple[str, str], list[ConfigGroup]] = {}
    for group in groups:
        scopes.setdefault(group.first.scope, []).append(group)
    for (dataset, backbone), members in scopes.items():
        if len(members) < 2:
            continue
        winner, runner_up = ranked(members)[:2]
        test = significance.compare_on_rows(winner, runner_up)
        where = f"{dataset} / {backbone}"
        seeds = f"{winner.n} and {runner_up.n} seed(s)"
        if test is None:
            doc.add(Paragraph(f"{where}: {winner.label} and {runner_up.label}: no per-row test predictions to pair."))
            continue
        doc.add(
            Paragraph(
                f"{where}: {winner.label} {test.verdict} {runner_up.label}: {test.difference:+.4f} test accuracy "
                f"(95% CI {test.low:+.4f} to {test.high:+.4f}; paired bootstrap over {test.rows} test rows, {seeds})."
            )
        )


def _regimes(doc: Document, groups: Sequence[ConfigGroup]) -> None:
    comparisons = compare_regimes(groups)
    doc.add(Heading("Are the regimes apart?"), Paragraph(NOISE_RULE))
    if not comparisons:
        doc.add(Paragraph("Fewer than two regimes finished per (dataset, backbone): nothing to compare."))
        return
    doc.add(
        Paragraph(
            "Each regime is represented by its best configuration (mean validation accuracy), "
            "compared on test accuracy with the leading regime's."
        ),
        comparisons_table(comparisons),
    )
    within = [c for c in comparisons if c.verdict == "within noise"]
    for c in within:
        doc.add(
            Paragraph(
                f"Note: on {c.leader.first.dataset} / {c.leader.first.backbone}, {c.other.label} is within noise of "
                f"{c.leader.label} (difference {c.difference:+.4f}, larger std {c.larger_std:.4f}"
                + (f", Welch p = {c.p_value:.3g}" if c.p_value is not None else "")
                + ")."
            )
        )


def _baseline(doc: Document, groups: Sequence[ConfigGroup], beats: Sequence[str | None]) -> None:
    """Which configurations do not beat the bag-of-words baseline beyond noise; which datasets lack one."""
    doc.add(Heading("Against the bag-of-words baseline"))
    datasets = list(dict.fromkeys(str(g.first.dataset) for g in groups))
    if not datasets:
        doc.add(Paragraph("No job finished: nothing to compare with a baseline."))
        return
    doc.add(Paragraph(BASELINE_RULE))
    lacking = [
        d for d in datasets if not any(str(g.first.dataset) == d and b is not None for g, b in zip(groups, beats))
    ]
    if lacking:
        doc.add(
            Paragraph(
                f"No regime={BASELINE_REGIME} job on {', '.join(lacking)}: "
                "nothing says whether these fine-tunes beat a bag of words. "
                f"Add regime={BASELINE_REGIME} to the sweep (a CPU fit of seconds to a minute), "
                "over the same seeds."
            )
        )
    short = [(g, b) for g, b in zip(groups, beats) if b is not None and b != "baseline" and not b.startswith("yes")]
    if short:
        doc.add(
            Paragraph(
                "Not beating TF-IDF beyond noise: "
                + "; ".join(f"{g.first.dataset} / {g.first.backbone} / {g.label}: {b}" for g, b in short)
                + "."
            )
        )
    elif len(lacking) < len(datasets):
        doc.add(Paragraph("Every configuration beats TF-IDF beyond noise on the datasets that have the baseline."))


def _figures(
    doc: Document, jobs: Sequence[JobRow], groups: Sequence[ConfigGroup], study: SweepStudy | None, fig_dir: Path
) -> None:
    doc.add(Heading("Plots"))
    drawn = [
        (
            plots.accuracy_vs_params(groups, fig_dir / "accuracy_vs_params.png"),
            "Mean test accuracy (error bars: ± std over seeds) against trainable parameters, log scale. The dashed "
            "line is the Pareto front: no other configuration is as accurate with as few parameters "
            "(configurations that train no parameter cannot sit on the log axis and are left out).",
        ),
        (
            plots.accuracy_vs_train_time(jobs, fig_dir / "accuracy_vs_train_time.png"),
            "Test accuracy of each finished job against its training time (s, log scale).",
        ),
        (
            plots.accuracy_by_config(groups, fig_dir / "accuracy_by_config.png"),
            "Mean test accuracy per configuration; error bars ± std over seeds, dots the seeds.",
        ),
    ]
    _add_figures(doc, drawn, "No job finished: nothing to plot.")
    if study is None:
        return
    doc.add(Heading("Optuna study"))
    importances, note = study.importances()
    drawn = [
        (
            plots.optimization_history(study, fig_dir / "optuna_history.png"),
            f"Optimization history: each completed trial's {study.metric} and the best so far.",
        ),
        (plots.param_importances(importances, fig_dir / "optuna_importances.png"), note),
    ]
    _add_figures(doc, drawn, "No trial of the study completed: no history.")
    if not importances:  # the note says why there are none
        doc.add(Paragraph(note))


def _add_figures(doc: Document, drawn: list[tuple[Path | None, str]], empty: str) -> None:
    figures = [Figure(path.name, caption) for path, caption in drawn if path is not None]
    if not figures:
        figures = [Paragraph(empty)]
    doc.add(*figures)
