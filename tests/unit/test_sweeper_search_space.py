"""Hydra override syntax becomes the Optuna dimensions it says, and a trial's values go back as overrides."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lora_lab.sweeper.search_space import SearchSpaceError, override_value, parse_search_space


@pytest.mark.parametrize(
    "override,expected",
    [
        ("rank=choice(4,8,16)", CategoricalDistribution([4, 8, 16])),
        ("regime=choice(lora,dora,ia3)", CategoricalDistribution(["lora", "dora", "ia3"])),
        # A plain list on the command line is the same categorical dimension, not a grid.
        ("rank=8,16", CategoricalDistribution([8, 16])),
        ("regime.lora_dropout=interval(0,0.2)", FloatDistribution(0.0, 0.2)),
        ("regime.learning_rate=tag(log, interval(1e-5,1e-2))", FloatDistribution(1e-5, 1e-2, log=True)),
        ("regime.lora_alpha=tag(int, interval(4,64))", IntDistribution(4, 64)),
        ("regime.lora_alpha=tag(int, log, interval(4,64))", IntDistribution(4, 64, log=True)),
        # Python's range: stop excluded, so 33 ends the values at 32.
        ("rank=range(4,33,4)", IntDistribution(4, 32, step=4)),
        ("regime.lora_dropout=range(0,0.3,0.1)", FloatDistribution(0.0, 0.2, step=0.1)),
    ],
)
def test_each_sweep_form_becomes_its_optuna_distribution(override: str, expected):
    space = parse_search_space({}, [override])
    ((name, distribution),) = space.distributions.items()
    assert name == override.split("=")[0]
    if isinstance(expected, FloatDistribution) and expected.step is not None:
        assert (distribution.low, distribution.step) == (expected.low, expected.step)
        assert distribution.high == pytest.approx(expected.high)
    else:
        assert distribution == expected


def test_config_params_and_command_line_merge_and_the_command_line_wins():
    space = parse_search_space(
        {"rank": "choice(4,8)", "regime.learning_rate": "tag(log, interval(1e-4,1e-2))", "seed": 3},
        ["rank=choice(16,32)", "dataset=banking77", "+trainer.benchmark=choice(true,false)"],
    )
    assert space.distributions["rank"] == CategoricalDistribution([16, 32])
    assert set(space.distributions) == {"rank", "regime.learning_rate", "trainer.benchmark"}
    assert sorted(space.fixed) == ["dataset=banking77", "seed=3"]
    # The `+` of an appended key survives into the job's override.
    overrides = space.overrides({"rank": 16, "regime.learning_rate": 1e-3, "trainer.benchmark": True})
    assert overrides[-3:] == ["rank=16", "regime.learning_rate=0.001", "+trainer.benchmark=true"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("rank=tag(log, choice(4,8))", "applies to interval"),
        ("rank=shuffle(4,8)", "shuffle"),
        ("rank=tag(sqrt, interval(1,2))", "unknown tag"),
        ("regime.lora_alpha=tag(int, interval(1.5,4))", "whole-number"),
        ("data.sizes=choice([1,2],[3])", "scalars"),
        ("dataset=glob(*)", "not an Optuna dimension"),
        ("rank=range(8,4)", "empty"),
        ("rank=choice(4,", "not Hydra override syntax"),
    ],
)
def test_unsupported_sweeps_are_refused_with_the_key_named(override: str, message: str):
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space({}, [override])


def test_a_sweep_with_nothing_to_search_is_refused():
    with pytest.raises(SearchSpaceError, match="nothing to search"):
        parse_search_space({}, ["dataset=banking77", "trainer.max_epochs=1"])


@pytest.mark.parametrize(
    "value", ["ia3", "8", "it's", "a b", "x,y", "sqlite:////tmp/a b/optuna.db", "null", 1e-5, 8, True, None]
)
def test_values_round_trip_through_override_text(value):
    text = override_value(value)
    assert OverridesParser.create().parse_override(f"k={text}").value() == value


def test_plain_words_stay_unquoted():
    assert override_value("ia3") == "ia3"
    assert override_value("8") == "'8'"


def test_signature_is_order_independent_and_sees_a_changed_range():
    a = parse_search_space({"rank": "choice(4,8)", "seed": 1}, ["dataset=banking77"])
    b = parse_search_space({"seed": 1}, ["dataset=banking77", "rank=choice(4,8)"])
    c = parse_search_space({"rank": "choice(4,8,16)", "seed": 1}, ["dataset=banking77"])
    assert a.signature() == b.signature() != c.signature()
