"""The errors a user can cause and fix: every layer may raise them, entry points print them.

Both carry a message that names the key, file or label at fault and how to fix it; an entry
point shows the message alone, not a traceback (see lora_lab.cli).
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for (a config, a file), not a bug in lora_lab."""


class ConfigError(UserError):
    """A composed config that cannot run; the message names the key and the fix."""


class DataError(UserError):
    """Data that cannot be trained on; the message names the file/label/column and the fix."""
