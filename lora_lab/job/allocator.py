"""glibc's allocator, kept from hoarding a job's freed tensors (a no-op where libc is not glibc).

glibc maps a block of at least `M_MMAP_THRESHOLD` bytes (128 KiB at start) on its own and unmaps it
on free. Its default is dynamic: each time such a mapped block is freed, the threshold rises to
that block's size (up to 32 MiB). After the first batch of a job, a tensor of a few MB is carved
from the heap instead, and the heap shrinks only from its top: freed tensors below a live one stay
resident. Batches whose shapes change (length-grouped batches, token-budget passes) then add new
holes batch after batch, so the RSS of a job grows with the batches it has run, not with what is
alive. Fixing the threshold at 128 KiB keeps every tensor above it mapped and given back when
freed. On the books reviews the same 12 training batches peaked at 1.9 GB instead of 3.5 GB; the
whole-job peaks and the speed, paired: docs/benchmarks.md ("Memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from functools import cache

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"  # glibc's own variable: a user who set it has chosen


@cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim); None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def fix_mmap_threshold(nbytes: int | None) -> bool:
    """Fix glibc's mmap threshold at `nbytes` for the rest of the process (None: leave glibc's
    dynamic default). Returns whether it was set: not where libc is not glibc, nor where the user
    set MALLOC_MMAP_THRESHOLD_ (glibc has then read it at start)."""
    if nbytes is None or os.environ.get(ENV_OVERRIDE) is not None:
        return False
    libc = glibc()
    if libc is None:
        log.debug("not glibc: the allocator's mmap threshold is left as it is")
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))


def release_free_memory() -> None:
    """Give the heap's freed pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Loading an adapter and embedding its training texts for /v1/similar leave hundreds of MB of
    temporary tensors that glibc keeps mapped after they are freed; without a trim the RSS stays at
    that peak after each load (figures in docs/benchmarks.md, serving).
    """
    if (libc := glibc()) is not None:
        libc.malloc_trim(0)
