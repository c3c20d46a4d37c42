"""The export's README.md: a Hugging Face model card written from what the job recorded.

YAML front matter (model-index results, library, base model, tags) for the hub and tools; a body
for people: the model, its test results, how it was trained, on what data, and what it is not for.
Pure text from plain dicts: lora_lab_export.json's metadata, metrics.json and the resolved config.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from lora_lab.data.truncation import Truncation

# The languages a backbone's pretraining text was in, where known; others send the reader to the base's card.
LANGUAGES = {
    name: "en"
    for name in (
        "minilm_l6",
        "bert_base",
        "distilbert_base",
        "roberta_base",
        "deberta_v3_base",
        "phi_1_5",
        "phi_2",
        "smollm2_135m",
    )
}


def model_card(
    meta: dict[str, Any],
    metrics: dict[str, Any],
    config: dict[str, Any],
    train_counts: dict[str, int] | None,
    provenance: dict[str, Any] | None = None,
    checks: dict[str, Any] | None = None,
    onnx_check: dict[str, Any] | None = None,
) -> str:
    """The whole README.md (`provenance`: the job's provenance.json, None for a job that predates it;
    `checks`: the export's check.json, `onnx_check`: onnx/check.json)."""
    name = f"{meta['backbone']}-{meta['regime']}-{meta['dataset']}"
    sections = [
        front_matter(name, meta),
        f"# {name}\n\n{summary(meta, metrics, config)}",
        model_section(meta),
        results_section(meta, metrics),
        training_section(meta, metrics, config),
        data_section(metrics, train_counts),
        limits_section(meta, metrics, config),
        usage_section(meta, checks, onnx_check),
        provenance_section(provenance),
    ]
    return "\n\n".join(sections) + "\n"


def front_matter(name: str, meta: dict[str, Any]) -> str:
    scores = meta["metrics"]
    card: dict[str, Any] = {}
    if meta["backbone"] in LANGUAGES:
        card["language"] = [LANGUAGES[meta["backbone"]]]
    card["library_name"] = "peft" if meta["has_adapter"] else "transformers"
    if meta["base_hub_id"]:  # a local dir or a random model is no hub reference
        card["base_model"] = meta["base_hub_id"]
    card["pipeline_tag"] = "text-classification"
    card["tags"] = ["lora_lab", "text-classification", meta["regime"], meta["backbone"], meta["dataset"]] + (
        ["onnx"] if meta["has_onnx"] else []
    )
    card["model-index"] = [
        {
            "name": name,
            "results": [
                {
                    "task": {"type": "text-classification", "name": "Text Classification"},
                    "dataset": {"name": meta["dataset"], "type": meta["dataset"], "split": "test"},
                    "metrics": [
                        {"type": "accuracy", "name": "accuracy", "value": scores["test/acc"]},
                        {
                            "type": "f1",
                            "name": "macro-F1",
                            "value": scores["test/f1_macro"],
                            "args": {"average": "macro"},
                        },
                    ],
                }
            ],
        }
    ]
    return f"---\n{yaml.safe_dump(card, sort_keys=False, allow_unicode=True)}---"


def summary(meta: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any]) -> str:
    return (
        f"A text classifier over {len(meta['labels'])} labels, fine-tuned by lora_lab from {meta['base_model']} "
        f"with {meta['regime']}{rank_words(meta)} on {metrics['data/train_rows']:,} training rows of "
        f"`{meta['dataset']}`{' (synthetic, generated text)' if is_synthetic(config) else ''}. "
        f"Test split: accuracy {meta['metrics']['test/acc']:.4f}, macro-F1 {meta['metrics']['test/f1_macro']:.4f} "
        f"on {metrics['data/test_rows']:,} rows."
    )


def model_section(meta: dict[str, Any]) -> str:
    params, pooling = meta["params"], meta["backbone_config"]["pooling"]
    files = [f"`{name}/`" for name in ("merged", "adapter", "onnx") if meta[f"has_{name}"]]
    rows = [
        ("base model", f"{meta['base_model']}{shipped_by(meta)} (lora_lab backbone `{meta['backbone']}`)"),
        ("base fingerprint", f"`sha256:{meta['base_fingerprint']}` (seed {meta['seed']})"),
        ("head", f"{pooling} pooling + linear head" if pooling != "cls" else "the model's own classification head"),
        ("regime", meta["regime"]),
        ("rank", meta["rank"] if meta["rank"] is not None else f"none (regime {meta['regime']} has no rank)"),
        ("trainable params", f"{params['trainable']:,} of {params['total']:,} ({params['trainable_pct']:.2f}%)"),
        ("trained", meta["trained_at"]),
        ("files", ", ".join(files)),
        ("labels", ", ".join(f"`{label}`" for label in meta["labels"])),
    ]
    return "## Model\n\n" + table(("", ""), rows)


