"""lora_lab: parameter-efficient fine-tuning experiments for text classifiers."""

import logging
import warnings

__version__ = "0.1.0"

# Known-harmless third-party warnings, silenced once for every entry point:
# pre-tokenized in-memory batches need no loader workers, and Lightning 2.6 uses a torch
# pytree API that torch 2.13 deprecates.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
# peft asks transformers' is_gradient_checkpointing, deprecated in transformers 5: printed on every adapter load.
warnings.filterwarnings("ignore", r".*is_gradient_checkpointing.*is deprecated", FutureWarning)

# bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" when it is
# imported, and peft imports it for every regime. Only a quantizing regime runs that kernel, so the
# message is held here and shown when one does (lora_lab.regimes.kbit calls release()).
_BNB_CPU_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"


class _HeldMessages(logging.Filter):
    """Holds back a logger's records that contain `text`, to be shown later (or never)."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.held = text, []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text in record.getMessage():
            self.held.append(record)
            return False
        return True

    def release(self) -> None:
        for record in self.held:
            logging.getLogger(record.name).callHandlers(record)
        self.held.clear()


bitsandbytes_kernel_message = _HeldMessages("Failed to load CPU gemm_4bit_forward")
logging.getLogger(_BNB_CPU_KERNEL_LOGGER).addFilter(bitsandbytes_kernel_message)
