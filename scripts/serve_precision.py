"""Does bf16 serving change answers? fp32 vs bf16 through the server's Engine on a job's test split.

    python scripts/serve_precision.py --job outputs/<date>/<time>

Loads the job's adapter twice (precision=fp32 and precision=bf16, each on its own base), predicts
its test split, and prints both accuracies, the share of texts whose label agrees and the largest
difference of a probability. Needs a CPU with native bf16 (the Engine refuses bf16 elsewhere).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra.utils import instantiate

from lora_lab.serve.engine import Engine
from lora_lab.serve.sources import resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished job dir (make train)")
    args = parser.parse_args()
    source = resolve_source(args.job)
    test = instantiate(source.dataset).load()["test"]
    label2id = {label: i for i, label in source.id2label.items()}
    gold = torch.tensor([label2id[label] for label in test.labels])
    probs = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(precision=precision)
        engine.load("job", source)
        probs[precision] = engine.predict([("job", test.texts)])[0]
    fp32, bf16 = probs["fp32"], probs["bf16"]
    print(f"{len(gold)} test texts of {args.job}")
    for name, p in probs.items():
        print(f"  {name}: accuracy {(p.argmax(-1) == gold).float().mean():.4f}")
    print(
        f"  labels agree on {(fp32.argmax(-1) == bf16.argmax(-1)).float().mean():.2%} of texts; "
        f"largest probability difference {(fp32 - bf16).abs().max():.4f}"
    )


if __name__ == "__main__":
    main()
