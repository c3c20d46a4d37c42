"""lora_lab's LoRA inference forward (models/mixed_lora.py), one adapter or mixed, against PEFT's own."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from transformers import BertConfig, BertModel

from lora_lab.models.mixed_lora import fuse_lora_forward, peft_forward

# Ranks differ (zero-padded in the stack) and "narrow" skips the FFN (its rows take the zero slot there).
ADAPTERS = {
    "r2": LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value", "dense"], init_lora_weights=False),
    "r4": LoraConfig(r=4, lora_alpha=3, target_modules=["query", "value", "dense"], init_lora_weights=False),
    "narrow": LoraConfig(r=3, lora_alpha=6, target_modules=["query", "value"], init_lora_weights=False),
}


def _model(adapters: dict[str, LoraConfig] = ADAPTERS) -> PeftModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
    (first, config_first), *rest = adapters.items()
    model = get_peft_model(BertModel(config), config_first, adapter_name=first)
    for name, lora in rest:
        model.add_adapter(name, lora)
    return model.eval()


def _batch(rows: int = 6) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(1, 50, (rows, 7))
    mask = torch.ones_like(ids)
    mask[::2, 5:] = 0  # padded rows beside full ones
    return {"input_ids": ids, "attention_mask": mask}


def _alone(model: PeftModel, batch: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """PEFT's own forward through one active adapter (no adapter_names=)."""
    model.set_adapter(name)
    return model(**batch).last_hidden_state


@torch.inference_mode()
def test_a_mixed_batch_gives_each_row_its_own_adapters_output_as_peft_computes_it():
    model = _model()
    batch = _batch()
    names = ["r2", "r4", "narrow", "r4", "r2", "narrow"]
    peft_mixed = model(**batch, adapter_names=names).last_hidden_state  # PEFT's loop over adapters
    # query, value and three `dense` per layer (attention output, intermediate, output), and the pooler's
    assert fuse_lora_forward(model) == 2 * 5 + 1
    gathered = model(**batch, adapter_names=names).last_hidden_state
    torch.testing.assert_close(gathered, peft_mixed, atol=1e-5, rtol=1e-5)
    for i, name in enumerate(names):
        torch.testing.assert_close(gathered[i], _alone(model, batch, name)[i], atol=1e-5, rtol=1e-5)
    # The adapters really differ, so a row routed to the wrong one would fail above.
    assert (_alone(model, batch, "r2") - _alone(model, batch, "r4")).abs().max() > 1e-2


@torch.inference_mode()
def test_a_rows_output_does_not_depend_on_its_neighbours_adapters():
    model = _model()
    fuse_lora_forward(model)
    batch = _batch()
    mixed = model(**batch, adapter_names=["r2", "r4", "narrow"] * 2).last_hidden_state
    uniform = model(**batch, adapter_names=["r4"] * 6).last_hidden_state
    assert torch.equal(mixed[[1, 4]], uniform[[1, 4]])


@torch.inference_mode()
def test_adapters_loaded_or_deleted_after_patching_are_picked_up(tmp_path):
    model = _model({"r2": ADAPTERS["r2"]})
    fuse_lora_forward(model)
    batch = _batch()
    model(**batch, adapter_names=["r2"] * 6)  # the stacks now hold r2 only
    model.add_adapter("r4", ADAPTERS["r4"])
    fuse_lora_forward(model)  # idempotent on r2's layers
    names = ["r4", "r2"] * 3
    gathered = model(**batch, adapter_names=names).last_hidden_state
    for i, name in enumerate(names):
        torch.testing.assert_close(gathered[i], _alone(model, batch, name)[i], atol=1e-5, rtol=1e-5)
    model.delete_adapter("r4")
    torch.testing.assert_close(
        model(**batch, adapter_names=["r2"] * 6).last_hidden_state, _alone(model, batch, "r2"), atol=1e-5, rtol=1e-5
    )


@torch.inference_mode()
def test_dora_is_refused_mixed_as_peft_refuses_it_so_the_server_groups_it():
    """PEFT checks adapter_names= before any layer's mixed forward runs; the engine catches the
    ValueError and serves a DoRA adapter grouped (Engine._mixes_exactly)."""
    adapters = {"dora": LoraConfig(r=2, target_modules=["query", "value"], use_dora=True, init_lora_weights=False)}
    model = _model({**adapters, "r2": ADAPTERS["r2"]})
    fuse_lora_forward(model)
    with pytest.raises(ValueError, match="DoRA"):
        model(**_batch(), adapter_names=["dora", "r2"] * 3)


def test_training_mode_is_refused_mixed():
    """Dropout draws a mask per call in training: mixed batches are for inference only."""
    model = _model({"r2": LoraConfig(r=2, target_modules=["query"], lora_dropout=0.5, init_lora_weights=False)})
    fuse_lora_forward(model)
    model.train()
    with pytest.raises(ValueError, match="training"):  # PEFT itself refuses adapter_names= in training
        model(**_batch(), adapter_names=["r2"] * 6)


@torch.inference_mode()
def test_an_adapter_with_a_lora_bias_takes_peft_s_loop_and_still_mixes():
    biased = LoraConfig(r=2, target_modules=["query", "value"], lora_bias=True, init_lora_weights=False)
    model = _model({"biased": biased, "r2": ADAPTERS["r2"]})
    for module in model.modules():  # PEFT starts lora_B's bias at zero: make it count
        if hasattr(module, "lora_B") and "biased" in module.lora_B:
            torch.nn.init.normal_(module.lora_B["biased"].bias)
    fuse_lora_forward(model)
    batch, names = _batch(), ["biased", "r2"] * 3
    gathered = model(**batch, adapter_names=names).last_hidden_state
    for i, name in enumerate(names):
        torch.testing.assert_close(gathered[i], _alone(model, batch, name)[i], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_one_active_adapter_runs_our_fused_forward_and_gives_peft_s_output(monkeypatch: pytest.MonkeyPatch):
    model = _model()
    batch = _batch()
    peft_calls = []
    peft_own = LoraLinear.forward
    monkeypatch.setattr(LoraLinear, "forward", lambda self, *a, **k: peft_calls.append(1) or peft_own(self, *a, **k))
    fuse_lora_forward(model)
    for name in ADAPTERS:
        model.set_adapter(name)
        ours = model(**batch).last_hidden_state
        assert not peft_calls  # no layer fell back
        with peft_forward():
            theirs = model(**batch).last_hidden_state
        assert peft_calls  # ... and inside peft_forward() every layer did
        peft_calls.clear()
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    with model.disable_adapter():  # PEFT's switch still turns every adapter off
        plain = model(**batch).last_hidden_state
    assert (plain - ours).abs().max() > 1e-2
    model.train()  # training (dropout) takes PEFT's forward
    model(**batch)
    assert peft_calls
