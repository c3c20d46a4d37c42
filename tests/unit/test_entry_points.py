"""Start-up as a user meets it: --help and config errors come before any heavy import, one line, exit 2.

Subprocess: every test here starts `python -m lora_lab.<entry>`, because a fresh process is
what is tested: which modules its start-up imports, its stderr and its exit code.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lora_lab

HEAVY = ("torch", "lightning", "transformers", "peft", "optuna", "bitsandbytes", "sklearn")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env or ENV, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    "module",
    [
        "lora_lab.train",
        "lora_lab.eval",
        "lora_lab.data.__main__",
        "lora_lab.report.__main__",
        "lora_lab.domains.__main__",
        "lora_lab.serve.__main__",
        "lora_lab.export.__main__",
    ],
)
def test_importing_an_entry_point_loads_no_heavy_library(module: str):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    assert _run("-c", code).stdout.strip() == ""


def test_help_lists_the_config_groups_without_loading_a_model():
    out = _run("-m", "lora_lab.train", "--help")
    assert out.returncode == 0, out.stderr
    assert "regime: adalora, contrastive" in out.stdout and "gemm_4bit" not in out.stdout + out.stderr


# The catalogue of bad configs: each one `error:` paragraph naming the key, the value and the fix.
CATALOGUE = [
    (["regime=no_such"], "regime=no_such: there is no regime named 'no_such'. Choose one of adalora, contrastive"),
    (["backbone=bert_larg"], "there is no backbone named 'bert_larg'; did you mean backbone=bert_base? Choose one of"),
    (["dataset=bankin77"], "did you mean dataset=banking77? Choose one of b2b_sales_notes, banking77, csv"),
    (["rank=0"], "rank=0: the LoRA rank must be a positive integer"),
    (["regime.lora_alpha=-8"], "regime.lora_alpha=-8: must be > 0, or null"),
    (["regime.lora_dropout=1.5"], "regime.lora_dropout=1.5: a dropout probability must lie in [0, 1)"),
    (["regime.learning_rate=3"], "regime.learning_rate=3: must lie in (0, 1]"),
    (["regime.learning_rate=0"], "regime.learning_rate=0: must lie in (0, 1]"),
    (
        ["regime.target_modules=[query,nope]"],
        "'nope' is no module of backbone minilm_l6. Its Linear modules are named dense, key, query, value",
    ),
    (["regime.target_modules=[q_proj,v_proj]"], "'q_proj', 'v_proj' is no module of backbone minilm_l6"),  # a decoder's
    (["trainer=gpu"], "no CUDA GPU is visible"),
    (["shots_per_class=500"], "shots_per_class=500: label"),
    (["dataset=csv", "dataset.path=/nonexistent/t.csv"], "/nonexistent/t.csv: no such file"),
]
# Runs the entry point as `python -m` does, then names the heavy libraries it had loaded when it exited.
LOADED_AT_EXIT = (
    "import runpy, sys\n"
    "try:\n    runpy.run_module('lora_lab.train', run_name='__main__')\n"
    f"finally:\n    print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


@pytest.mark.parametrize("overrides,message", CATALOGUE, ids=[" ".join(o) for o, _ in CATALOGUE])
def test_a_config_error_is_one_line_and_exit_code_2_and_leaves_no_job(
    tmp_path: Path, overrides: list[str], message: str
):
    run_dir = tmp_path / "job"
    out = _run("-c", LOADED_AT_EXIT, *overrides, f"hydra.run.dir={run_dir}")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ") and message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (run_dir / "status.json").exists()
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == (
        "loaded:torch" if overrides == ["trainer=gpu"] else "loaded:"
    )  # only CUDA's question imports torch


def test_a_malformed_sweep_space_is_one_line_and_exit_code_2(tmp_path: Path):
    out = _run(
        "-m",
        "lora_lab.train",
        "-m",
        "hparams_search=lora_lr_rank",
        "rank=range(8,8)",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == "error: rank: range(8, 8, 1) is empty"
    assert "Traceback" not in out.stderr


# Multiruns that cannot run where they are told to: refused before the first trial (one line, exit 2).
MULTIRUN_CATALOGUE = [
    (
        ["hydra/launcher=slurm_cpu", "rank=2,4"],
        "error: hydra.launcher.partition is not set: name your cluster's partition",
    ),
    (
        ["hydra/sweeper=lora_lab_optuna", "rank=choice(2,4)", "hydra.sweeper.storage=journal://optuna.journal"],
        "error: hydra.sweeper.storage=journal://optuna.journal: a journal storage is an absolute file path",
    ),
    (
        ["hydra/sweeper=lora_lab_optuna", "rank=choice(2,4)", "hydra.sweeper.storage=postgresql://u:pw@127.0.0.1:1/db"],
        "error: hydra.sweeper.storage carries a password",
    ),
    (
        ["hydra/sweeper=lora_lab_optuna", "rank=choice(2,4)", "hydra.sweeper.storage=postgresql://u@127.0.0.1:1/db"],
        "error: hydra.sweeper.storage=postgresql://u@127.0.0.1:1/db: cannot connect",
    ),  # no server on port 1
]


@pytest.mark.parametrize("overrides,message", MULTIRUN_CATALOGUE, ids=[" ".join(o) for o, _ in MULTIRUN_CATALOGUE])
def test_a_multirun_that_cannot_run_is_one_line_and_exit_code_2(tmp_path: Path, overrides: list[str], message: str):
    sweep = tmp_path / "sweep"
    out = _run("-m", "lora_lab.train", "-m", *overrides, "backbone=tiny_bert", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith(message) and "Traceback" not in out.stderr
    assert not list(sweep.glob("*/status.json"))  # no trial started


def test_lora_lab_debug_shows_the_traceback(tmp_path: Path):
    out = _run(
        "-m", "lora_lab.train", "rank=0", f"hydra.run.dir={tmp_path / 'job'}", env={**ENV, "LORA_LAB_DEBUG": "1"}
    )
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError: rank=0" in out.stderr


def test_bitsandbytes_cpu_kernel_notice_is_held_until_a_quantizing_regime_runs():
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    held = lora_lab.bitsandbytes_kernel_message.held
    already = list(held)  # bitsandbytes' own notice, if peft imported it on a CPU with AVX-512 BF16
    try:
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s", "no kernels")
        logger.warning("another bitsandbytes warning")
        assert seen == ["another bitsandbytes warning"]  # only that one notice is held
        assert held[len(already) :][0].getMessage().endswith("no kernels")
        lora_lab.bitsandbytes_kernel_message.release()  # what regimes/kbit.py does when it quantizes
        assert (
            seen[1:]
            == [r.getMessage() for r in already]
            + ["Failed to load CPU gemm_4bit_forward from kernels-community: no kernels"]
            and not held
        )
    finally:
        logger.removeHandler(handler)


# A key the config lacks (no `+`): the closest key that exists, one paragraph, exit 2, for every entry point.
UNKNOWN_KEYS = [
    (
        "lora_lab.train",
        ["regime.dropout=1.5"],
        "regime.dropout=1.5: the config has no key regime.dropout; did you mean regime.lora_dropout?",
    ),
    ("lora_lab.train", ["trainer.max_epoch=1"], "did you mean trainer.max_epochs?"),
    ("lora_lab.train", ["rnk=4"], "rnk=4: the config has no key rnk; did you mean rank?"),
    (
        "lora_lab.eval",
        ["run_dir=/nowhere", "splt=validation"],
        "splt=validation: the config has no key splt; did you mean split?",
    ),
    ("lora_lab.export", ["out=/nowhere2", "run_dri=/nowhere"], "did you mean run_dir?"),
]


@pytest.mark.parametrize("module,overrides,message", UNKNOWN_KEYS, ids=[" ".join(o) for _, o, _ in UNKNOWN_KEYS])
def test_an_unknown_key_names_the_closest_key_and_exits_2(
    tmp_path: Path, module: str, overrides: list[str], message: str
):
    out = _run("-m", module, *overrides, f"hydra.run.dir={tmp_path / 'job'}")
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and f"+{overrides[-1]}" in last
    assert "Traceback" not in out.stderr and "Could not override" not in out.stderr
    assert not (tmp_path / "job" / "status.json").exists()


def test_an_added_key_with_a_plus_is_not_an_unknown_key(tmp_path: Path):
    # +regime.lora_bias reaches PEFT's LoraConfig; the job then fails on the rank, not on the key.
    out = _run("-m", "lora_lab.train", "+regime.lora_bias=true", "rank=0", f"hydra.run.dir={tmp_path / 'job'}")
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: rank=0")
