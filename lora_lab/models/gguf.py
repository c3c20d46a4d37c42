"""A GGUF checkpoint (llama.cpp's format) converted once into a plain transformers dir, then reused.

transformers reads a GGUF directly (`from_pretrained(dir, gguf_file=name)`), but every such load
parses the file and dequantizes every tensor again, and config, weights and tokenizer each parse it
separately (SmolLM2-135M Q4_1: tens of seconds a load; docs/benchmarks.md). So the first job
converts the file into `<cache_dir>/<key>/` (fp32 safetensors, config, the tokenizer built from the GGUF's
metadata) and every later job loads that dir like any local checkpoint (about a second).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from pathlib import Path

import torch
import transformers

from lora_lab.artifacts import atomic_dir, write_json

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1  # bump when what a converted dir holds changes
PROVENANCE_FILE = "lora_lab_gguf.json"


def is_gguf(pretrained: str | None) -> bool:
    """Whether a backbone's `pretrained` names a GGUF file (llama.cpp's files all end in .gguf)."""
    return pretrained is not None and pretrained.endswith(".gguf")


def gguf_cache_key(gguf_file: Path) -> str:
    """`<file stem>-<16 hex>`: readable, and changed by anything that changes the conversion.

    The file is identified by name, size and mtime (hashing 100 MB on every job would cost more
    than the check saves); a new download or an edited file gets a new key. The transformers
    version is in the key too: the dequantized weights and the tokenizer are its reading of the file.
    """
    stat = gguf_file.stat()
    identity = {
        "v": CONVERSION_VERSION,
        "name": gguf_file.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "transformers": transformers.__version__,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{gguf_file.stem}-{digest}"


def converted_gguf_dir(gguf_file: Path, cache_dir: Path) -> Path:
    """The transformers dir of `gguf_file` under `cache_dir`, converting it on first use."""
    if not gguf_file.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_file} does not exist; check backbone.pretrained")
    target = cache_dir / gguf_cache_key(gguf_file)
    if target.is_dir():
        return target
    start = time.perf_counter()
    try:
        # Converted in a temp dir and renamed into place: a crash leaves no half-written target.
        with atomic_dir(target) as tmp:
            convert_gguf(gguf_file, tmp)
    except OSError:
        # atomic_dir refuses an existing target: a concurrent job (a parallel multirun) converted
        # the same file first. Its rename was atomic, so its dir is complete; anything else re-raises.
        if not target.is_dir():
            raise
        log.info("GGUF %s was converted by a concurrent job into %s", gguf_file.name, target)
        return target
    log.info("Converted GGUF %s into %s in %.1f s (once)", gguf_file.name, target, time.perf_counter() - start)
    return target


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize `gguf_file` to fp32 and save weights, config and tokenizer into `out_dir`."""
    require_gguf_reader()
    source, name = str(gguf_file.parent), gguf_file.name
    # The causal LM, not the bare model: the converted dir is the whole checkpoint (its LM head tied to
    # the embedding), so AutoModel and AutoModelForSequenceClassification both load it as from the hub.
    # dequantize=True asks for plain fp32 Linear weights and detaches transformers' GGUF quantizer:
    # left attached (the default), save_pretrained refuses the model ("not serializable") and, where
    # the `kernels` package is installed, the weights would stay packed in their 4-bit blocks.
    model = transformers.AutoModelForCausalLM.from_pretrained(
        source, gguf_file=name, dtype=torch.float32, quantization_config=transformers.GgufConfig(dequantize=True)
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=name)
    tokenizer.save_pretrained(str(out_dir))
    write_json(
        out_dir / PROVENANCE_FILE,
        {
            "gguf_file": str(gguf_file),
            "size": gguf_file.stat().st_size,
            "mtime_ns": gguf_file.stat().st_mtime_ns,
            "transformers": transformers.__version__,
            "conversion_version": CONVERSION_VERSION,
        },
    )


def require_gguf_reader() -> None:
    """transformers reads GGUF through the `gguf` package, an optional dependency of it."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "converting a GGUF checkpoint needs the package gguf (transformers parses the file with it): "
            "pip install gguf"
        )