def shipped_by(meta: dict[str, Any]) -> str:
    """`, from the PyPI package x` for an embedded backbone; exports before base_package: nothing."""
    return f", from the PyPI package `{meta['base_package']}`" if meta.get("base_package") else ""


def results_section(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    names = {
        "test/acc": "accuracy",
        "test/f1_macro": "macro-F1",
        "test/precision_macro": "macro precision",
        "test/recall_macro": "macro recall",
        "test/loss": "loss",
        "val/acc_best": "validation accuracy (selected epoch)",
    }
    rows = [
        (label, f"{meta['metrics'][key]:.4f}") for key, label in names.items() if meta["metrics"].get(key) is not None
    ]
    if meta.get("stack_weight") is not None:  # a stack's parts, each alone on the same test rows
        parts = sorted({k.split("/")[1] for k in metrics if k.startswith("parts/")})
        rows += [(f"accuracy of {part} alone", f"{metrics[f'parts/{part}/test/acc']:.4f}") for part in parts]
    per_class = metrics.get("test/f1_per_class", {})
    support = dict(zip(meta["labels"], map(sum, metrics.get("test/confusion_matrix", []))))
    class_rows = [(label, support.get(label, "?"), f"{f1:.4f}") for label, f1 in per_class.items()]
    text = f"## Results (test split, {metrics['data/test_rows']:,} rows)\n\n" + table(("metric", "value"), rows)
    if class_rows:
        text += "\n\n" + table(("label", "test rows", "F1"), class_rows)
    return text


def training_section(meta: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any]) -> str:
    regime, data, module, trainer = config["regime"], config["data"], config.get("module", {}), config["trainer"]
    head_lr = regime.get("head_learning_rate")
    rows = [
        ("learning rate", f"{regime['learning_rate']:g}" + (f" (head {head_lr:g})" if head_lr else "")),
        (
            "epochs",
            f"{metrics.get('epochs', '?')} run of max_epochs={trainer.get('max_epochs')}; "
            f"model selection: {metrics.get('model_selection', '?')}",
        ),
        ("batch size", data["batch_size"]),
        (
            "max_length",
            f"{meta['max_length']} tokens"
            + (" (data.max_length=auto: 95% of the training texts fit)" if data["max_length"] == "auto" else ""),
        ),
        ("weight decay", module.get("weight_decay")),
        ("schedule", f"{module.get('scheduler')}, warmup ratio {module.get('warmup_ratio')}"),
        ("precision", trainer.get("precision")),
        ("seed", meta["seed"]),
    ]
    if "time/train_s" in metrics:
        rows.append(("train time", f"{metrics['time/train_s']:.1f} s on {trainer.get('accelerator')}"))
    full = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return (
        "## Training\n\n"
        + table(("setting", "value"), rows)
        + f"\n\n<details>\n<summary>Full resolved config</summary>\n\n```yaml\n{full}```\n\n</details>"
    )


def data_section(metrics: dict[str, Any], train_counts: dict[str, int] | None) -> str:
    splits = [
        (k.removeprefix("data/").removesuffix("_rows"), f"{v:,}")
        for k, v in metrics.items()
        if k.startswith("data/") and k.endswith("_rows")
    ]
    text = "## Data\n\n" + table(("split", "rows"), splits)
    if train_counts:
        text += "\n\nTraining split, rows per label:\n\n" + table(("label", "rows"), list(train_counts.items()))
    else:
        text += "\n\nRows per label of the training split: not recorded by the job (its tokenized-data cache is gone)."
    problems = metrics.get("data/problems") or []
    text += "\n\nProblems found in the data: " + (
        "none." if not problems else "\n\n" + "\n".join(f"- {p}" for p in problems)
    )
    return text


