"""The errors a user can cause and fix: every layer may raise them, entry points print them.

Both carry a message that names the key, file or label at fault and how to fix it; an entry
point shows the message alone, not a traceback (see lora_lab/cli/errors.py).
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for (a config, a file), not a bug in lora_lab."""


class ConfigError(UserError):
    """A composed config that cannot run; the message names the key and the fix."""


class DataError(UserError):
    """Data that cannot be trained on; the message names the file/label/column and the fix."""


# The checks every layer shares, one implementation each: the owner of a value (the DataModule, the
# LightningModule, a regime, the server) calls them on its own arguments, and config validation calls
# the same ones before any model loads.


def check_positive_int(key: str, value: object, what: str = "", example: str = "") -> int:
    """`value` must be a whole number >= 1 (not a bool); else a ConfigError naming `key`, e.g.
    "rank=0: the LoRA rank must be a positive integer, e.g. rank=8"."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{key}={value!r}: {what + ' ' if what else ''}must be a positive integer"
            + (f", {example}" if example else "")
        )
    return value


def check_unit_interval(key: str, value: float, what: str = "", example: str = "") -> float:
    """`value` must lie in [0, 1) (a probability that leaves something: dropout, label smoothing)."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(
            f"{key}={value}: {what + ' ' if what else ''}must lie in [0, 1)" + (f", {example}" if example else "")
        )
    return value
