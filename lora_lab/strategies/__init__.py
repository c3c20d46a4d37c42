"""Fine-tuning regimes. One module per method; each registers itself with `Strategy.registry`.

Adding a regime = one module here (a Strategy subclass) + one conf/regime/<name>.yaml.
"""

from lora_lab.strategies import adalora, dora, full, head, ia3, loha, lokr, lora, vera  # noqa: F401  (import registers them)
from lora_lab.strategies.base import Strategy

__all__ = ["Strategy"]
