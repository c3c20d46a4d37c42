"""Argument checks shared by the synthetic generators and their Source classes.

A generator checks its Python arguments ("n_per_class"); its Source checks the same values under
their config keys ("dataset.n_per_class") as the config is instantiated, so a bad override fails
at once rather than when the rows are first read. Each message names the key, says what it must
be and gives a value to pass instead.
"""

from __future__ import annotations

import numbers
from typing import NoReturn

from lora_lab.errors import ConfigError


def check_count(key: str, value: object, *, counting: str, example: int) -> None:
    """An integer >= 1; `counting` says what it counts ("notes per intent")."""
    if not _is_int(value) or value < 1:
        _fail(key, value, f"must be an integer >= 1 ({counting})", example)


def check_seed(key: str, value: object) -> None:
    """An integer: random.Random would also take a string or a float, but from a config that is a typo."""
    if not _is_int(value):
        _fail(key, value, "must be an integer", 0)


def check_noise(key: str, value: object, *, clean: str, example: float) -> None:
    """A number in [0, 1], where 0 is `clean` (NaN fails the range test)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        _fail(key, value, f"must be a number in [0, 1] (0 = {clean})", example)


def check_bool(key: str, value: object) -> None:
    """A real boolean: a string such as "false" is truthy and would silently act as true."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false (a boolean, not a string)")


def _is_int(value: object) -> bool:
    # bool is an Integral too: True would pass as 1 unnoticed.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(key: str, value: object, requirement: str, example: object) -> NoReturn:
    raise ConfigError(f"{key}={value!r}: {requirement}; pass e.g. {key}={example}")