def limits_section(meta: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any]) -> str:
    labels, acc, n_test = len(meta["labels"]), meta["metrics"]["test/acc"], metrics["data/test_rows"]
    language = LANGUAGES.get(meta["backbone"])
    # The binomial standard error alone: how far the test split's size lets the accuracy be trusted.
    margin = 1.96 * math.sqrt(acc * (1 - acc) / max(n_test, 1))
    cut = cut_of(meta)
    long_texts = (
        f"- Texts longer than {meta['max_length']} tokens are {'split' if cut.chunked else 'truncated'}: "
        f"the model reads {cut.describe()}"
    )
    if "data/truncated_share" in metrics:
        long_texts += f" ({100 * metrics['data/truncated_share'].get('train', 0.0):.0f}% of the training texts were)"
    lines = [
        f"- Trained on {metrics['data/train_rows']:,} rows of `{meta['dataset']}`"
        + (", text generated by a synthetic template generator: real texts will differ" if is_synthetic(config) else "")
        + f". Test accuracy {acc:.2%} (±{100 * margin:.1f} points at 95% for {n_test:,} rows) "
        "is measured on held-out rows of the same dataset; expect lower on texts from another source, "
        "and measure it on yours.",
        f"- One training run (seed {meta['seed']}): another seed moves the scores too.",
        f'- Every text gets one of its {labels} labels; there is no "none of these" answer, so out-of-scope '
        "texts are still labelled. Use the probability as a signal, and route low-confidence texts to a person.",
        long_texts + ".",
    ]
    if language == "en":
        lines.append("- English only: the base model was pretrained on English text.")
    elif config["backbone"].get("random_init") is not None:
        lines.append("- The base is a small randomly initialised model (a test fixture): not a model to use.")
    else:
        lines.append(f"- Languages: those of {meta['base_model']}; see its own card.")
    if (latency := metrics.get("latency/test_ms_per_example")) is not None:
        lines.append(
            f"- Latency: {latency:.2f} ms per text measured in batches of {config['data']['eval_batch_size']} "
            "during the job's test, on the training machine's CPU; a single text costs more per text."
        )
    return "## Intended use and limits\n\n" + "\n".join(lines)


def usage_section(
    meta: dict[str, Any], checks: dict[str, Any] | None = None, onnx_check: dict[str, Any] | None = None
) -> str:
    """Each dir with the loader that reads it, the exact call, and what was checked on which texts."""
    lines = ["## Files and how to load them", ""]
    pooled = meta["backbone_config"]["pooling"] != "cls"
    cut = cut_of(meta)
    if meta["has_merged"]:
        lines.append(
            "- `merged/`: the fine-tuned model as plain weights (any adapter folded in). lora_lab reads it with "
            '`lora_lab.models.predictor.Predictor("merged")`; transformers with:'
        )
        flag = ", trust_remote_code=True" if pooled else ""
        lines += [
            "",
            "  ```python",
            "  from transformers import pipeline",
            f'  classify = pipeline("text-classification", model="merged"{flag})',
            '  classify("a text", truncation=True, top_k=None)  # every label with its probability',
            "  ```",
            "",
        ]
        if pooled:
            lines.append(
                "  `trust_remote_code=True` is needed, and why: this model reads the "
                f"{meta['backbone_config']['pooling']} of its token states (as its base was trained to be read), "
                "which no stock transformers class does. "
                "`merged/modeling_lora_lab.py` is the code it runs: under 100 lines, torch and transformers only; "
                "read it before you pass the flag."
            )
    if pooled and meta["has_merged"]:
        lines.append(
            "- `st/`: the fine-tuned body with its pooling and unit length for sentence-transformers: "
            '`SentenceTransformer("st").encode(texts)` gives the embeddings lora_lab\'s `/v1/similar` searches by.'
        )
    if meta["has_adapter"]:
        lines.append(
            f"- `adapter/`: what regime {meta['regime']} trained, to attach to the base `{meta['base_model']}` "
            "(check `base_fingerprint` in lora_lab_export.json before attaching)."
        )
    if meta.get("stack_weight") is not None:
        w = meta["stack_weight"]
        lines.append(
            f"- `stack/`: this model is a stack: its probabilities are `{w:.2f} x` the fine-tuned model's "
            f"`+ {1 - w:.2f} x` a TF-IDF + logistic regression model's (JSON + safetensors here, weight picked on "
            'validation). `Predictor("merged")`, `lora_lab.serve` and `lora_lab.eval` answer with the mix; '
            "transformers, sentence-transformers, `adapter/` and `onnx/` give the fine-tuned part only."
        )
    if meta["has_onnx"]:
        lines.append(
            "- `onnx/`: `model.onnx` (`input_ids`, `attention_mask` -> `logits`) with `config.json` and the tokenizer, "
            'for Optimum: `ORTModelForSequenceClassification.from_pretrained("onnx")`, then '
            '`pipeline("text-classification", model=that, tokenizer=AutoTokenizer.from_pretrained("onnx"))`.'
        )
    lines.append("- `labels.json`: label ids to names; `lora_lab_export.json`: the machine-readable metadata.")
    if meta["has_merged"]:
        lines.append(
            f"\nEvery tokenizer here cuts at {cut.max_length} tokens, the job's length: pass `truncation=True`. "
            + (
                ""
                if cut.mode == "head" and not cut.chunked
                else f"lora_lab itself reads a longer text as {cut.describe()}; these loaders read its first "
                f"{cut.max_length} tokens, so they may answer differently on texts that long."
            )
        )
    return "\n".join(lines + checks_lines(checks, onnx_check))


