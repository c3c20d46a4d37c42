"""python -m lora_lab.report <multirun or sweep dir> [--out DIR] [--wandb [offline|online]]"""

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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from lora_lab.report.build import build_report  # matplotlib, optuna: loaded to build, not for --help

    try:
        out = build_report(args.sweep_dir, args.out, args.wandb)
    except ReportError as err:
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
