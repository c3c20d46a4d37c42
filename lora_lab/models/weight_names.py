"""What a checkpoint holds (its modules, its size) and what a target-module name selects, without torch.

A checkpoint's safetensors header (8 bytes of length, then JSON: tensor name -> dtype, shape) names
every weight, so config validation can check `regime.target_modules` against the backbone in
milliseconds instead of after torch, transformers and the weights load (8 s for MiniLM here).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# 2-D weights that are not Linear layers: token/position embeddings, norms with 2-D scales.
NOT_LINEAR = ("embed", "wte", "wpe", "norm", "shared")


def safetensors_names(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from a .safetensors file's header."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def linear_module_names(pretrained: str | None) -> list[str] | None:
    """Names of the modules holding a 2-D `.weight` (the Linear layers) in a local checkpoint dir's
    safetensors files; None when there is none to read (a hub id, a random or GGUF model)."""
    if pretrained is None or not Path(pretrained).is_dir():
        return None
    files = sorted(Path(pretrained).glob("*.safetensors"))
    if not files:
        return None
    names = []
    for file in files:
        for name, shape in safetensors_names(file).items():
            module = name.removesuffix(".weight")
            if name.endswith(".weight") and len(shape) == 2 and not any(k in module.lower() for k in NOT_LINEAR):
                names.append(module)
    return names


def selects(module: str, target: str) -> bool:
    """PEFT's rule for a target name in a list: the module's full name, or its last dotted part(s)."""
    return module == target or module.endswith("." + target)


def short_names(modules: list[str]) -> list[str]:
    """The distinct last parts of module names (`encoder.layer.0.attention.self.query` -> `query`)."""
    return sorted({m.rsplit(".", 1)[-1] for m in modules})


def checkpoint_bytes(pretrained: str | None) -> int | None:
    """Bytes of a local checkpoint dir's weight files (safetensors, bin, gguf); None when unknown."""
    if pretrained is None or not Path(pretrained).exists():
        return None
    path = Path(pretrained)
    files = [path] if path.is_file() else [p for ext in ("*.safetensors", "*.bin", "*.gguf") for p in path.glob(ext)]
    return sum(p.stat().st_size for p in files) or None
