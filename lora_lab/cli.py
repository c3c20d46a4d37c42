"""What every entry point shares: a user's mistake printed as one paragraph, and where the job runs.

A UserError (ConfigError, DataError) in a single run exits with code 2 and its message, with no
traceback: the message already names the key or file and the fix. LORA_LAB_DEBUG=1 or
HYDRA_FULL_ERROR=1 shows the traceback. In a multirun the error propagates instead, so the sweep
records it as that job's failure and goes on with the others.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig

from lora_lab.errors import UserError

T = TypeVar("T")
USER_ERROR_EXIT = 2


def is_multirun() -> bool:
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def sweep_dir() -> Path | None:
    """The multirun's dir, where sibling jobs live (None for a single run)."""
    return Path(HydraConfig.get().sweep.dir) if is_multirun() else None


def task_overrides() -> list[str]:
    """The job's own command-line overrides (a multirun's job: its combination), [] outside Hydra."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def report_user_errors(task: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra task function: a UserError in a single run -> its message on stderr, exit 2."""

    @functools.wraps(task)
    def run(*args: object, **kwargs: object) -> T:
        try:
            return task(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            debug = os.environ.get("LORA_LAB_DEBUG") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"
            if user_error is None or is_multirun() or debug:
                raise
            print(f"error: {user_error}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)

    return run


def find_user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind err: Hydra's instantiate() wraps what a _target_ raises in its own exception."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, UserError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None
