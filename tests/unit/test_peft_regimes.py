"""The PEFT-method regimes beyond LoRA: their configs, what they train, and AdaLoRA's rank allocation.

test_regimes.py covers what every regime must do (train what it claims, save/load/merge
faithfully); this file checks what is specific to each method.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from peft import AdaLoraConfig, IA3Config, LoHaConfig, LoKrConfig, LoraConfig, VeraConfig

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import load_classifier
from tests.helpers import batch, logits

LABELS = {0: "a", 1: "b", 2: "c"}
# (backbone, pooling): an encoder with our pooled head, a decoder with HF's stock head (SEQ_CLS).
SETUPS = [("tiny_bert", "mean"), ("tiny_phi", "cls")]
CONFIG_TYPES = {
    "dora": LoraConfig,
    "adalora": AdaLoraConfig,
    "ia3": IA3Config,
    "loha": LoHaConfig,
    "lokr": LoKrConfig,
    "vera": VeraConfig,
}
# What the method's own trainable parameters are called (everything else that trains is head).
METHOD_PARAMS = {
    "lora": ("lora_A", "lora_B"),
    "dora": ("lora_A", "lora_B", "lora_magnitude_vector"),
    "adalora": ("lora_A", "lora_B", "lora_E"),
    "ia3": ("ia3_l",),
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    "lokr": ("lokr_w1", "lokr_w2"),
    "vera": ("vera_lambda_b", "vera_lambda_d"),
}


def _build(tiny_job, name: str, backbone: str, pooling: str, *overrides: str):
    job = tiny_job(f"regime={name}", f"backbone={backbone}", f"backbone.pooling={pooling}", "rank=4", *overrides)
    return job.classifier, job.regime, job.backbone, job.cfg


def _trainable(classifier) -> dict[str, int]:
    return {n: p.numel() for n, p in classifier.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("backbone,pooling", SETUPS)
@pytest.mark.parametrize("name", sorted(CONFIG_TYPES))
def test_peft_config_follows_the_yaml_and_only_method_params_and_head_train(
    tiny_job, name: str, backbone: str, pooling: str
):
    classifier, regime, _, cfg = _build(tiny_job, name, backbone, pooling)
    config = classifier.transformer.peft_config["default"]
    assert type(config) is CONFIG_TYPES[name]
    assert config.task_type == classifier.peft_task_type
    # Regimes as data: every YAML key past the step sizes is the PEFT config field of that name.
    settings = {
        k: v
        for k, v in OmegaConf.to_container(cfg.regime, resolve=True).items()
        if k not in ("_target_", "name", "learning_rate", "head_learning_rate")
    }
    # AdaLoRA's phases may be shares of the fit: set in steps at fit start (see test_adalora_schedule_*).
    scheduled = {"tinit", "tfinal", "total_step"} if name == "adalora" else set()
    derived = {"lora_alpha": 2 * config.init_r if name == "adalora" else 2 * 4, "alpha": 4, "init_r": 6}
    for key, value in settings.items():
        if key in scheduled:
            continue
        if value is None and key in derived:  # null -> lora_lab's default: LoRA alpha = 2r, LyCORIS alpha = r
            value = derived[key]
        if key in ("target_modules", "feedforward_modules") and value is None:
            continue  # PEFT's placement for the architecture, checked below
        got = getattr(config, key)
        assert (set(got) if isinstance(value, list) else got) == (set(value) if isinstance(value, list) else value), key
    if name == "dora":
        assert config.use_dora and config.r == 4 and config.lora_alpha == 8
    elif name == "adalora":
        assert (config.target_r, config.init_r, config.lora_alpha) == (4, 6, 12)
    elif name in ("loha", "lokr"):
        assert config.r == 4 and config.alpha == 4
    elif name == "ia3":
        # null in the YAML: PEFT's (IA)^3 placement for the model type (keys, values, FFN down projection).
        expected = {
            "tiny_bert": ({"key", "value", "output.dense"}, {"output.dense"}),
            "tiny_phi": ({"q_proj", "v_proj", "fc2"}, {"fc2"}),
        }[backbone]
        assert (set(config.target_modules), set(config.feedforward_modules)) == expected
    if pooling == "cls":  # the stock head trains and is saved through PEFT (which adds its SEQ_CLS defaults)
        assert set(classifier.head_names) <= set(config.modules_to_save)
    else:
        assert not config.modules_to_save

    # Only the method's own parameters and the head train.
    trainable = _trainable(classifier)
    body = {n for n in trainable if not classifier.is_head_parameter(n)}
    assert body, "the method trains nothing in the backbone"
    assert all(any(f".{kind}." in n for kind in METHOD_PARAMS[name]) for n in body), sorted(body)[:5]
    # every kind of method parameter is there (e.g. DoRA's magnitudes, AdaLoRA's singular values)
    assert all(any(f".{kind}." in n for n in body) for kind in METHOD_PARAMS[name])
    assert any(classifier.is_head_parameter(n) for n in trainable)


@pytest.mark.parametrize("backbone,pooling", SETUPS)
def test_trainable_parameter_counts_are_ordered_as_the_methods_promise(tiny_job, backbone: str, pooling: str):
    n = {
        r: sum(_trainable(_build(tiny_job, r, backbone, pooling)[0]).values())
        for r in ["head", "full", "lora", *CONFIG_TYPES]
    }
    assert n["head"] < n["ia3"] < n["lora"] < n["full"]
    assert n["vera"] < n["lora"] and n["lokr"] < n["lora"]  # shared projections; Kronecker factors
    assert n["lora"] < n["dora"] < n["loha"]  # + one magnitude per column; two low-rank pairs
    assert n["lora"] < n["adalora"]  # starts at init_r = 1.5 * rank, prunes to rank on average


def test_vera_shares_one_frozen_projection_pair_across_modules_of_different_shapes(tiny_job):
    classifier, *_ = _build(tiny_job, "vera", "tiny_bert", "mean")
    tuner = classifier.transformer.base_model
    shapes = {(m.out_features, m.in_features) for m in tuner.model.modules() if hasattr(m, "vera_lambda_b")}
    assert len(shapes) > 1, "BERT's dense modules have several shapes"
    assert not any("vera_A" in n or "vera_B" in n for n in _trainable(classifier))
    assert tuner.vera_A["default"].shape == (4, max(i for _, i in shapes))


def test_ia3_wants_both_module_lists_or_neither(tiny_cfg):
    with pytest.raises(Exception, match="feedforward_modules"):
        instantiate(tiny_cfg("regime=ia3", "regime.target_modules=[key,value]").regime)


# --- AdaLoRA: the rank allocation must actually run ---


def _adalora_params(classifier, kind: str) -> dict[str, torch.Tensor]:
    return {n: p for n, p in classifier.named_parameters() if f".{kind}." in n}


def _fit(classifier, regime, steps: int) -> list[int]:
    """A manual loop calling the regime's hooks; returns the live triplets (lambda != 0) after each hook.

    PEFT's order, which the LightningModule keeps: forward, backward, step, after_optimizer_step, zero_grad.
    """
    classifier.train()
    opt = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=1e-2)
    regime.on_fit_start(classifier, steps)
    live = []

    def hook(step: int) -> None:
        regime.after_optimizer_step(classifier, step)
        live.append(sum(int((e != 0).sum()) for e in _adalora_params(classifier, "lora_E").values()))

    for step in range(steps):
        b = batch(step)
        loss = torch.nn.functional.cross_entropy(classifier(b["input_ids"], b["attention_mask"]), b["labels"])
        loss.backward()
        opt.step()
        hook(step)
        opt.zero_grad()
    return live


@pytest.mark.parametrize("backbone,pooling", SETUPS)
def test_adalora_reallocates_ranks_and_its_adapter_and_merge_reproduce_the_model(
    tiny_job, tmp_path: Path, backbone, pooling
):
    classifier, regime, bb, _ = _build(tiny_job, "adalora", backbone, pooling, "regime.tinit=2", "regime.tfinal=3")
    config = classifier.transformer.peft_config["default"]
    modules = len(_adalora_params(classifier, "lora_E"))
    steps = 12
    live = _fit(classifier, regime, steps)

    assert config.total_step == steps and (config.tinit, config.tfinal) == (2, 3)
    # (under mean pooling BERT's pooler gets no gradient: its singular values stay at their initial 0)
    assert live[0] == live[1] > modules * 4, "the warm-up (tinit) keeps the full budget"
    assert all(a >= b for a, b in zip(live[1 : steps - 3], live[2 : steps - 3])), f"the budget shrinks: {live}"
    assert live[-1] <= modules * 4 < modules * 6, f"pruned to target_r per module on average: {live}"
    pattern = config.rank_pattern
    assert pattern is not None and sum(map(sum, pattern.values())) == live[-1]
    kept = {n.split(".lora_E")[0]: sum(k) for n, k in pattern.items()}
    assert len(set(kept.values())) > 1, f"ranks differ between modules (allocated, not uniform): {kept}"
    for n, e in classifier.transformer.base_model.model.named_parameters():
        if ".lora_E." in n:
            assert torch.all(e[~torch.tensor(pattern[n])] == 0), "after tfinal the pruned triplets stay masked"
    trained = logits(classifier)

    regime.save_adapter(classifier, tmp_path / "adapter")
    fresh = bb.build_classifier(classifier.id2label, seed=42)
    regime.load_adapter(fresh, tmp_path / "adapter")
    loaded = _adalora_params(fresh, "lora_E")
    assert sum(e.numel() for e in loaded.values()) == live[-1], "the adapter ships only the surviving triplets"
    torch.testing.assert_close(logits(fresh), trained)

    regime.merge(classifier)
    classifier.save_merged(tmp_path / "merged", bb.tokenizer)
    torch.testing.assert_close(logits(load_classifier(tmp_path / "merged")), trained, atol=1e-4, rtol=1e-4)


def test_adalora_prunes_ranks_in_a_real_lightning_job(tiny_cfg):
    """Through train(): the Trainer's hook order must let the allocation stick in the saved adapter."""
    from safetensors.torch import load_file

    from lora_lab.train import train

    # One epoch: the tested (best) epoch is the one after the final allocation. With more epochs an
    # earlier best epoch, restored from its checkpoint, would rightly carry its larger budget.
    cfg = tiny_cfg("regime=adalora", "rank=4", "dataset.n_per_class=60", "trainer.max_epochs=1")
    train(cfg)
    adapter = load_file(str(Path(cfg.paths.output_dir) / "adapter" / "adapter_model.safetensors"))
    kept = sum(t.numel() for n, t in adapter.items() if "lora_E" in n)
    modules = sum(1 for n in adapter if "lora_E" in n)
    assert modules and kept <= modules * 4 < modules * 6, (
        f"{kept} triplets kept in {modules} modules (init 6, target 4)"
    )


