"""Fine-tuning regimes. One module per method; each registers itself with `Strategy.registry`.

Adding a regime = one module here (a Strategy subclass) + one conf/regime/<name>.yaml.
"""

from lora_lab.strategies import adalora, dora, full, head, ia3, loha, lokr, lora, prompt, qlora, vera  # noqa: F401  (import registers them)
from lora_lab.strategies import contrastive, fewshot, zeroshot  # noqa: F401  (embedding regimes: fitted heads, SetFit)
from lora_lab.strategies import dendrites  # noqa: F401  (PerforatedAI's artificial dendrites on lora / full)
from lora_lab.strategies.base import Strategy

__all__ = ["Strategy"]