def checks_lines(checks: dict[str, Any] | None, onnx_check: dict[str, Any] | None) -> list[str]:
    """What the export checked, on which texts (the job's sample or the whole test split)."""
    if checks is None:
        return []
    lines = [
        "",
        "### Checks made by the export",
        "",
        f"On {checks['texts_from']}, cut at {checks['max_length']} tokens:",
    ]
    for name, result in checks["loaders"].items():
        if "skipped" in result:
            lines.append(f"- {name}: not run ({result['skipped']})")
            continue
        agree = f", same top label on {result['top1_agreement']:.0%}" if "top1_agreement" in result else ""
        what = "embeddings" if "top1_agreement" not in result else "logits"
        verdict = "within" if result["passed"] else "OUTSIDE"
        lines.append(
            f"- {name}: {what} {verdict} {checks['tolerance']:.0e} of lora_lab's "
            f"(max |difference| {result['max_abs_diff']:.1e}{agree})"
        )
    if onnx_check is not None:
        lines.append(
            f"- onnx, whole test split: {onnx_check['agreement']:.2%} of {onnx_check['rows']} rows "
            "predicted as PyTorch does"
            if onnx_check["agreement"] is not None
            else "- onnx, whole test split: not run (the data dir was not there at export time)"
        )
    return lines


def provenance_section(provenance: dict[str, Any] | None) -> str:
    text = "## Provenance\n\n"
    if provenance is None:
        return text + "Not recorded: the job ran before lora_lab wrote provenance.json."
    git = provenance.get("git", {})
    code = (
        (f"`{git['commit']}`" + (" with uncommitted changes" if git.get("dirty") else ""))
        if git.get("commit")
        else f"unknown ({git.get('why', 'not recorded')})"
    )
    rows = [
        ("lora_lab code (git commit)", code),
        ("seed", provenance.get("seed")),
        ("command", "`" + " ".join(provenance.get("command", [])) + "`"),
    ]
    rows += [(name, version or "not installed") for name, version in provenance.get("versions", {}).items()]
    text += table(("", ""), rows)
    files = provenance.get("data_files", [])
    if files:
        text += "\n\nData files read:\n\n" + table(
            ("file", "sha256", "bytes"), [(f["path"], f"`{f['sha256']}`", f"{f['bytes']:,}") for f in files]
        )
    return text + "\n\nThe same record is in `provenance.json` beside this card."


def cut_of(meta: dict[str, Any]) -> Truncation:
    """How the model cuts a long text (exports from before truncation modes: keep its start)."""
    return Truncation.from_record(meta.get("truncation"), int(meta["max_length"]))


def rank_words(meta: dict[str, Any]) -> str:
    return f" (rank {meta['rank']})" if meta["rank"] is not None else ""


def is_synthetic(config: dict[str, Any]) -> bool:
    return ".synthetic." in str(config["dataset"].get("_target_", ""))


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """A Markdown table (a cell's `|` escaped)."""

    def line(cells: tuple[Any, ...]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(tuple("---" for _ in header)), *map(line, rows)])
