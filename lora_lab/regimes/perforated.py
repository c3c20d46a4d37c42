"""The PerforatedAI library (`perforatedai`, open version) behind one small interface.

PerforatedAI wraps a module in a PAINeuronModule; each "dendrite set" it adds later is a new
module fed the same input as the wrapped one, whose output goes through a sigmoid (cascading
into later sets) and is added to the wrapped module's output, scaled per output unit by
`dendrites_to_top` (initialised at zero, so a fresh set leaves the function unchanged). The open
version trains dendrites by gradient descent together with the rest; Perforated Backpropagation
is the separate paid `perforatedbp` package and is not used.

What the library assumes and how this module copes (evidence: the reconstructed source of
perforatedai 3.2.9, file: function):
- one global config (`globals_perforatedai.pc`) and one global tracker (`.pai_tracker`):
  configure() starts a fresh config for every model, so settings never leak between jobs of one
  process, and a DendriteSwitching callback refuses to drive a tracker that is not its model's;
- it reads and writes files relative to the working directory (`<save_name>/best_model.pt`,
  reloaded when it restructures; `<save_name>/<save_name>_config.json`, read back at start):
  pai_call() runs every library call inside the regime's own scratch dir;
- it stops at `pdb.set_trace()` on bad input (utils: convert_network, load_net_from_dict;
  modules: set_mode, forward) and calls `sys.exit` (even `sys.exit(0)` in filter_backward on an
  output-shape mismatch): pai_call() turns both into a PerforatedAIError;
- it keeps its tracker as a `tracker_string` uint8 buffer on the model whose length changes every
  epoch: drop_tracker_buffer() removes it after each call (the library re-adds it for its own
  saves), so Lightning checkpoints keep a fixed set of tensors.

No network: nothing in the package connects anywhere unless its dashboard is switched on
(`dashboard_events_enabled`, default off; posts to localhost:3002); the hub helpers
(`upload_to_huggingface`, `from_hf_pretrained`) are never called here. Its torchvision import
sits in `library_perforatedai` (predefined ResNet blocks), which nothing here imports.
"""

from __future__ import annotations

import copy
import os
import pdb
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from lora_lab.errors import ConfigError

# PerforatedAI's folder for its own files, inside the regime's scratch dir ("/" is refused).
SAVE_NAME = "pai"
SWITCH_MODES = ("history", "fixed", "every_epoch")


class PerforatedAIError(RuntimeError):
    """PerforatedAI stopped (debugger breakpoint or sys.exit); its printed message says why."""


