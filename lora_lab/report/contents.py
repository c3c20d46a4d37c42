"""What the report says, in order: the jobs, the configs over seeds, the regimes against noise, the figures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lora_lab.report import plots
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
)
from lora_lab.report.collect import JobRow
from lora_lab.report.document import Document, Figure, Heading, Paragraph
from lora_lab.report.study import SweepStudy
from lora_lab.report.table import comparisons_table, configs_table, jobs_table, provenance_table


def compose(sweep_dir: Path, jobs: Sequence[JobRow], study: SweepStudy | None, fig_dir: Path) -> Document:
    """The whole report for `jobs`; figures are written into fig_dir, beside the report files."""
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