def test_adalora_schedule_takes_shares_of_the_fit_and_survives_tiny_fits(tiny_cfg):
    regime = instantiate(tiny_cfg("regime=adalora").regime)
    assert regime.schedule(100) == (100, 10, 20)  # YAML: tinit 0.1, tfinal 0.2
    for total in (1, 2, 3, 5):
        steps, tinit, tfinal = regime.schedule(total)
        assert steps == total and 0 <= tinit < total - tfinal  # what AdaLoraConfig demands
        assert tfinal >= 1 or total == 1  # the allocation gets frozen inside the fit
    with pytest.raises(Exception, match="init_r=4 must exceed target_r=4"):
        instantiate(tiny_cfg("regime=adalora", "regime.init_r=4", "rank=4").regime)


def test_a_yaml_key_that_is_no_field_of_the_peft_config_is_refused_naming_the_fields(tiny_cfg):
    # instantiate() wraps the error; the CLI finds the ConfigError behind it (lora_lab.cli.errors).
    with pytest.raises(Exception, match=r"regime.lora_alpah is not a field of peft.LoraConfig .*lora_alpha") as caught:
        instantiate(tiny_cfg("regime=lora", "+regime.lora_alpah=8").regime)
    assert isinstance(caught.value.__cause__, ConfigError) and "peft_type" not in str(caught.value)
    with pytest.raises(Exception, match="regime.task_type"):  # the classifier sets it
        instantiate(tiny_cfg("regime=lora", "+regime.task_type=CAUSAL_LM").regime)
