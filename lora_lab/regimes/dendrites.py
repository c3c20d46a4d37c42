"""Artificial dendrites (PerforatedAI, open version) on top of a base regime: lora or full.

The base regime shapes the classifier first (LoRA wraps its targets, full unfreezes everything).
Then every target module that the loss reaches is wrapped by PerforatedAI (perforated.py says
what a dendrite computes). The fit starts without dendrites; after each validation,
DendriteSwitching hands the score to PerforatedAI, which by its switch policy may reload its best
model and add a dendrite set to every wrapped module; the optimizer is then rebuilt.

Artifacts:
- adapter/: `dendrites.safetensors`, what the job adds to the base backbone (the base regime's
  trainable weights: LoRA + head, or all weights under full; and every PerforatedAI tensor:
  dendrites, their weights into the neurons, shape buffers) + `dendrites.json` (base regime,
  wrapped modules, dendrite rank). load_adapter() rebuilds it: base regime, perforate, grow the
  saved dendrite sets, load.
- merged/: a dendrite adds sigmoid(D x), scaled per output unit, to a Linear's output; no
  transformers architecture expresses that, so a model whose dendrites change its output has no
  merged form and merge() raises. If none do (none added, or the tested best epoch predates
  them, so their weights into the neurons are still 0), unwrapping is exact and merge() is the
  base regime's merge.

Not used: PerforatedAI's graphs and per-epoch model copies, its learning-rate search (Lightning
keeps the schedule), Perforated Backpropagation (the paid `perforatedbp` package).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import weakref
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.regimes.base import Regime
from lora_lab.regimes.dendrite_switching import DendriteSwitching
from lora_lab.regimes.perforated import (
    DendriteFactory,
    SwitchPolicy,
    contributing,
    dendrite_sets,
    grow_like,
    library,
    owned_keys,
    perforate,
    unwrap,
)

if TYPE_CHECKING:
    import lightning.pytorch as pl

log = logging.getLogger(__name__)

BASES = ("lora", "full")
STATE_FILE = "dendrites.safetensors"
SPEC_FILE = "dendrites.json"


class DendriteMergeError(NotImplementedError):
    """The model's dendrites change its output: there is no plain transformers form of it."""


