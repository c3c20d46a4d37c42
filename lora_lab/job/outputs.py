"""What a finished job leaves behind: labels.json, adapter/, merged/, test_predictions.json, confusion_matrix.png,
metrics.json, test_sample.json.

job_metrics() assembles metrics.json from what the trainer and the callbacks measured;
write_job_outputs() writes it last, so its presence says every other artifact is complete.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedTokenizerBase

from lora_lab.artifacts import atomic_dir, dir_bytes
from lora_lab.data.truncation import Truncation
from lora_lab.job.dir import JobDir
from lora_lab.job.latency import single_text_latency
from lora_lab.job.plots import confusion_matrix_png
from lora_lab.models.classifier import Classifier
from lora_lab.models.stack import Stack, write_pointer
from lora_lab.regimes.base import Regime

if TYPE_CHECKING:
    from lora_lab.job.build import BuiltJob

log = logging.getLogger(__name__)
# test_sample.json's rows: enough for a loader's parity (logits within 1e-4 on each) and a quick
# check of an export on another machine; a 2,000-character review makes it about 256 KB.
TEST_SAMPLE_ROWS = 128


def parameter_counts(classifier: Classifier) -> dict[str, float]:
    """Trainable vs all parameters, counted after the regime has shaped the model."""
    params = {id(p): p for p in classifier.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(_logical_numel(p) for p in params)
    # total 0: a model fitted later (tfidf, before prepare() sizes it); job_metrics counts it again.
    return {
        "params/trainable": trainable,
        "params/total": total,
        "params/trainable_pct": 100 * trainable / total if total else 0.0,
    }


def _logical_numel(param: torch.Tensor) -> int:
    """Weights a parameter stands for: a bitsandbytes 4-bit tensor packs two per uint8 byte, so its
    own numel is half the layer's; its quant_state keeps the original shape."""
    quant_state = getattr(param, "quant_state", None)
    shape = getattr(quant_state, "shape", None)
    return math.prod(shape) if shape is not None else param.numel()


