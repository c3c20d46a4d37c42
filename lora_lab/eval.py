"""Re-evaluate a finished job on its dataset's test split: python -m lora_lab.eval run_dir=<job dir>.

Loads merged/ (a plain model, no PEFT) when the job wrote it, else the base backbone + adapter/,
and reports the test metrics next to the ones the job saved. Writes into its own output dir,
never into the job's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lora_lab.artifacts import read_json, write_json
from lora_lab.callbacks import ResourceMonitor
from lora_lab.config import CONF_DIR, ConfigError
from lora_lab.models.classifier import Classifier, load_classifier

log = logging.getLogger(__name__)


def load_job_classifier(run_dir: Path, job_cfg: DictConfig, load: str) -> tuple[Classifier, object, str]:
    """The job's trained classifier and tokenizer, from merged/ or from base + adapter/."""
    if load == "auto":
        load = "merged" if (run_dir / "merged").is_dir() else "adapter"
    if load == "merged":
        from transformers import AutoTokenizer

        return load_classifier(run_dir / "merged"), AutoTokenizer.from_pretrained(str(run_dir / "merged")), load
    if load != "adapter":
        raise ConfigError(f"load={load!r}: use auto, merged or adapter")
    strategy = instantiate(job_cfg.regime)
    if not strategy.has_adapter or not (run_dir / "adapter").is_dir():
        raise ConfigError(f"{run_dir} has no adapter/ (regime {strategy.name}); use load=merged")
    backbone = instantiate(job_cfg.backbone)
    id2label = {int(k): v for k, v in read_json(run_dir / "labels.json")["id2label"].items()}
    classifier = backbone.build_classifier(id2label, seed=job_cfg.seed)
    strategy.load_adapter(classifier, run_dir / "adapter")
    return classifier, backbone.tokenizer, load


def evaluate(run_dir: Path, output_dir: Path, load: str = "auto") -> dict:
    saved_path = run_dir / "metrics.json"
    if not saved_path.is_file():
        raise ConfigError(f"run_dir={run_dir}: no metrics.json, so not a finished lora_lab job (or not a job dir)")
    job_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    classifier, tokenizer, source = load_job_classifier(run_dir, job_cfg, load)
    labels = [classifier.id2label[i] for i in range(len(classifier.id2label))]
    datamodule = instantiate(job_cfg.data, tokenizer=tokenizer, labels=labels)
    module = instantiate(job_cfg.module)(classifier=classifier)
    trainer = instantiate(
        job_cfg.trainer, callbacks=[monitor := ResourceMonitor()], logger=False, default_root_dir=str(output_dir)
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    saved = read_json(saved_path)
    results = {
        **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
        **monitor.results,
        "loaded_from": source,
        "run_dir": str(run_dir),
        "saved/test/acc": saved["test/acc"],
        "saved/test/f1_macro": saved["test/f1_macro"],
    }
    write_json(output_dir / "eval_metrics.json", results)
    print(
        f"{run_dir} ({source}): test/acc {results['test/acc']:.4f} (saved {saved['test/acc']:.4f}), "
        f"test/f1_macro {results['test/f1_macro']:.4f} (saved {saved['test/f1_macro']:.4f})"
    )
    return results


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float:
    return evaluate(Path(cfg.run_dir), Path(cfg.paths.output_dir), cfg.load)["test/acc"]


if __name__ == "__main__":
    main()