class Dendrites(Regime):
    def __init__(
        self,
        name: str,
        learning_rate: float,
        base: Regime,
        target_modules: list[str],
        dendrite_rank: int | None = None,
        switch_mode: str = "fixed",
        n_epochs_to_switch: int = 10,
        fixed_switch_num: int = 1,
        max_dendrites: int = 5,
        max_dendrite_tries: int = 2,
        monitor: str = "val/acc",
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        if not isinstance(base, Regime) or base.name not in BASES:
            raise ConfigError(
                f"regime.base={getattr(base, 'name', base)!r}: dendrites grow on {BASES} "
                "(choose with regime@regime.base=lora|full)"
            )
        if isinstance(target_modules, str):
            raise ConfigError(f"regime.target_modules={target_modules!r}: list the module names, e.g. [query, value]")
        if dendrite_rank is not None and dendrite_rank < 1:
            raise ConfigError(
                f"regime.dendrite_rank={dendrite_rank}: a positive rank, or null for full-width dendrites"
            )
        self.base, self.target_modules, self.monitor = base, list(target_modules), monitor
        self.factory = DendriteFactory(dendrite_rank)
        self.policy = SwitchPolicy(switch_mode, n_epochs_to_switch, fixed_switch_num, max_dendrites, max_dendrite_tries)
        self.modules: dict[str, int] = {}  # wrapped module -> its output's ndim
        self.work_dir: Path | None = None
        self.pai_tracker: Any = None

    def apply(self, classifier: Classifier) -> None:
        library()  # a missing perforatedai fails here, before the model is touched
        self.base.apply(classifier)
        matched = matching_modules(classifier, self.target_modules)
        if not matched:
            raise ConfigError(
                f"regime.target_modules={self.target_modules}: no module of the classifier has such a name"
            )
        self.modules = reached_modules(classifier, matched)
        if not self.modules:
            raise ConfigError(
                f"regime=dendrites: the loss reaches none of {self.target_modules} under base={self.base.name} "
                "(PerforatedAI sizes dendrites from the gradient at a module's output)"
            )
        if skipped := sorted(set(matched) - set(self.modules)):
            log.info("dendrites: no dendrites on %s (the loss does not reach them)", skipped)
        for name in self.modules:
            self.factory.linear_of(classifier.get_submodule(name))  # refuse a non-Linear now, not mid-fit
        self._perforate(classifier)

    def _perforate(self, classifier: Classifier) -> None:
        # PerforatedAI's own files (its best model, reloaded at each restructure) go to scratch,
        # deleted with this regime.
        self.work_dir = Path(tempfile.mkdtemp(prefix="lora_lab_dendrites_"))
        weakref.finalize(self, shutil.rmtree, self.work_dir, ignore_errors=True)
        self.pai_tracker = perforate(classifier, self.modules, self.factory, self.policy, self.work_dir)

    def callbacks(self) -> list[pl.Callback]:
        if self.pai_tracker is None:
            raise RuntimeError("regime=dendrites: callbacks() needs apply() first (the model must be perforated)")
        return [DendriteSwitching(self.work_dir, self.pai_tracker, self.monitor)]

    def on_fit_start(self, classifier: Classifier, total_steps: int) -> None:
        self.base.on_fit_start(classifier, total_steps)

    def after_optimizer_step(self, classifier: Classifier, global_step: int) -> None:
        self.base.after_optimizer_step(classifier, global_step)

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(adapter_state(classifier), str(out_dir / STATE_FILE))
        spec = {
            "base": self.base.name,
            "dendrite_rank": self.factory.rank,
            "modules": self.modules,
            "dendrite_sets": dendrite_sets(classifier),
        }
        (out_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2))

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        spec = json.loads((adapter_dir / SPEC_FILE).read_text())
        if (spec["base"], spec["dendrite_rank"]) != (self.base.name, self.factory.rank):
            raise ValueError(
                f"{adapter_dir} holds base={spec['base']} dendrite_rank={spec['dendrite_rank']}, this regime is "
                f"base={self.base.name} dendrite_rank={self.factory.rank}: load it with its job's config"
            )
        library()
        self.base.apply(classifier)
        self.modules = {name: int(ndim) for name, ndim in spec["modules"].items()}
        self._perforate(classifier)
        state = load_file(str(adapter_dir / STATE_FILE))
        grow_like(classifier, state, self.work_dir)
        expected = set(adapter_state(classifier))
        if set(state) != expected:
            raise ValueError(
                f"{adapter_dir}/{STATE_FILE} does not fit the rebuilt model: "
                f"missing {sorted(expected - set(state))[:5]}, unexpected {sorted(set(state) - expected)[:5]}"
            )
        classifier.load_state_dict(state, strict=False)

    def can_merge(self, classifier: Classifier) -> bool:
        """Whether merge() can fold this model into a plain transformers model."""
        return not contributing(classifier)

    def merge(self, classifier: Classifier) -> None:
        if live := contributing(classifier):
            raise DendriteMergeError(
                f"regime=dendrites: dendrites on {len(live)} modules (e.g. {live[0]}) add sigmoid branches that no "
                "transformers architecture expresses, so this model has no merged form; deploy adapter/ "
                "(python -m lora_lab.eval run_dir=<job> load=adapter rebuilds it)"
            )
        unwrap(classifier)  # exact: no dendrite changes the output
        self.base.merge(classifier)


def adapter_state(classifier: Classifier) -> dict[str, torch.Tensor]:
    """What the job adds to the base backbone: trainable weights and PerforatedAI's tensors."""
    keep = {n for n, p in classifier.named_parameters() if p.requires_grad} | owned_keys(classifier)
    return {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items() if k in keep}


def matching_modules(classifier: Classifier, targets: list[str]) -> list[str]:
    """Modules named like a target: the full name or its last components (PEFT's rule)."""
    return [n for n, _ in classifier.named_modules() if any(n == t or n.endswith("." + t) for t in targets)]


def reached_modules(classifier: Classifier, names: list[str]) -> dict[str, int]:
    """Of `names`, the modules whose output the logits depend on, with that output's ndim.

    One forward on a 4-token input: a module off the loss's path (BERT's pooler under mean
    pooling) gets no gradient, and PerforatedAI could never size its dendrites.
    """
    outputs: dict[str, Any] = {}
    hooks = [classifier.get_submodule(n).register_forward_hook(partial(_keep_output, outputs, n)) for n in names]
    was_training = classifier.training
    classifier.eval()
    try:
        ids = torch.arange(1, 5).unsqueeze(0)  # ids 1..4 exist in every vocabulary
        logits = classifier(ids, torch.ones_like(ids))
    finally:
        for hook in hooks:
            hook.remove()
        classifier.train(was_training)
    if not logits.requires_grad:
        raise ConfigError("regime=dendrites: nothing in the classifier trains under the base regime")
    candidates = {n: o for n, o in outputs.items() if isinstance(o, torch.Tensor) and o.requires_grad}
    grads = torch.autograd.grad(logits.sum(), list(candidates.values()), allow_unused=True) if candidates else ()
    return {n: o.ndim for (n, o), g in zip(candidates.items(), grads) if g is not None}


def _keep_output(outputs: dict[str, Any], name: str, module: torch.nn.Module, args: object, output: Any) -> None:
    outputs[name] = output
