"""Figures written into job dirs (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if shares[i][j] > 0.5 else "black")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
