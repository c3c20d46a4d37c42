"""Start-up latency of the entry points: `--help`, config errors, and what importing them loads.

    python scripts/bench_startup.py [--repeats 5] [--against /path/to/other/checkout]

Each command runs in a fresh process (`python -m ...` from the checkout's root, so that checkout's
lora_lab is imported), `--repeats` times. With --against, the two checkouts alternate run by run,
so the machine's drift (up to 30% within an hour here) falls on both alike; medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "transformers", "peft", "optuna", "bitsandbytes", "sklearn")


def commands(scratch: Path) -> dict[str, list[str]]:
    """name -> argv after `python`; each config error writes (at most) into its own scratch dir."""
    return {
        "train --help": ["-m", "lora_lab.train", "--help"],
        "eval --help": ["-m", "lora_lab.eval", "--help"],
        "data --help": ["-m", "lora_lab.data", "--help"],
        "rank=0": ["-m", "lora_lab.train", "rank=0", f"hydra.run.dir={scratch}/rank0"],
        "trainer=gpu (no GPU)": ["-m", "lora_lab.train", "trainer=gpu", f"hydra.run.dir={scratch}/gpu"],
        "missing CSV": [
            "-m",
            "lora_lab.train",
            "dataset=csv",
            "dataset.path=/nonexistent.csv",
            f"hydra.run.dir={scratch}/csv",
        ],
        # The rest of the bad-config catalogue (tests/unit/test_entry_points.py::CATALOGUE).
        "regime=no_such": ["-m", "lora_lab.train", "regime=no_such", f"hydra.run.dir={scratch}/group"],
        "lora_alpha=-8": ["-m", "lora_lab.train", "regime.lora_alpha=-8", f"hydra.run.dir={scratch}/alpha"],
        "lora_dropout=1.5": ["-m", "lora_lab.train", "regime.lora_dropout=1.5", f"hydra.run.dir={scratch}/dropout"],
        "learning_rate=3": ["-m", "lora_lab.train", "regime.learning_rate=3", f"hydra.run.dir={scratch}/lr"],
        "target_modules=[q_proj]": [
            "-m",
            "lora_lab.train",
            "regime.target_modules=[q_proj]",
            f"hydra.run.dir={scratch}/tm",
        ],
        "shots_per_class=500": ["-m", "lora_lab.train", "shots_per_class=500", f"hydra.run.dir={scratch}/shots"],
        "banking77 shots=100": [
            "-m",
            "lora_lab.train",
            "dataset=banking77",
            "shots_per_class=100",
            f"hydra.run.dir={scratch}/b77shots",
        ],
        "empty sweep range": [
            "-m",
            "lora_lab.train",
            "-m",
            "hparams_search=lora_lr_rank",
            "rank=range(8,8)",
            f"hydra.sweep.dir={scratch}/sweep",
        ],
    }


def timed(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *argv], cwd=cwd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    return time.perf_counter() - start, out.returncode, out.stderr


def heavy_imports(cwd: Path) -> str:
    code = f"import sys, lora_lab.train; print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None, help="another checkout to compare with, run by run")
    args = parser.parse_args()
    trees = {"this": REPO} | ({"other": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[tuple[str, str], list[float]] = {}
        codes: dict[tuple[str, str], int] = {}
        for i in range(args.repeats):
            for name in commands(Path(tmp)):
                for tree, root in trees.items():  # alternate: each pair of runs sees the same machine
                    scratch = Path(tmp) / f"{tree}-{i}"
                    seconds, code, stderr = timed(commands(scratch)[name], root)
                    times.setdefault((tree, name), []).append(seconds)
                    codes[(tree, name)] = code
    width = max(len(n) for n in commands(Path("."))) + 2
    header = f"{'command':<{width}}" + "".join(f"{t + ' median s':>18}{'exit':>6}" for t in trees)
    print(header + ("   this/other" if args.against else ""))
    for name in commands(Path(".")):
        row = f"{name:<{width}}" + "".join(
            f"{statistics.median(times[(t, name)]):>18.2f}{codes[(t, name)]:>6}" for t in trees
        )
        if args.against:
            row += f"   x{statistics.median(times[('this', name)]) / statistics.median(times[('other', name)]):.2f}"
        print(row)
    for tree, root in trees.items():
        print(f"heavy libraries loaded by `import lora_lab.train` ({tree}): {heavy_imports(root)}")
    print(f"{args.repeats} runs each, alternating between checkouts; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
