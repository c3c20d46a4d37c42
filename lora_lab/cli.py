"""What every entry point shares: a user's mistake printed as one paragraph, and where the job runs.

A UserError (ConfigError, DataError) in a single run exits with code 2 and its message, with no
traceback: the message already names the key or file and the fix. LORA_LAB_DEBUG=1 or
HYDRA_FULL_ERROR=1 shows the traceback. In a multirun the error propagates instead, so the sweep
records it as that job's failure and goes on with the others.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lora_lab.config import launches_processes
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


def is_ddp_worker(cfg: DictConfig) -> bool:
    """Whether this process is rank 1.. of a DDP job: Lightning started it by re-running the command
    into rank 0's job dir, with LOCAL_RANK (torchrun: RANK) set. Known before torch loads."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return rank > 0 and cfg.get("trainer") is not None and launches_processes(cfg.trainer)  # eval.yaml has no trainer


def exit_with_error(message: object, code: int = USER_ERROR_EXIT) -> NoReturn:
    """The one way a lora_lab command ends on an error it explains: `error: <message>` on stderr, no
    traceback, exit `code` (2: a config or file to fix)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def debugging() -> bool:
    """LORA_LAB_DEBUG=1 or HYDRA_FULL_ERROR=1: user errors show their traceback."""
    return os.environ.get("LORA_LAB_DEBUG") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


def check_group_choices(argv: Sequence[str], conf_dir: Path) -> None:
    """`group=option` arguments whose option has no conf/<group>/<option>.yaml: a UserError listing the
    options, before Hydra composes (Hydra's own message exits 1 and leaves the fix to the reader).
    Multirun lists (`regime=lora,full`) are checked option by option; sweep functions are left to Hydra."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or "." in key or "/" in key or "(" in value or "$" in value or not (conf_dir / key).is_dir():
            continue
        options = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        for option in value.split(","):
            if option not in options and option != "null":
                close = difflib.get_close_matches(option, options, n=1)
                raise UserError(f"{key}={option}: there is no {key} named {option!r}"
                                + (f"; did you mean {key}={close[0]}?" if close else ".")
                                + f" Choose one of {', '.join(options)} (the files in conf/{key}/)")


def checks_group_choices(conf_dir: Path) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a Hydra main (outermost) to check the command line's group choices first: a bad one is
    one `error:` line and exit 2, in a third of a second."""

    def decorate(main: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> T:
            try:
                check_group_choices(sys.argv[1:], conf_dir)
            except UserError as err:
                if debugging():
                    raise
                exit_with_error(err)
            return main(*args, **kwargs)

        return run

    return decorate


def report_user_errors(task: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra task function: a UserError in a single run -> its message on stderr, exit 2."""

    @functools.wraps(task)
    def run(*args: object, **kwargs: object) -> T:
        try:
            return task(*args, **kwargs)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None or is_multirun() or debugging():
                raise
            exit_with_error(user_error)

    return run


def find_user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind err: Hydra's instantiate() wraps what a _target_ raises in its own exception."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, UserError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None
