"""python -m lora_lab.export run_dir=<finished job> out=<new dir> [onnx=true]: a job as a shippable model dir.

run_dir may be a sweep dir: `pick=` chooses its job (lora_lab/job/pick.py), as the server's does.

What the dir holds: lora_lab/export/bundle.py. Heavy libraries load inside main(), so `--help` and a
config error answer in about a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.cli.run import quoted_pick
from lora_lab.config import CONF_DIR
from lora_lab.errors import ConfigError


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
@report_user_errors
def main(cfg: DictConfig) -> None:
    missing = [key for key in ("run_dir", "out") if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: python -m lora_lab.export run_dir=<finished job dir> out=<new dir>"
        )
    from lora_lab.export.bundle import export_job  # torch, transformers, peft: loaded to run only
    from lora_lab.job.pick import promote

    run_dir, pick = promote(Path(cfg.run_dir), cfg.pick)
    if pick is not None:
        print(pick.describe(cfg.pick), flush=True)
    export = export_job(
        run_dir,
        Path(cfg.out),
        onnx=cfg.onnx,
        onnx_tolerance=cfg.onnx_tolerance,
        onnx_opset=cfg.onnx_opset,
        keep_failed=cfg.keep_failed,
    )
    print(export.summary())


def run() -> None:
    """The command line (python -m lora_lab.export): pick= constraints need quoting for Hydra."""
    sys.argv = [sys.argv[0], *quoted_pick(sys.argv[1:])]
    main()


if __name__ == "__main__":
    run()
