"""Hydra override syntax -> Optuna distributions, and a trial's values back into overrides.

choice(a,b,c)               categorical (any scalars; config group options: regime=choice(lora,ia3))
a,b,c  (command line)       the same categorical dimension: one value per trial, not a grid
interval(lo,hi)             float uniform;  tag(log, interval(1e-5,1e-2)) log-uniform
tag(int, interval(lo,hi))   int, both ends included;  tag(int, log, interval(4,64)) log-int
range(start,stop,step)      the values of Python's range (stop excluded) as an ordered int or
                            float dimension: range(4,33,4) -> 4, 8, ..., 32
key=value                   fixed: passed to every job as is
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from lora_lab.errors import ConfigError

KNOWN_TAGS = {"log", "int"}
Scalar = (str, int, float, bool, type(None))


class SearchSpaceError(ConfigError):
    """A search-space entry Optuna cannot sample; the message names the key and the fix."""


@dataclass
class SearchSpace:
    """What varies (one distribution per key) and what every job gets unchanged."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    # The override key as written (`+trainer.foo` keeps its `+`), per parameter name.
    key_elements: dict[str, str] = field(default_factory=dict)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The fixed overrides plus one `key=value` per sampled parameter."""
        return [*self.fixed, *(f"{self.key_elements[name]}={override_value(v)}" for name, v in params.items())]

    def signature(self) -> dict[str, Any]:
        """JSON-able identity of the space and the fixed overrides: a resumed study must match it."""
        return {
            "params": {name: distribution_to_json(d) for name, d in sorted(self.distributions.items())},
            "fixed": sorted(self.fixed),
        }


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """`hydra.sweeper.params` (key -> override value) then the command line, which wins per key."""
    parser = OverridesParser.create()
    from_config = [f"{key}={value}" for key, value in params.items()]
    by_key: dict[str, tuple[str, Override]] = {}
    for text in [*from_config, *arguments]:
        try:
            override = parser.parse_override(text)
        except HydraException as err:
            raise SearchSpaceError(f"{text}: not Hydra override syntax ({err})") from err
        by_key[override.key_or_group] = (text, override)
    space = SearchSpace()
    for key, (text, override) in by_key.items():
        if override.is_sweep_override():
            space.distributions[key] = distribution(override)
            space.key_elements[key] = override.get_key_element()
        else:
            space.fixed.append(text)
    if not space.distributions:
        raise SearchSpaceError(
            "The Optuna sweep has nothing to search: give hydra.sweeper.params (an hparams_search config) "
            "or a sweep on the command line, e.g. regime.learning_rate='tag(log, interval(1e-4, 1e-2))'"
        )
    return space


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    key, sweep = override.key_or_group, override.value()
    tags = set(getattr(sweep, "tags", set()))
    if unknown := tags - KNOWN_TAGS:
        raise SearchSpaceError(f"{key}: unknown tag(s) {sorted(unknown)}; the sweeper knows {sorted(KNOWN_TAGS)}")
    if isinstance(sweep, ChoiceSweep):
        _refuse_tags(key, tags, "choice")
        if sweep.shuffle:
            raise SearchSpaceError(f"{key}: shuffle() means nothing to a sampler; drop it")
        if not all(isinstance(v, Scalar) for v in sweep.list):
            raise SearchSpaceError(
                f"{key}={override.input_line}: choices must be scalars or config group options, not lists or dicts"
            )
        return CategoricalDistribution(sweep.list)
    if isinstance(sweep, IntervalSweep):
        if "int" in tags:
            low, high = int(sweep.start), int(sweep.end)
            if (low, high) != (sweep.start, sweep.end):
                raise SearchSpaceError(f"{key}: tag(int, interval({sweep.start}, {sweep.end})) needs whole-number ends")
            return IntDistribution(low, high, log="log" in tags)
        return FloatDistribution(sweep.start, sweep.end, log="log" in tags)
    if isinstance(sweep, RangeSweep):
        _refuse_tags(key, tags, "range")
        if sweep.shuffle:
            raise SearchSpaceError(f"{key}: shuffle() means nothing to a sampler; drop it")
        values = sorted(override.sweep_iterator())
        if not values:
            raise SearchSpaceError(f"{key}: range({sweep.start}, {sweep.stop}, {sweep.step}) is empty")
        step = abs(sweep.step)
        # range(4,33,4) -> 4..32 step 4: Optuna's `high` is the last value, not Python's excluded stop.
        if all(isinstance(v, int) for v in values) and isinstance(step, int):
            return IntDistribution(values[0], values[-1], step=step)
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
    raise SearchSpaceError(
        f"{override.input_line}: {type(sweep).__name__} is not an Optuna dimension; "
        "use choice(...), interval(...), range(...) or tag(log, interval(...))"
    )


def _refuse_tags(key: str, tags: set[str], kind: str) -> None:
    if tags:
        raise SearchSpaceError(
            f"{key}: tag({', '.join(sorted(tags))}) applies to interval(...) only, not {kind}(...); "
            "for a log-int dimension write tag(int, log, interval(lo, hi))"
        )


def override_value(value: Any) -> str:
    """A Python scalar as Hydra override text that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    # Leave plain words plain (regime=ia3); quote what the grammar reads differently ("8") or not at all ("it's").
    try:
        if OverridesParser.create().parse_override(f"k={text}").value() == text:
            return text
    except HydraException:
        pass
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
