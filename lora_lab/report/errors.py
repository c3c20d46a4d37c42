"""The one error the report raises: its message names what is wrong and how to fix it."""

from __future__ import annotations


class ReportError(ValueError):
    """A directory, study or output the report cannot use; the message says which and why."""
