"""Re-evaluate a finished job on its dataset's test split: python -m lora_lab.eval run_dir=<job dir>.

Loads merged/ (a plain model, no PEFT) when the job wrote it, else the base backbone + adapter/,
and reports the test metrics next to the ones the job saved. Writes into its own output dir,
never into the job's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from lora_lab.artifacts import read_json, write_json
from lora_lab.cli import report_user_errors
from lora_lab.config import CONF_DIR
from lora_lab.errors import ConfigError

log = logging.getLogger(__name__)


def evaluate(run_dir: Path, output_dir: Path, load: str = "auto") -> dict:
    """Test the job saved in run_dir again; eval_metrics.json goes to output_dir."""
    from lora_lab.build import build_job, resolve_load  # torch, lightning, transformers: loaded to run only

    saved_path = run_dir / "metrics.json"
    if not saved_path.is_file():
        raise ConfigError(f"run_dir={run_dir}: no metrics.json, so not a finished lora_lab job (or not a job dir)")
    job_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    with open_dict(job_cfg):
        # The job's trainer, data and module settings; only the compute monitor, no logger, our own dir.
        job_cfg.paths.output_dir = str(output_dir)
        job_cfg.callbacks = {"resource_monitor": {"_target_": "lora_lab.callbacks.ResourceMonitor"}}
        job_cfg.logger = {}
    job = build_job(job_cfg, trained=run_dir, load=load)
    job.trainer.test(job.module, datamodule=job.datamodule, verbose=False)
    saved = read_json(saved_path)
    results = {
        **{k: float(v) for k, v in job.trainer.callback_metrics.items() if k.startswith("test/")},
        **job.callback_results(),
        "loaded_from": resolve_load(run_dir, load),
        "run_dir": str(run_dir),
        "saved/test/acc": saved["test/acc"],
        "saved/test/f1_macro": saved["test/f1_macro"],
    }
    write_json(output_dir / "eval_metrics.json", results)
    print(
        f"{run_dir} ({results['loaded_from']}): test/acc {results['test/acc']:.4f} (saved {saved['test/acc']:.4f}), "
        f"test/f1_macro {results['test/f1_macro']:.4f} (saved {saved['test/f1_macro']:.4f})"
    )
    return results


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
@report_user_errors
def main(cfg: DictConfig) -> float:
    return evaluate(Path(cfg.run_dir), Path(cfg.paths.output_dir), cfg.load)["test/acc"]


if __name__ == "__main__":
    main()
