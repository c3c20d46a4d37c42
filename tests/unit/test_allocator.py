"""glibc's mmap threshold, fixed for a job (lora_lab/job/allocator.py): freed tensors leave the RSS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lora_lab.config.validation import validate
from lora_lab.errors import ConfigError
from lora_lab.job.allocator import ENV_OVERRIDE, fix_mmap_threshold, glibc

# What a training job's tensors do to glibc's heap, in small: a freed 16 MB block raises glibc's
# dynamic threshold to 16 MB, so the next twenty 8 MB blocks come from the heap; a small live block
# after each pins them there, and once they are freed their 160 MB stay resident. With the
# threshold fixed at 128 KiB each 8 MB block is mapped on its own and unmapped when freed.
PATTERN = """
import ctypes, sys
from lora_lab.job.allocator import fix_mmap_threshold, glibc
libc = glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mb():
    return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
def touched(n):
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold(131072)
libc.free(touched(16 << 20))
base = rss_mb()
blocks, pins = [], []
for i in range(20):
    blocks.append(touched((8 << 20) + i))
    pins.append(touched(1000))
for p in blocks:
    libc.free(p)
print(rss_mb() - base)
"""


def kept_mb(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != ENV_OVERRIDE}
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(glibc() is None or not os.path.exists("/proc/self/status"), reason="glibc and /proc only")
def test_a_fixed_threshold_gives_freed_blocks_back_where_the_dynamic_one_keeps_them():
    assert kept_mb("dynamic") >= 120  # glibc's default: the freed 160 MB stay resident
    assert kept_mb("fixed") <= 20


def test_the_users_own_malloc_variable_and_null_leave_glibc_alone(monkeypatch):
    assert fix_mmap_threshold(None) is False
    monkeypatch.setenv(ENV_OVERRIDE, "65536")
    assert fix_mmap_threshold(131072) is False


@pytest.mark.parametrize("value", [0, 64 << 20, "lots"])
def test_a_threshold_glibc_refuses_is_a_config_error(tiny_cfg, value):
    validate(tiny_cfg("malloc_mmap_threshold=null"))
    with pytest.raises(ConfigError, match="malloc_mmap_threshold="):
        validate(tiny_cfg(f"malloc_mmap_threshold={value}"))
