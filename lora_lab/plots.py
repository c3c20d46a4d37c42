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
    size = min(4 + 0.35 * n, 30)  # 5 labels -> 5.75 in; Banking77's 77 -> 30 in
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
