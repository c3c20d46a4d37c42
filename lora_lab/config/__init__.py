"""The config side of a job, light on purpose (omegaconf and pathlib; no torch): entry points import it
before any heavy library, so `--help` and a config error answer in about a second.

resolvers.py   the OmegaConf resolvers conf/ uses, registered on import of this package
validation.py  validate(cfg): every key in range, files there, the regime's targets in the backbone
hardware.py    CPU bf16, DDP process launches, CUDA: asked without torch where possible
"""

from pathlib import Path

from lora_lab.config.resolvers import register_resolvers

# conf/ beside the package, as an absolute path: Hydra resolves a relative config_path against the
# calling module, which fails for the console scripts (lora-lab-train) run from another directory.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

register_resolvers()
