"""Figures written into job and eval dirs (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def confusion_matrix_png(matrix: list[list[int]], labels: list[str], path: Path, title: str = "") -> None:
    """Counts with row-normalised shading (rows: true label), written atomically."""
    n = len(labels)
    # 0.2 in per label keeps 8-pt tick labels apart (14 pt of height each); 5 labels -> 5 in,
    # Banking77's 77 -> 18 in (2,000 px at 110 dpi). The 30-in cap this replaced cost 3 s per
    # Banking77 job in savefig, 10% of a 30-s sweep job.
    size = min(4 + 0.2 * n, 18)
    fig, ax = plt.subplots(figsize=(size, size))
    shares = [[c / max(1, sum(row)) for c in row] for row in matrix]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 30, ha="right" if n <= 8 else "center", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shares[i][j] > 0.5 else "black",
                )
    _save(fig, path)


def reliability_png(bins: list[dict], ece: float, path: Path, title: str = "") -> None:
    """Accuracy against confidence per bin (lora_lab.models.evaluation.reliability_bins), each bar
    labelled with its row count, the diagonal of perfect calibration and the ECE; written atomically."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    filled = [b for b in bins if b["count"]]
    lefts, widths = [b["lower"] for b in filled], [b["upper"] - b["lower"] for b in filled]
    ax.bar(
        lefts,
        [b["accuracy"] for b in filled],
        width=widths,
        align="edge",
        color="tab:blue",
        alpha=0.75,
        edgecolor="white",
        label="accuracy",
    )
    # Hatched from the accuracy to the bin's mean confidence: above a bar is over-confidence,
    # inside it under-confidence.
    ax.bar(
        lefts,
        [b["confidence"] - b["accuracy"] for b in filled],
        bottom=[b["accuracy"] for b in filled],
        width=widths,
        align="edge",
        fill=False,
        hatch="///",
        edgecolor="tab:red",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    for b in filled:
        top = max(b["accuracy"], b["confidence"])
        ax.text(
            (b["lower"] + b["upper"]) / 2, min(top + 0.01, 1.0), str(b["count"]), ha="center", va="bottom", fontsize=7
        )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.06)
    ax.set_xlabel("confidence (top-label probability); numbers: rows per bin")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title + ': ' if title else ''}ECE {ece:.4f} ({len(bins)} bins)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    """Lay out, write to a temp file beside `path`, close, rename into place: never half a PNG."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
