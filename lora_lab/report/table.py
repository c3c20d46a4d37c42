"""The report's tables: every job, every config over its seeds, and the regimes against the leader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lora_lab.report.aggregate import REPORTED_METRIC, SELECTION_METRIC, Comparison, ConfigGroup
from lora_lab.report.collect import JobRow
from lora_lab.report.document import Column, Table
from lora_lab.report.significance import row_interval, t_half_width

BEST = "★"
MIB = 2**20


def jobs_table(jobs: Sequence[JobRow], best: set[str]) -> Table:
    """One row per job dir, whatever its state; `best` names the jobs to mark."""
    columns = [
        Column("job"),
        Column("dataset"),
        Column("backbone"),
        Column("regime"),
        Column("rank"),
        Column("seed"),
        Column("lr", ".2g"),
        Column("epochs"),
        Column("batch"),
    ]
    # Optional columns appear only when some job uses them.
    shots = any(j.shots_per_class is not None for j in jobs)
    variants = any(j.variant for j in jobs)
    trials = any(j.trial for j in jobs)
    columns += [Column("shots/class")] * shots + [Column("other overrides")] * variants
    columns += [
        Column("test acc", ".4f"),
        Column("macro-F1", ".4f"),
        Column("trainable params", ",.0f"),
        Column("trainable %", ".3g"),
        Column("adapter MiB", ".2f"),
        Column("train s", ".1f"),
        Column("examples/s", ".1f"),
        Column("state"),
    ]
    columns += [Column("trial")] * trials + [Column("best"), Column("note")]
    table = Table("jobs", columns)
    for j in jobs:
        adapter = j.metric("artifact/adapter_bytes")
        row = [j.name, j.dataset, j.backbone, j.regime, j.rank, j.seed, j.learning_rate, j.epochs, j.batch_size]
        row += [j.shots_per_class] * shots + [j.variant] * variants
        row += [
            j.metric(REPORTED_METRIC),
            j.metric("test/f1_macro"),
            j.metric("params/trainable"),
            j.metric("params/trainable_pct"),
            None if adapter is None else adapter / MIB,
            j.metric("time/train_s"),
            j.metric("throughput/train_examples_per_s"),
            j.state,
        ]
        row += [j.trial] * trials + [BEST if j.name in best else "", j.note]
        table.rows.append(row)
    return table


def _interval(group: ConfigGroup) -> str:
    """mean ± half-width of the 95% t interval over the seeds; "-" below two seeds."""
    half = t_half_width(group.values(REPORTED_METRIC))
    return "-" if half is None else f"{group.mean(REPORTED_METRIC):.4f} ± {half:.4f}"


def _row_interval(group: ConfigGroup) -> str:
    """The 95% bootstrap interval over the test rows; "-" without test_predictions.json."""
    interval = row_interval(group)
    return "-" if interval is None else f"{interval[0]:.4f} to {interval[1]:.4f}"


def configs_table(
    groups: Sequence[ConfigGroup], best: Sequence[ConfigGroup], beats: Sequence[str | None] = ()
) -> Table:
    """One row per config: its seeds aggregated as mean ± std (n); `beats`, per group, the answer to
    "beats TF-IDF?" (aggregate.beats_baseline), a column only where some dataset has the baseline."""
    baseline = any(b is not None for b in beats)
    table = Table(
        "configurations",
        [
            Column("dataset"),
            Column("backbone"),
            Column("config"),
            Column("seeds"),
            Column("jobs"),
            Column(f"{REPORTED_METRIC} mean ± std (n)"),
            Column(f"{REPORTED_METRIC} 95% CI (t over seeds)"),
            Column(f"{REPORTED_METRIC} 95% CI (bootstrap over test rows)"),
            Column("test/f1_macro mean ± std (n)"),
            Column(f"{SELECTION_METRIC} mean ± std (n)"),
            Column("trainable params", ",.0f"),
            Column("train s (mean)", ".1f"),
            Column("best"),
            *[Column("beats TF-IDF?")] * baseline,
        ],
    )
    for i, g in enumerate(groups):
        table.rows.append(
            [
                g.first.dataset,
                g.first.backbone,
                g.label,
                ", ".join(str(j.seed) for j in g.jobs),
                ", ".join(j.name for j in g.jobs),
                g.summary(REPORTED_METRIC),
                _interval(g),
                _row_interval(g),
                g.summary("test/f1_macro"),
                g.summary(SELECTION_METRIC),
                g.mean("params/trainable"),
                g.mean("time/train_s"),
                BEST if any(g is b for b in best) else "",
                *[beats[i]] * baseline,
            ]
        )
    return table


def comparisons_table(comparisons: Sequence[Comparison]) -> Table:
    """Each regime's best config against the leading regime's, with the numbers the noise rule reads."""
    table = Table(
        "regime_comparison",
        [
            Column("dataset"),
            Column("backbone"),
            Column("leader"),
            Column("other"),
            Column("leader test acc"),
            Column("other test acc"),
            Column("difference", "+.4f"),
            Column("larger std", ".4f"),
            Column("Welch p", ".3g"),
            Column("verdict"),
        ],
    )
    for c in comparisons:
        table.rows.append(
            [
                c.leader.first.dataset,
                c.leader.first.backbone,
                c.leader.label,
                c.other.label,
                c.leader.summary(REPORTED_METRIC),
                c.other.summary(REPORTED_METRIC),
                c.difference,
                c.larger_std,
                c.p_value,
                c.verdict,
            ]
        )
    return table


def provenance_table(jobs: Sequence[JobRow]) -> Table:
    """One row per distinct provenance (code, library versions, data files) with the jobs that share it:
    one row when a sweep ran on one code and one data; more rows show where its jobs differ."""
    table = Table("provenance", [Column("jobs"), Column("code"), Column("versions"), Column("data files (sha256)")])
    rows: dict[tuple[str, str, str], list[str]] = {}
    for job in jobs:
        p = job.provenance
        if p is None:
            key = ("no provenance.json (the job ran before lora_lab recorded it, or stopped before it started)", "", "")
        else:
            git = p.get("git", {})
            code = (
                f"{git['commit'][:12]}{' + uncommitted changes' if git.get('dirty') else ''}"
                if git.get("commit")
                else f"unknown: {git.get('why', '?')}"
            )
            versions = ", ".join(f"{name} {version}" for name, version in p.get("versions", {}).items() if version)
            files = (
                "; ".join(
                    f"{Path(f['path']).parent.name}/{Path(f['path']).name} {f['sha256'][:12]}"
                    for f in p.get("data_files", [])
                )
                or "none read"
            )
            key = (code, versions, files)
        rows.setdefault(key, []).append(job.name)
    for (code, versions, files), names in rows.items():
        table.rows.append([", ".join(names), code, versions, files])
    return table
