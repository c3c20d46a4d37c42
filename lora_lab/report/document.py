"""What a report is made of, independent of its format: headings, paragraphs, tables, figures.

markdown.py and html.py render the same Document; wandb_log.py logs its tables and figures.
Table cells keep their raw values (numbers stay numbers for W&B) and format only when rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Column:
    name: str
    # A format spec for numbers (".3f", ",.0f"); text and None render as they are ("-" for None).
    fmt: str = ""


@dataclass
class Table:
    # Names the table as a W&B key ("jobs", "configurations").
    key: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def text_rows(self) -> list[list[str]]:
        return [[format_cell(v, c.fmt) for v, c in zip(row, self.columns)] for row in self.rows]


@dataclass
class Figure:
    # A PNG beside the report (report.md links it, report.html embeds it).
    file: str
    caption: str


Block = Heading | Paragraph | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def of_type(self, kind: type) -> list:
        return [b for b in self.blocks if isinstance(b, kind)]


def format_cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)