def job_metrics(job: BuiltJob, prepare_s: float, val_acc_best: float) -> dict[str, Any]:
    """metrics.json's content once the test ran: scores, model selection, sizes, compute, data."""
    trainer, datamodule = job.trainer, job.datamodule
    compute = job.callback_results()
    # Time spent fitting outside the gradient epochs (prototypes, a contrastive phase) is training time.
    compute["time/prepare_s"] = prepare_s
    compute["time/train_s"] = compute.get("time/train_s", 0.0) + prepare_s
    if not job.regime.trains_by_gradient:
        compute["throughput/train_examples_per_s"] = len(datamodule.tokenized["train"]) / max(prepare_s, 1e-9)
    if job.selects_best_epoch:
        selection = "best_val_epoch"
    else:
        selection = "last_epoch" if job.regime.trains_by_gradient else "no_gradient_epochs"
    details = job.module.test_results
    return {
        **{k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
        "val/acc_best": val_acc_best,
        # The selected epoch's other validation scores (val/acc, val/f1_macro, ...): what sweeps optimise.
        **job.module.val_at_best,
        "model_selection": selection,
        **job.regime.results(),  # what prepare() measured; may name its own model selection
        "epochs": trainer.current_epoch,
        **({"train/head_init": job.module.head_init_why} if job.regime.trains_by_gradient else {}),
        "world_size": trainer.world_size,  # processes that trained it (trainer=ddp_cpu: 2), each on its share
        # Fitted without gradients: counted once fitted (a TF-IDF model's size is its vocabulary's).
        **(job.params if job.regime.trains_by_gradient else parameter_counts(job.classifier)),
        **compute,
        "test/f1_per_class": dict(zip(datamodule.labels, details["f1_per_class"])),
        "test/confusion_matrix": details["confusion_matrix"],
        **{f"data/{name}_rows": len(split) for name, split in datamodule.splits.items()},
        "data/max_length": datamodule.max_length,  # resolved: data.max_length=auto is a number here
        "data/truncation": datamodule.truncation.as_dict(),  # how longer texts were cut; the server cuts alike
        "data/truncated_share": datamodule.truncated,  # per split: texts longer than data/max_length
        "data/problems": datamodule.problems,
    }


def write_test_predictions(job: BuiltJob, stack: Stack | None) -> None:
    """test_predictions.json: each test row's label id, as the shipped model (a stack: the mix) answers."""
    probs = job.test_probabilities()
    if stack is not None:
        probs = stack.mix(probs.float(), job.datamodule.splits["test"].texts)
    true = list(job.datamodule.tokenized["test"].labels)
    JobDir(job.cfg.paths.output_dir).write_test_predictions(true, probs.argmax(-1).tolist())


def write_test_sample(job: BuiltJob, seed: int) -> None:
    """test_sample.json: a seeded sample of the test split (texts and labels), what an export checks
    its loaders on when the data dir is not there (export/parity.py)."""
    test = job.datamodule.splits["test"]
    JobDir(job.cfg.paths.output_dir).write_test_sample(split_sample(test.texts, test.labels, seed))


def split_sample(texts: Sequence[str], labels: Sequence[str], seed: int, n: int = TEST_SAMPLE_ROWS) -> dict:
    """At most n rows of a split, drawn with `seed`, kept in split order."""
    rows = sorted(random.Random(seed).sample(range(len(texts)), min(n, len(texts))))
    return {"seed": seed, "rows": rows, "texts": [texts[i] for i in rows], "labels": [labels[i] for i in rows]}


def write_job_outputs(
    run_dir: Path,
    classifier: Classifier,
    regime: Regime,
    tokenizer: PreTrainedTokenizerBase,
    metrics: dict,
    truncation: Truncation | None = None,
    stack: Stack | None = None,
    latency_texts: Sequence[str] = (),
    seed: int = 0,
    train_counts: dict[str, int] | None = None,
) -> dict:
    """Write every artifact atomically and return the final metrics (with artifact sizes).
    `truncation` goes into merged/ beside the tokenizer, so a Predictor cuts texts as training did;
    a stack goes to stack/, and merged/ points at it (models/stack.py). `latency_texts` (the test
    texts): the shipped model answers a seeded sample of them one at a time (job/latency.py).
    `train_counts`: the training split's rows per label, kept in labels.json."""
    labels = [classifier.id2label[i] for i in range(len(classifier.id2label))]
    job_dir = JobDir(run_dir)
    job_dir.write_labels(labels, train_counts)
    if stack is not None:
        with atomic_dir(job_dir.stack_dir) as tmp:
            stack.save(tmp)
    if regime.has_adapter:
        with atomic_dir(run_dir / regime.adapter_dir) as tmp:
            regime.save_adapter(classifier, tmp)
    if regime.can_merge(classifier):
        regime.merge(classifier)
        with atomic_dir(run_dir / "merged") as tmp:
            classifier.save_merged(tmp, tokenizer)
            if truncation is not None:
                truncation.save(tmp)
            if stack is not None:
                write_pointer(tmp, job_dir.stack_dir)
    else:
        log.warning(
            "Regime %s: this trained model has no merged form; the job ships %s/ only.", regime.name, regime.adapter_dir
        )
    confusion_matrix_png(
        metrics["test/confusion_matrix"],
        labels,
        run_dir / "confusion_matrix.png",
        title=f"test acc {metrics['test/acc']:.3f}",
    )
    # What a deployment adds on top of the shared base: the adapter, or the whole model for full.
    shipped = run_dir / (regime.adapter_dir if regime.has_adapter else "merged")
    stack_bytes = dir_bytes(job_dir.stack_dir) if stack is not None else 0
    metrics = {
        **metrics,
        "artifact/adapter_bytes": dir_bytes(shipped) - _tokenizer_bytes(shipped) + stack_bytes,
        "artifact/stack_bytes": stack_bytes,  # the TF-IDF part (in adapter_bytes too: it ships with it)
        # None, not 0, when there is no merged/: a size nobody can deploy is not a small one.
        "artifact/merged_bytes": dir_bytes(run_dir / "merged") if (run_dir / "merged").is_dir() else None,
    }
    if latency_texts and truncation is not None:
        metrics.update(single_text_latency(run_dir, classifier, tokenizer, truncation, latency_texts, seed))
    job_dir.write_metrics(metrics)
    return metrics


def _tokenizer_bytes(model_dir: Path) -> int:
    names = (
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "merges.txt",
        "vocab.json",
    )
    return sum((model_dir / n).stat().st_size for n in names if (model_dir / n).exists())


def stack_rows(metrics: dict) -> list[tuple[str, str]]:
    """A stacked job's parts, each on its own row under the stack's accuracy."""
    if "stack/weight" not in metrics:
        return []
    parts = sorted({key.split("/")[1] for key in metrics if key.startswith("parts/")})
    weight = metrics["stack/weight"]
    rows = [("  stack weight", f"{weight:.2f} on the trained model (picked on validation)")]
    return rows + [(f"  {part} alone", f"{metrics[f'parts/{part}/test/acc']:.4f}") for part in parts]


def single_text_rows(metrics: dict) -> list[tuple[str, str]]:
    """What serving one text at a time costs (job/latency.py), int8 beside it where measured."""
    if "latency/p50_ms" not in metrics:
        return []
    int8 = f"; int8 {metrics['latency/int8_p50_ms']:.1f} ms" if "latency/int8_p50_ms" in metrics else ""
    return [
        (
            "serving latency",
            f"p50 {metrics['latency/p50_ms']:.1f} ms, p95 {metrics['latency/p95_ms']:.1f} ms, one text at a time "
            f"({metrics['latency/precision']}, {metrics['latency/single_texts']} texts{int8})",
        )
    ]


def format_table(metrics: dict, title: str) -> str:
    """The short result table printed at the end of a job."""
    rows = [
        ("test accuracy", f"{metrics['test/acc']:.4f}"),
        *stack_rows(metrics),
        ("test macro-F1", f"{metrics['test/f1_macro']:.4f}"),
        ("best val accuracy", f"{metrics['val/acc_best']:.4f}"),
        # How long it trained and why (callbacks/min_steps.py); a regime without epochs has no row.
        *([("epochs", metrics["train/size_rule"])] if "train/size_rule" in metrics else []),
        *([("head", metrics["train/head_init"])] if "train/head_init" in metrics else []),
        ("trainable params", f"{metrics['params/trainable']:,} ({metrics['params/trainable_pct']:.2f}%)"),
        ("adapter size", f"{metrics['artifact/adapter_bytes'] / 2**20:.2f} MiB"),
        ("train time", f"{metrics['time/train_s']:.1f} s"),
        ("train throughput", f"{metrics['throughput/train_examples_per_s']:.1f} examples/s"),
        ("test latency", f"{metrics['latency/test_ms_per_example']:.2f} ms/example (batched)"),
        *single_text_rows(metrics),
        ("peak RSS", f"{metrics['memory/peak_rss_mb']:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)] + [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
