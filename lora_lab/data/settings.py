"""The DataModule's settings, checked without torch: TextClassificationDataModule checks its own
arguments with check_data_settings, and config validation calls it on cfg.data before anything loads."""

from __future__ import annotations

from lora_lab.data.truncation import AUTO, Truncation
from lora_lab.errors import ConfigError, check_positive_int


def check_data_settings(
    batch_size: int,
    eval_batch_size: int,
    max_length: int | str,
    max_length_cap: int,
    shots_per_class: int | None = None,
    truncation: str = "head",
    head_tokens: int | None = None,
    long_text: str = "truncate",
    max_chunks: int = 4,
    train_rows: int | None = None,
) -> None:
    """Each setting in range, named as the config names it (data.batch_size, shots_per_class, ...)."""
    for key, value in (
        ("batch_size", batch_size),
        ("eval_batch_size", eval_batch_size),
        ("max_length_cap", max_length_cap),
    ):
        check_positive_int(f"data.{key}", value)
    if max_length != AUTO and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ConfigError(
            f"data.max_length={max_length!r}: a positive number of tokens, or auto (covers 95% of the training texts)"
        )
    # The mode and head_tokens, checked as the DataModule will use them (head_tokens against a fixed length).
    Truncation(
        max_length if isinstance(max_length, int) else max_length_cap, truncation, head_tokens, long_text, max_chunks
    )
    if shots_per_class is not None:
        check_positive_int("shots_per_class", shots_per_class, example="or null for every training row")
    if train_rows is not None:
        check_positive_int("train_rows", train_rows, example="e.g. train_rows=1024, or null for every training row")
