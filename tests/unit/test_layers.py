"""The layers point one way: a module imports only from its own layer or the ones below.

Read with `ast`, so an import inside a function counts as much as one at the top (a function-level
import once hid a cycle: models/head_init -> strategies -> every regime -> models).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lora_lab"

# Bottom to top. A module belongs to the first layer whose prefix it matches; `*.__main__` modules
# and the entry points are the top. docs/architecture.md draws the same picture.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("lora_lab.errors", "lora_lab.artifacts")),
    ("data", ("lora_lab.data",)),
    ("models", ("lora_lab.models",)),
    ("regimes", ("lora_lab.regimes",)),
    ("job", ("lora_lab.config", "lora_lab.callbacks", "lora_lab.job")),
    ("tools", ("lora_lab.sweeper", "lora_lab.auto", "lora_lab.report", "lora_lab.cli")),
    ("entry points", ("lora_lab.train", "lora_lab.eval", "lora_lab.domains", "lora_lab.serve", "lora_lab.export")),
]
# Never imported by data or models, not even inside a function (the wording of the rule).
ABOVE_MODELS = (
    "lora_lab.regimes",
    "lora_lab.sweeper",
    "lora_lab.auto",
    "lora_lab.report",
    "lora_lab.train",
    "lora_lab.eval",
    "lora_lab.job",
    "lora_lab.callbacks",
    "lora_lab.config",
    "lora_lab.domains",
    "lora_lab.cli",
    "lora_lab.serve",
    "lora_lab.export",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "lora_lab" or module.endswith(".__main__"):
        return 0 if module == "lora_lab" else len(LAYERS) - 1
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to docs/architecture.md")


def lora_lab_imports(path: Path) -> set[str]:
    """Every lora_lab module the file imports, at any depth (TYPE_CHECKING blocks excluded: types only)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name == "lora_lab" or name.startswith("lora_lab.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_a_module_imports_only_its_own_layer_or_lower(path: Path):
    module = module_name(path)
    upward = []
    for name in lora_lab_imports(path):
        # `from lora_lab.data import cache` names a module; `from lora_lab.x import f`, a symbol of x.
        target = (
            name
            if (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()
            or (PACKAGE.parent / name.replace(".", "/")).is_dir()
            else name.rpartition(".")[0]
        )
        if layer_of(target) > layer_of(module):
            upward.append(f"{target} ({LAYERS[layer_of(target)][0]})")
    assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports upward: {sorted(upward)}"


def test_data_and_models_know_nothing_of_regimes_sweeps_reports_or_entry_points():
    offenders = {
        module_name(path): sorted(n for n in lora_lab_imports(path) if n.startswith(ABOVE_MODELS))
        for path in MODULES
        if module_name(path).startswith(("lora_lab.data", "lora_lab.models"))
        and not module_name(path).endswith("__main__")
    }
    assert not {m: n for m, n in offenders.items() if n}


def test_the_rule_catches_an_upward_import(tmp_path: Path):
    # The checker itself: a models module importing a regime is reported (ast reads nested imports too).
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from lora_lab.regimes.lora import LoRA\n    return LoRA\n")
    assert lora_lab_imports(fake) == {"lora_lab.regimes.lora", "lora_lab.regimes.lora.LoRA"}
    assert layer_of("lora_lab.regimes.lora") > layer_of("lora_lab.models.head_init")