def library() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(globals, utils, modules) of perforatedai, imported on first use with a clear error."""
    try:
        from perforatedai import globals_perforatedai as gpa
        from perforatedai import modules_perforatedai as pa
        from perforatedai import utils_perforatedai as upa
    except ImportError as err:
        raise ImportError(
            "regime=dendrites needs the perforatedai package: "
            ".venv/bin/pip install --no-deps -c constraints.txt perforatedai "
            "(--no-deps: its torchvision requirement would replace the CPU torch; it needs "
            f"matplotlib and pandas, which lora_lab already has). Import failed with: {err}"
        ) from err
    return gpa, upa, pa


@contextmanager
def pai_call(work_dir: Path) -> Iterator[None]:
    """Run PerforatedAI code in `work_dir`, turning its debugger stops and exits into errors."""
    previous_dir, set_trace = os.getcwd(), pdb.set_trace
    pdb.set_trace = _refuse_debugger
    os.chdir(work_dir)
    try:
        yield
    except SystemExit as exit_:
        raise PerforatedAIError(
            f"PerforatedAI called sys.exit({exit_.code!r}); the message it printed just above says why"
        ) from exit_
    finally:
        os.chdir(previous_dir)
        pdb.set_trace = set_trace


def _refuse_debugger(*args: object, **kwargs: object) -> None:
    raise PerforatedAIError(
        "PerforatedAI stopped at an interactive debugger breakpoint (pdb.set_trace), which a "
        "training job cannot answer; the message it printed just above names the problem"
    )


@dataclass(frozen=True)
class SwitchPolicy:
    """When PerforatedAI adds a dendrite set, and when it gives up (its own settings, renamed)."""

    mode: str = "fixed"  # history | fixed | every_epoch
    n_epochs_to_switch: int = 10  # history: epochs without a better val score before adding a set
    fixed_switch_num: int = 1  # fixed: add a set every this many epochs
    max_dendrites: int = 5  # stop adding after this many sets
    max_dendrite_tries: int = 2  # fresh sets tried when the last one did not beat the best score

    def __post_init__(self) -> None:
        if self.mode not in SWITCH_MODES:
            raise ConfigError(f"regime.switch_mode={self.mode!r}: choose one of {SWITCH_MODES}")
        for key in ("n_epochs_to_switch", "fixed_switch_num", "max_dendrites", "max_dendrite_tries"):
            if getattr(self, key) < 1:
                raise ConfigError(f"regime.{key}={getattr(self, key)}: must be >= 1")


def configure(policy: SwitchPolicy, module_names: list[str]) -> None:
    """A fresh global PerforatedAI config for one model: every setting we rely on, set here."""
    gpa, _, _ = library()
    gpa.pc = pc = gpa.PAIConfig()
    # Defaults that would stop or distort a job: a smoke-test mode (adds 3 sets, switches every
    # epoch), an interactive terminal UI to pick modules, a debugger stop listing every parameter
    # left unwrapped, and wrapping every Linear by class name (the head too).
    pc.set_testing_dendrite_capacity(False)
    pc.set_configuration_confirmed(True)
    pc.set_unwrapped_modules_confirmed(True)
    pc.set_module_names_to_perforate([])
    pc.set_module_ids_to_perforate(["." + name for name in module_names])
    pc.set_silent(True)
    # A full model copy per epoch ("latest", "beforeSwitch"): only best_model is ever read back.
    pc.set_test_saves(False)
    # PerforatedAI's best model must be ModelCheckpoint's best epoch (see DendriteSwitching): a
    # strictly higher val score wins, the first epoch included. initial_history_after_switches=-1
    # is what lets the first epoch count (its check is epochs_since_switch > this value, and the
    # first epoch is epoch 0); improvement thresholds 0 (defaults 0.1% relative and 1e-5 absolute).
    pc.set_maximizing_score(True)
    pc.set_improvement_threshold(0.0)
    pc.set_improvement_threshold_raw(0.0)
    pc.set_initial_history_after_switches(-1)
    pc.set_history_lookback(1)
    # Its learning-rate search needs the scheduler in its hands; Lightning keeps ours.
    pc.set_find_best_lr(False)
    modes = {"history": pc.DOING_HISTORY, "fixed": pc.DOING_FIXED_SWITCH, "every_epoch": pc.DOING_SWITCH_EVERY_TIME}
    pc.set_switch_mode(modes[policy.mode])
    pc.set_n_epochs_to_switch(policy.n_epochs_to_switch)
    pc.set_fixed_switch_num(policy.fixed_switch_num)
    pc.set_max_dendrites(policy.max_dendrites)
    pc.set_max_dendrite_tries(policy.max_dendrite_tries)


class Dendrite(nn.Sequential):
    """One dendrite: in -> out, or in -> rank -> out."""


@dataclass(frozen=True)
class DendriteFactory:
    """Builds one dendrite for a wrapped Linear (PerforatedAI then re-draws its weights ~ N(0, 0.01^2)).

    The library's default dendrite is a deep copy of the wrapped module, which for a LoRA layer
    would be a frozen random base weight plus a PEFT layer inside PEFT's tree. Here a dendrite is
    a plain trainable map of the layer's shape: full (in x out, the library's choice for Linear)
    or, with `rank`, low rank in -> rank -> out: rank * (in + out) + out weights per set, the
    same order as a LoRA adapter of that rank.
    """

    rank: int | None

    @staticmethod
    def linear_of(module: nn.Module) -> nn.Linear:
        """The Linear a (possibly PEFT-wrapped) module computes with; anything else is refused."""
        linear = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"regime=dendrites grows dendrites on Linear layers only, not on {type(linear).__name__}")
        return linear

    def __call__(self, parent: nn.Module) -> nn.Module:
        if isinstance(parent, Dendrite):
            # PerforatedAI also keeps a copy of each new candidate (its "best candidate").
            return copy.deepcopy(parent)
        linear = self.linear_of(parent)
        if self.rank is None:
            return Dendrite(nn.Linear(linear.in_features, linear.out_features))
        return Dendrite(nn.Linear(linear.in_features, self.rank, bias=False), nn.Linear(self.rank, linear.out_features))


def perforate(
    classifier: nn.Module, modules: dict[str, int], factory: DendriteFactory, policy: SwitchPolicy, work_dir: Path
) -> Any:
    """Wrap each module (name -> its output's ndim) for dendrites; return PerforatedAI's tracker."""
    gpa, upa, _ = library()
    configure(policy, list(modules))
    with pai_call(work_dir):
        net = upa.perforate_model(classifier, save_name=SAVE_NAME, making_graphs=False, maximizing_score=True)
    if net is not classifier:
        raise PerforatedAIError("PerforatedAI replaced the classifier itself instead of wrapping its modules")
    wrapped = wrapped_modules(classifier)
    if set(wrapped) != set(modules):
        raise PerforatedAIError(f"PerforatedAI wrapped {sorted(wrapped)} but was asked for {sorted(modules)}")
    for name, ndim in modules.items():
        # Units are the last axis: (batch, seq, hidden) -> [-1, -1, 0]; -1 = averaged over.
        wrapped[name].set_this_output_dimensions([-1] * (ndim - 1) + [0])
        wrapped[name].set_create_dendrite(factory)
    settle(classifier)
    return gpa.pai_tracker


def tracker() -> Any:
    """PerforatedAI's global tracker (the last perforate()'s)."""
    gpa, _, _ = library()
    return gpa.pai_tracker


def wrapped_modules(classifier: nn.Module) -> dict[str, nn.Module]:
    _, _, pa = library()
    return {name: m for name, m in classifier.named_modules() if isinstance(m, pa.PAINeuronModule)}


def settle(classifier: nn.Module) -> None:
    """Bring the model back to our invariants after any PerforatedAI call that builds modules."""
    drop_tracker_buffer(classifier)
    for m in wrapped_modules(classifier).values():
        # Scaffolding that the forward never reads, yet created trainable: the template copy of the
        # wrapped module (its LoRA weights would count as trainable twice; the library's own
        # count_params skips it too) and the candidate-to-dendrite weights, which only Perforated
        # Backpropagation (paid, not used) trains.
        m.dendrite_module.parent_module.requires_grad_(False)
        for p in m.dendrite_module.dendrites_to_candidates:
            p.requires_grad_(False)


def drop_tracker_buffer(classifier: nn.Module) -> None:
    if "tracker_string" in classifier._buffers:
        delattr(classifier, "tracker_string")


def dendrite_sets(classifier: nn.Module) -> dict[str, int]:
    """Dendrite sets grown on each wrapped module."""
    return {name: int(m.dendrite_modules_added) for name, m in wrapped_modules(classifier).items()}


def contributing(classifier: nn.Module) -> list[str]:
    """Wrapped modules whose dendrites change the output (non-zero weights into the neuron)."""
    # The forward reads only the newest dendrites_to_top entry (older ones are frozen history).
    return [
        name
        for name, m in wrapped_modules(classifier).items()
        if m.dendrite_modules_added > 0 and bool(m.dendrites_to_top[-1].detach().ne(0).any())
    ]


def unwrap(classifier: nn.Module) -> None:
    """Put each wrapped module back in its place, dropping the wrapper and its dendrites."""
    for name, m in wrapped_modules(classifier).items():
        parent, _, child = name.rpartition(".")
        setattr(classifier.get_submodule(parent), child, m.main_module)


def owned_keys(classifier: nn.Module) -> set[str]:
    """State-dict keys PerforatedAI added: its wrappers' tensors minus the wrapped modules and templates."""
    keys = set(classifier.state_dict())
    owned = set()
    for name in wrapped_modules(classifier):
        skip = (f"{name}.main_module.", f"{name}.dendrite_module.parent_module.")
        owned |= {k for k in keys if k.startswith(name + ".") and not k.startswith(skip)}
    return owned


def grow_like(classifier: nn.Module, state: dict[str, torch.Tensor], work_dir: Path) -> None:
    """Grow the wrapped modules' dendrites to the structure saved in `state` (before loading it).

    Mirrors PerforatedAI's load_net_from_dict, which needs the whole model's state: size each
    module's value trackers from the saved shape, then replay its saved mode switches.
    """
    _, upa, _ = library()
    with pai_call(work_dir):
        for name, m in wrapped_modules(classifier).items():
            shape = state.get(f"{name}.dendrite_module.dendrite_values.0.dendrite_storage_shape")
            if shape is not None:  # set on a module's first backward: absent if saved untrained
                for values in m.dendrite_module.dendrite_values:
                    values.setup_arrays(shape.tolist())
            cycles = int(state[f"{name}.dendrite_module.num_cycles"].item())
            if cycles:
                upa.simulate_cycles(m, cycles, doing_pai=True)
    settle(classifier)
