"""A user's mistake on the command line or in the config: one `error:` paragraph and exit 2.

A UserError (ConfigError, DataError) in a single run exits with code 2 and its message, with no
traceback: the message already names the key or file and the fix. LORA_LAB_DEBUG=1 or
HYDRA_FULL_ERROR=1 shows the traceback. In a multirun the error propagates instead, so the sweep
records it as that job's failure and goes on with the others. Before that, `checks_group_choices`
(the outermost decorator of every Hydra entry point) refuses a `group=option` with no conf file, and
an override of a key the config lacks (`regime.dropout=1.5`) with the closest key that exists.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig

from lora_lab.cli.run import is_multirun
from lora_lab.errors import UserError

T = TypeVar("T")
USER_ERROR_EXIT = 2


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
                raise UserError(
                    f"{key}={option}: there is no {key} named {option!r}"
                    + (f"; did you mean {key}={close[0]}?" if close else ".")
                    + f" Choose one of {', '.join(options)} (the files in conf/{key}/)"
                )


def unknown_key(override: str, key: str, cfg: DictConfig) -> str:
    """The message for `override`, which sets `key`, a key `cfg` lacks: the closest key that exists
    beside it, the keys there, and how to add a new one."""
    parts, node, known = key.split("."), cfg, []
    for part in parts:
        if not isinstance(node, DictConfig) or part not in node:
            break
        node, known = node[part], [*known, part]
    missing, where = parts[len(known)], ".".join(known)
    names = [str(k) for k in node.keys() if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(missing, names, n=1, cutoff=0.6) or [n for n in names if missing in n][:1]
    prefix = f"{where}." if where else ""
    listed = f" The keys of {where} are {', '.join(names)}." if where and names else ""
    return (
        f"{override}: the config has no key {prefix}{missing}"
        + (f"; did you mean {prefix}{close[0]}?" if close else ".")
        + listed
        + f" A key of your own is added with a +: +{override}"
    )


@contextlib.contextmanager
def explaining_unknown_keys() -> Iterator[None]:
    """While Hydra composes: an override of a key the config lacks exits 2 with the closest key
    (Hydra's own "Could not override" exits 1 with no hint). Found where Hydra applies the overrides,
    on the config they are applied to, so it costs nothing until a key is unknown."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.errors import ConfigCompositionException

    original = ConfigLoaderImpl.__dict__.get("_apply_overrides_to_config")
    if not isinstance(original, staticmethod):  # another Hydra than 1.3: its own message stands
        yield
        return

    def apply_overrides(overrides: list[Any], cfg: DictConfig) -> None:
        try:
            original.__func__(overrides, cfg)
        except ConfigCompositionException as err:
            failed = next(
                (
                    o
                    for o in overrides
                    if f"'{o.key_or_group}'" in str(err)
                    and o.package is None
                    and not (o.is_add() or o.is_force_add() or o.is_delete())
                ),
                None,
            )
            if failed is None or "Could not override" not in str(err) or debugging():
                raise
            exit_with_error(unknown_key(failed.input_line, failed.key_or_group, cfg))

    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)
    try:
        yield
    finally:
        ConfigLoaderImpl._apply_overrides_to_config = original


def checks_group_choices(conf_dir: Path) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a Hydra main (outermost) to check the command line's group choices first, and its keys as
    Hydra composes: a bad one is one `error:` paragraph and exit 2, in a third of a second."""

    def decorate(main: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> T:
            try:
                check_group_choices(sys.argv[1:], conf_dir)
            except UserError as err:
                if debugging():
                    raise
                exit_with_error(err)
            with explaining_unknown_keys():
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
