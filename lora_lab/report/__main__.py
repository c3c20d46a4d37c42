"""python -m lora_lab.report <multirun or sweep dir> [--out DIR] [--wandb [offline|online]] [--constraint RULE ...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_lab.report import REPORT_DIR
from lora_lab.report.errors import ReportError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lora_lab.report",
        description="Compare the jobs of a multirun or Optuna sweep: tables, plots, seeds, regimes within noise.",
    )
    parser.add_argument(
        "sweep_dir", type=Path, help="a multirun dir (multirun/<date>/<time>), a sweep dir, or outputs/<date>"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where report.md, report.html and the PNGs go (default: <sweep_dir>/{REPORT_DIR})",
    )
    parser.add_argument(
        "--wandb",
        nargs="?",
        const="offline",
        choices=("offline", "online"),
        default=None,
        help="also log the tables and plots as a W&B run in the sweep's group (default offline)",
    )
    parser.add_argument(
        "--constraint",
        action="append",
        default=None,
        metavar="RULE",
        help='a recommendation line: the best job that meets RULE, e.g. "latency/p50_ms<=5" (repeatable; '
        "several joined by &; default: latency/p50_ms<=5, latency/p50_ms<=20, artifact/adapter_bytes<=1048576)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from lora_lab.errors import ConfigError
    from lora_lab.report.build import build_report  # matplotlib, optuna: loaded to build, not for --help
    from lora_lab.report.front import DEFAULT_CONSTRAINTS, check_constraints

    constraints = args.constraint or DEFAULT_CONSTRAINTS
    try:
        check_constraints(constraints)
        out = build_report(args.sweep_dir, args.out, args.wandb, constraints)
    except (ReportError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.wandb:
        import wandb

        # W&B's service writes the run's log (what `wandb sync` uploads) after run.finish() returns;
        # wait for it here rather than in an exit hook, so that the log is complete when we return.
        wandb.teardown()
    print(f"report: {out / 'report.html'}\n        {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
