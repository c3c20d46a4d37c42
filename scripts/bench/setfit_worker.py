"""SetFit (Tunstall et al., 2022) on lora_lab's few-shot rows: the peer of regime=contrastive.

    python scripts/bench/setfit_worker.py rows.json [--num-iterations 20]

Reads the rows lora_lab's DataModule kept (bench.lab.write_rows: shots_per_class, seed), trains
SetFit with its defaults for this setting (body lr 2e-5, batch 16, 1 epoch, num_iterations=20,
CosineSimilarityLoss, logistic-regression head) on the same MiniLM checkpoint, and prints one JSON
line: test accuracy, training seconds (body + head) and the test rows scored. Needs the `bench`
extra (setfit); imports nothing of lora_lab.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path)
    parser.add_argument("--num-iterations", type=int, default=20)
    args = parser.parse_args()
    rows = json.loads(args.rows.read_text())

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging
    from transformers import logging as hf_logging

    setfit_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)

    train = Dataset.from_dict({"text": rows["train"]["texts"], "label": rows["train"]["labels"]})
    model = SetFitModel.from_pretrained(rows["model_path"])
    with tempfile.TemporaryDirectory() as scratch:  # SetFit's trainer writes checkpoints/ unless told
        training = TrainingArguments(
            batch_size=16,
            num_epochs=1,
            num_iterations=args.num_iterations,
            seed=rows["seed"],
            show_progress_bar=False,
            report_to="none",
            output_dir=scratch,
            save_strategy="no",
        )
        trainer = Trainer(model=model, args=training, train_dataset=train)
        began = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - began
    preds = model.predict(rows["test"]["texts"], batch_size=rows["eval_batch_size"], as_numpy=True)
    correct = sum(str(p) == y for p, y in zip(preds, rows["test"]["labels"]))
    print(
        json.dumps({"acc": correct / len(preds), "train_s": train_s, "test_rows": len(preds), "train_rows": len(train)})
    )


if __name__ == "__main__":
    main()
