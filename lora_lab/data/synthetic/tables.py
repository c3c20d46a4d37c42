"""The phrase tables of the synthetic generators: `<name>.yaml` files beside this module."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

HERE = Path(__file__).resolve().parent


def table_path(name: str) -> Path:
    """The data file of generator `name`: "sales_notes" -> .../synthetic/sales_notes.yaml."""
    return HERE / f"{name}.yaml"


def load_tables(name: str) -> SimpleNamespace:
    """The tables of `<name>.yaml` as attributes (`tables.cores["Urgent Need"]`), lists as tuples.

    The base loader reads every scalar as a string, so no entry can turn into a boolean or a
    number (YAML 1.1 reads a bare `no` as False and `10:30` as 630). Tuples keep the tables
    read-only; the generators draw from them by position, so their order is part of the data.
    """
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # the C parser where PyYAML has it
    with table_path(name).open(encoding="utf-8") as f:
        tables = yaml.load(f, Loader=loader)
    return SimpleNamespace(**{key: _frozen(value) for key, value in tables.items()})


def _frozen(value: object) -> object:
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return {key: _frozen(item) for key, item in value.items()}
    return value
