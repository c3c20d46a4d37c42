"""Fine-tuning regimes: one module per method, looked up by name at run time.

Every conf/regime/<name>.yaml targets `lora_lab.regimes.build` with `name: <name>`; build() imports
that regime's module alone, so a job loads peft, bitsandbytes or perforatedai only when its
regime uses them. A saved job names its regime, and `regime_class(name)` finds the code that
reloads its adapter. Adding a regime = one module here + one line in REGIMES + one YAML file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lora_lab.errors import ConfigError

if TYPE_CHECKING:
    from lora_lab.regimes.base import Regime

# name -> "module:class". Several names may share a class when they differ only in settings
# (dora is LoRA with use_dora: true; conf/regime/dora.yaml inherits lora.yaml).
REGIMES: dict[str, str] = {
    "head": "lora_lab.regimes.head:HeadOnly",
    "full": "lora_lab.regimes.full:FullFineTune",
    "lora": "lora_lab.regimes.lora:LoRA",
    "dora": "lora_lab.regimes.lora:LoRA",
    "qlora": "lora_lab.regimes.qlora:QLoRA",
    "adalora": "lora_lab.regimes.adalora:AdaLoRA",
    "ia3": "lora_lab.regimes.ia3:IA3",
    "loha": "lora_lab.regimes.loha:LoHa",
    "lokr": "lora_lab.regimes.loha:LoKr",
    "vera": "lora_lab.regimes.vera:VeRA",
    "prompt": "lora_lab.regimes.prompt:PromptTuning",
    "zeroshot": "lora_lab.regimes.zeroshot:ZeroShot",
    "fewshot": "lora_lab.regimes.fewshot:FewShot",
    "contrastive": "lora_lab.regimes.contrastive:Contrastive",
    "dendrites": "lora_lab.regimes.dendrites:Dendrites",
    "tfidf": "lora_lab.regimes.tfidf:Tfidf",
}


def regime_class(name: str) -> type[Regime]:
    """The class behind a regime name (imports its module)."""
    if name not in REGIMES:
        raise ConfigError(f"regime.name={name!r}: not a lora_lab regime; choose one of {', '.join(REGIMES)}")
    module, _, cls = REGIMES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(name: str, **settings: Any) -> Regime:
    """conf/regime/*.yaml's `_target_`: the regime called `name`, with the YAML's other keys."""
    return regime_class(name)(name=name, **settings)
