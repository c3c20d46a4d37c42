"""The docs stay true to the tree: links resolve, named repo paths exist, make targets exist, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 150

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?<![\w./-])make\s+([A-Za-z][\w-]*)")
TARGET = re.compile(r"^([A-Za-z0-9_-]+)\s*:(?!=)", re.MULTILINE)
# A repo path: a / inside, and a file extension or a trailing / (`lora_lab/serve/app.py`, `conf/regime/`).
PATH_LIKE = re.compile(r"^[\w.-]+(?:/[\w.-]+)*(?:\.[A-Za-z0-9]+|/)$")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _code(text: str) -> str:
    """The text of fenced code blocks and inline code spans: where commands are written."""
    fenced = FENCE.findall(text)
    inline = INLINE_CODE.findall(FENCE.sub("", text))
    return "\n".join([*fenced, *inline])


def _repo_paths(text: str) -> set[str]:
    """Tokens that name a path in this repo, backticked or in a code block: they contain a /, end in
    an extension or a /, and start with a top-level entry of the repo (so job-dir paths like `merged/`
    or `outputs/...` are not read)."""
    top = {p.name for p in REPO.iterdir() if not p.name.startswith(".")}
    tokens = INLINE_CODE.findall(FENCE.sub("", text))
    tokens += [t.strip(",;:()[]'\"") for block in FENCE.findall(text) for t in block.split()]
    paths = set()
    for token in tokens:
        token = token.strip()
        if "/" not in token.rstrip("/") or not PATH_LIKE.match(token):
            continue
        if token.split("/", 1)[0] in top:
            paths.add(token)
    return paths


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto: and anchors within the page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{_rel(page)}: links to files that do not exist: {broken}"


def test_architecture_names_existing_paths() -> None:
    page = REPO / "docs" / "architecture.md"
    paths = _repo_paths(page.read_text(encoding="utf-8"))
    assert paths, "docs/architecture.md names no repo path in backticks: has the path pattern stopped matching?"
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move reference material into docs/"
    )


def test_make_targets_exist() -> None:
    targets = set(TARGET.findall((REPO / "Makefile").read_text(encoding="utf-8")))
    unknown = {}
    for page in PAGES:
        for name in MAKE.findall(_code(page.read_text(encoding="utf-8"))):
            if name not in targets:
                unknown.setdefault(_rel(page), set()).add(name)
    assert not unknown, f"`make <target>` with no such target in the Makefile: {unknown}"


def test_helpers_see_what_they_check() -> None:
    """The patterns themselves: a broken regex would make the checks above pass vacuously."""
    text = "see [a](docs/a.md#x) and `lora_lab/serve/app.py`, `conf/regime/`, `merged/`, `make bench-serve ARGS=1`"
    assert LINK.findall(text) == ["docs/a.md#x"]
    assert _repo_paths(text) == {"lora_lab/serve/app.py", "conf/regime/"}
    block = "```\nbuild_job(cfg)   lora_lab/regimes/lora.py: one module\n```\n"
    assert _repo_paths(block) == {"lora_lab/regimes/lora.py"}
    assert MAKE.findall(_code(text)) == ["bench-serve"]
    assert {"train", "test"} <= set(TARGET.findall((REPO / "Makefile").read_text(encoding="utf-8")))
