"""report.md: the Document as GitHub-flavoured markdown, figures linked as the PNG files beside it."""

from __future__ import annotations

from pathlib import Path

from lora_lab.report.document import Document, Figure, Heading, Paragraph, Table


def render_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block))
        elif isinstance(block, Figure):
            parts.append(f"![{Path(block.file).stem}]({block.file})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def markdown_table(table: Table) -> str:
    """A pipe table; `|` inside a cell is escaped so that it cannot split the row."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    header = [c.name for c in table.columns]
    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in table.text_rows())])


def write_markdown(doc: Document, path: Path) -> None:
    path.write_text(render_markdown(doc))
