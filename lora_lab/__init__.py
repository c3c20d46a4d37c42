"""lora_lab: parameter-efficient fine-tuning experiments for text classifiers."""

import warnings

__version__ = "0.1.0"

# Known-harmless third-party warnings, silenced once for every entry point:
# pre-tokenized in-memory batches need no loader workers, and Lightning 2.6 uses a torch
# pytree API that torch 2.13 deprecates.
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
