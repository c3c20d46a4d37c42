"""The reference: a plain transformers.Trainer + PEFT script, as a user would write it.

fp32, AutoModelForSequenceClassification (HF's CLS-pooler head), DataCollatorWithPadding, the
Trainer's default random sampler, optimizer (AdamW, no weight decay) and linear schedule without
warmup, no evaluation during training, nothing saved. Its test batch is lora_lab's
data.eval_batch_size (128, not the Trainer's default 8), so the two jobs' wall times include the
same test work. LoRA: peft.get_peft_model with
LoraConfig(r, target_modules, task_type=SEQ_CLS) and PEFT's other defaults (alpha 8, dropout 0);
full fine-tune: the same without PEFT. Rows come from the rows.json the parent wrote from
lora_lab's DataModule (bench.lab), so the recipe trains and tests on exactly lora_lab's train
and test rows; the script imports nothing of lora_lab.

The only additions to the user's script are measurements: a collator wrapper counting tokens,
wall time around trainer.train(), and the process's peak RSS.

    python -m bench.recipe <run_dir>    (spec.json there: regime, epochs, learning_rate, ...)
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from bench.flops import TokenCount
from bench.worker import peak_rss_mb, read_rows, read_spec, write_result


class CountingCollator:
    """DataCollatorWithPadding plus a token count of every batch it builds (measurement only)."""

    def __init__(self, collate: DataCollatorWithPadding):
        self.collate, self.count = collate, TokenCount()

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collate(features)
        self.count.add(batch["attention_mask"])
        return batch


def main() -> None:
    run_dir, spec = read_spec()
    rows = read_rows(spec["rows_path"])
    train_rows, test_rows = rows["train"], rows["test"]

    # --- the user's script ---------------------------------------------------------------
    set_seed(rows["seed"])  # lora_lab jobs seed with the same seed
    path = rows["model_path"]  # the embedded all-MiniLM-L6-v2 (lora_lab's backbone.pretrained)
    labels = sorted(set(train_rows["labels"]))
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    if spec["regime"] == "lora":
        config = LoraConfig(r=spec["rank"], target_modules=spec["target_modules"], task_type=TaskType.SEQ_CLS)
        model = get_peft_model(model, config)

    def dataset(split: dict) -> Dataset:
        data = Dataset.from_dict({"text": split["texts"], "label": [label2id[y] for y in split["labels"]]})
        return data.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])

    train_ds, test_ds = dataset(train_rows), dataset(test_rows)
    collator = CountingCollator(DataCollatorWithPadding(tokenizer))
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=spec["batch_size"],
            per_device_eval_batch_size=rows["eval_batch_size"],
            learning_rate=spec["learning_rate"],
            num_train_epochs=spec["epochs"],
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            seed=rows["seed"],
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        train_count = TokenCount.from_dict(collator.count.to_dict())  # training batches only, before predict()
        predictions = trainer.predict(test_ds)
    preds = np.argmax(predictions.predictions, axis=-1)
    # ----------------------------------------------------------------------------------------

    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if dtypes != ["torch.float32"]:
        raise RuntimeError(f"the recipe must train in fp32, but its parameters are {dtypes}")
    write_result(
        run_dir,
        {
            "test_acc": float(accuracy_score(predictions.label_ids, preds)),
            "test_f1_macro": float(f1_score(predictions.label_ids, preds, average="macro")),
            "train_s": train_s,
            "examples_seen": train_count.examples,
            "examples_per_s": train_count.examples / train_s,
            "peak_rss_mb": peak_rss_mb(),
            "tokens": train_count.to_dict(),
            "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "train_rows": len(train_ds),
            "test_rows": len(test_ds),
        },
    )


if __name__ == "__main__":
    main()
