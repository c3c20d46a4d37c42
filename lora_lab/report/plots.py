"""The report's figures (matplotlib, headless); each writes one PNG and returns its path, or None with nothing to draw.

Accuracy is test accuracy throughout; panels split by dataset (accuracies on different data
do not compare) or by (dataset, backbone) where the choice of backbone is held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

from lora_lab.job.dir import JobDir

# lora_lab.job.plots selects the headless Agg backend before pyplot loads.
from lora_lab.job.plots import confusion_matrix_png, plt
from lora_lab.report.aggregate import REPORTED_METRIC, ConfigGroup, pareto_front
from lora_lab.report.collect import JobRow
from lora_lab.report.errors import ReportError
from lora_lab.report.study import SweepStudy, first_value

DPI = 110
MARKERS = "osD^vP*X"


def accuracy_vs_params(groups: Sequence[ConfigGroup], path: Path) -> Path | None:
    """Mean test accuracy (± std over seeds) against trainable parameters (log), with the Pareto front per dataset.

    Configs that train no parameter (zero-shot) have no place on a log axis and are left out.
    """
    groups = [g for g in groups if (g.mean("params/trainable") or 0) > 0]
    if not groups:
        return None
    colors = regime_colors(g.first.regime for g in groups)
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(sorted({str(g.first.backbone) for g in groups}))}
    fig, axes = _panels([str(g.first.dataset) for g in groups])
    for dataset, ax in axes.items():
        members = [g for g in groups if str(g.first.dataset) == dataset]
        points = [(g.mean("params/trainable"), g.mean(REPORTED_METRIC)) for g in members]
        for g, (x, y) in zip(members, points):
            ax.errorbar(
                x,
                y,
                yerr=g.std(REPORTED_METRIC) or 0,
                fmt=markers[str(g.first.backbone)],
                capsize=3,
                color=colors[g.first.regime],
                label=f"{g.first.regime} / {g.first.backbone}",
            )
        front = pareto_front(points)
        ax.step(
            [points[i][0] for i in front],
            [points[i][1] for i in front],
            where="post",
            color="0.4",
            ls="--",
            lw=1,
            label="Pareto front",
        )
        for i in front:
            ax.annotate(members[i].label, points[i], textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        _style(ax, dataset, "trainable parameters (log)", "test accuracy")
    return _save(fig, path)


def accuracy_vs_train_time(jobs: Sequence[JobRow], path: Path) -> Path | None:
    """Test accuracy of every finished job against its training time (log), one dot per seed."""
    jobs = [j for j in jobs if j.finished and (j.metric("time/train_s") or 0) > 0]
    if not jobs:
        return None
    colors = regime_colors(j.regime for j in jobs)
    fig, axes = _panels([str(j.dataset) for j in jobs])
    for dataset, ax in axes.items():
        for job in (j for j in jobs if str(j.dataset) == dataset):
            ax.scatter(
                job.metric("time/train_s"), job.metric(REPORTED_METRIC), color=colors[job.regime], label=job.regime
            )
        ax.set_xscale("log")
        _style(ax, dataset, "train time, s (log)", "test accuracy")
    return _save(fig, path)


def accuracy_by_config(groups: Sequence[ConfigGroup], path: Path) -> Path | None:
    """One bar per config: mean test accuracy, error bar ± std over seeds, a dot per seed."""
    if not groups:
        return None
    colors = regime_colors(g.first.regime for g in groups)
    titles = ["/".join(g.first.scope) for g in groups]
    # About 0.7 in per bar so that the tick labels do not overlap, 6 in at least.
    fig, axes = _panels(titles, width=max(6.0, 0.7 * max(titles.count(t) for t in titles)))
    for title, ax in axes.items():
        members = [g for g, t in zip(groups, titles) if t == title]
        for x, g in enumerate(members):
            ax.bar(
                x,
                g.mean(REPORTED_METRIC),
                yerr=g.std(REPORTED_METRIC) or 0,
                capsize=4,
                color=colors[g.first.regime],
                alpha=0.8,
            )
            ax.scatter([x] * g.n, g.values(REPORTED_METRIC), color="black", s=10, zorder=3)
        ax.set_xticks(
            range(len(members)), [f"{g.label}\n(n={g.n})" for g in members], rotation=30, ha="right", fontsize=8
        )
        _style(ax, title, "", "test accuracy", legend=False)
    return _save(fig, path)


def optimization_history(study: SweepStudy, path: Path) -> Path | None:
    """Each completed trial's objective, the best so far, and pruned trials at their last reported value."""
    completed = study.completed
    if not completed:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [first_value(t) for t in completed]
    ax.scatter([t.number for t in completed], values, color="tab:blue", label="completed trial")
    pick = max if study.maximize else min
    best = [pick(values[: i + 1]) for i in range(len(completed))]
    ax.step([t.number for t in completed], best, where="post", color="tab:red", label="best so far")
    pruned = [t for t in study.trials if t.state.name == "PRUNED" and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="0.5", label="pruned (last reported)")
    _style(ax, f"Optuna study {study.name}", "trial", study.metric)
    return _save(fig, path)


def param_importances(importances: dict[str, float], path: Path) -> Path | None:
    """Horizontal bars, the most important parameter on top."""
    if not importances:
        return None
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    _style(ax, "parameter importances", "share of the objective's variation", "", legend=False)
    return _save(fig, path)


def best_confusion_matrix(job: JobRow, path: Path) -> Path:
    """The job's test confusion matrix, drawn by the same function that draws it into the job dir."""
    job_dir = JobDir(job.path)
    if not job_dir.labels_path.exists():
        raise ReportError(
            f"{job_dir.labels_path} is missing, yet job {job.name} is complete: its artifacts are incomplete"
        )
    labels = job_dir.labels()
    confusion_matrix_png(
        job.metrics["test/confusion_matrix"],
        labels,
        path,
        title=f"job {job.name}: {job.regime} / {job.backbone}, test acc {job.metric(REPORTED_METRIC):.3f}",
    )
    return path


def regime_colors(regimes: Iterable[Hashable]) -> dict:
    """The same colour for a regime in every figure of a report."""
    palette = plt.get_cmap("tab10").colors
    return {r: palette[i % len(palette)] for i, r in enumerate(sorted(set(regimes), key=str))}


def _panels(keys: Sequence[str], width: float = 6.0) -> tuple:
    """A figure with one axis per distinct key (at most 3 a row), in first-seen order."""
    keys = list(dict.fromkeys(keys))
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(width * cols, 4.5 * rows), squeeze=False)
    for ax in grid.flat[len(keys) :]:
        ax.set_visible(False)
    return fig, dict(zip(keys, grid.flat))


def _style(ax, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        # One entry per label: every seed of a regime draws its own artist.
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        ax.legend(handles.values(), handles.keys(), fontsize=7)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
