"""report.html: the Document as one self-contained page (inline CSS, PNGs embedded as base64:
no external file or URL)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from lora_lab.report.document import Document, Figure, Heading, Paragraph, Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.best td { background: #fff6d5; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def render_html(doc: Document, fig_dir: Path) -> str:
    """The page; figures are read from fig_dir and inlined."""
    body = [f"<h1>{escape(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(html_table(block))
        elif isinstance(block, Figure):
            data = base64.b64encode((fig_dir / block.file).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{escape(block.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{escape(block.caption)}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(doc.title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def html_table(table: Table) -> str:
    """A table; rows whose `best` cell is set are highlighted."""
    names = [c.name for c in table.columns]
    best = names.index("best") if "best" in names else None
    rows = []
    for cells in table.text_rows():
        marked = ' class="best"' if best is not None and cells[best] else ""
        rows.append(f"<tr{marked}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def write_html(doc: Document, fig_dir: Path, path: Path) -> None:
    path.write_text(render_html(doc, fig_dir), encoding="utf-8")
