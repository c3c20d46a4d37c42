"""Scores of a classifier's probabilities on labelled rows: ROC/PR AUC, calibration, confusions.

Pure functions on arrays: `probs` is rows x labels (each row a softmax, summing to 1), `labels`
the true label ids, in row order. `python -m lora_lab.eval` applies them to a model's outputs;
tests/unit/test_evaluation.py checks them on hand-made arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def score_probabilities(
    probs: np.ndarray, labels: np.ndarray, texts: Sequence[str], names: Sequence[str], n_bins: int = 15, top: int = 10
) -> tuple[dict, list[dict]]:
    """Everything below on one set of rows, keyed by metric name (the caller adds `split/`), and the
    `top` confused pairs. Two labels: `roc_auc`, `pr_auc` and `auc_positive_class` (label id 1's
    name); more: `roc_auc_macro`, `pr_auc_macro`. `auc_left_out`: the names of labels with no rows."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    auc = auc_scores(probs, labels)
    scores = {k: v for k, v in auc.items() if k != "left_out"} | {"auc_left_out": [names[c] for c in auc["left_out"]]}
    if len(names) == 2:
        scores["auc_positive_class"] = names[1]
    scores |= {
        "ece": expected_calibration_error(probs, labels, n_bins),
        "ece_bins": n_bins,
        "reliability": reliability_bins(probs, labels, n_bins),
    }
    return scores, confused_pairs(labels, probs.argmax(axis=1), texts, names, top=top)


def auc_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """ROC-AUC and PR-AUC (average precision: the area under the step-wise precision-recall curve).

    Two labels: label id 1 is the positive class, scored by its probability (keys `roc_auc`,
    `pr_auc`). More labels: one-vs-rest per class, averaged over the classes (`roc_auc_macro`,
    `pr_auc_macro`). A class with no rows has no AUC: it is left out of the average and named in
    `left_out` (label ids). With fewer than two classes present nothing ranks: the scores are None.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    binary = probs.shape[1] == 2
    present = [c for c in range(probs.shape[1]) if (labels == c).any()]
    scored = [] if len(present) < 2 else [1] if binary else present
    roc = [roc_auc_score(labels == c, probs[:, c]) for c in scored]
    pr = [average_precision_score(labels == c, probs[:, c]) for c in scored]
    suffix = "" if binary else "_macro"
    return {
        f"roc_auc{suffix}": float(np.mean(roc)) if roc else None,
        f"pr_auc{suffix}": float(np.mean(pr)) if pr else None,
        "left_out": [c for c in range(probs.shape[1]) if c not in present],
    }


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Top-label confidence (the highest probability) against accuracy (was that label right?),
    in `n_bins` equal-width bins: bin b holds the rows with confidence in (b/n, (b+1)/n]. An empty
    bin has count 0 and accuracy/confidence None."""
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True on the inner edges: x <= edges[1] -> 0, edges[b] < x <= edges[b+1] -> b.
    which = np.digitize(confidence, edges[1:-1], right=True)
    bins = []
    for b in range(n_bins):
        rows = which == b
        n = int(rows.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": n,
                "accuracy": float(correct[rows].mean()) if n else None,
                "confidence": float(confidence[rows].mean()) if n else None,
            }
        )
    return bins


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE (Guo et al., 2017) over equal-width confidence bins B_b of N rows:

        ECE = sum_b (|B_b| / N) * |acc(B_b) - conf(B_b)|

    acc(B_b): share of the bin's rows whose top label is right; conf(B_b): their mean top probability.
    0 when every bin is as often right as it is confident."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def confused_pairs(
    labels: Sequence[int],
    preds: Sequence[int],
    texts: Sequence[str],
    names: Sequence[str],
    top: int = 10,
    examples: int = 3,
    max_chars: int = 160,
) -> list[dict]:
    """The `top` (true, predicted) pairs of different labels by count, most first (ties: by label
    ids), each with its first `examples` texts in row order, shortened to `max_chars`."""
    rows_of: dict[tuple[int, int], list[int]] = {}
    for i, (t, p) in enumerate(zip(labels, preds)):
        if t != p:
            rows_of.setdefault((int(t), int(p)), []).append(i)
    counts = Counter({pair: len(rows) for pair, rows in rows_of.items()})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [
        {
            "true": names[t],
            "predicted": names[p],
            "count": n,
            "examples": [shorten(texts[i], max_chars) for i in rows_of[t, p][:examples]],
        }
        for (t, p), n in ranked
    ]


def shorten(text: str, max_chars: int = 160) -> str:
    """One line of at most max_chars: whitespace collapsed, cut at a word boundary when one is near."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > 0.75 * max_chars:  # a word boundary close to the limit; else cut mid-word (URLs, ids)
        cut = cut[:space]
    return cut.rstrip() + "…"


def pairs_table(pairs: list[dict], example_chars: int = 60) -> str:
    """The confused pairs as aligned text rows: count, true -> predicted, the first example."""
    w_true, w_pred = max(4, *(len(p["true"]) for p in pairs)), max(9, *(len(p["predicted"]) for p in pairs))
    head = f"  {'rows':>4}  {'true':<{w_true}} -> {'predicted':<{w_pred}}  first example"
    return "\n".join(
        [
            head,
            *(
                f"  {p['count']:>4}  {p['true']:<{w_true}} -> {p['predicted']:<{w_pred}}  "
                f"{shorten(p['examples'][0], example_chars)}"
                for p in pairs
            ),
        ]
    )
