"""QLoRA: what is quantized and how, what trains, what stays bit-identical, and what a job leaves behind.

test_regimes.py runs qlora through the checks every regime passes (trains what it claims,
adapter round trip, merged logits); this file checks what is specific to a quantized base.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

import lora_lab.job.outputs
import lora_lab.train
from lora_lab.artifacts import read_json
from lora_lab.eval import evaluate
from lora_lab.job.outputs import parameter_counts
from lora_lab.models.classifier import load_classifier
from lora_lab.regimes.qlora import QLoRA
from tests.helpers import TINY, compose_train, logits, train_steps

bnb = pytest.importorskip("bitsandbytes", reason="lora_lab installs bitsandbytes on Linux only")
LABELS = {0: "a", 1: "b", 2: "c"}
# (backbone, pooling): an encoder with our pooled head outside the transformer, a decoder with HF's
# stock `score` head inside it.
SETUPS = [("tiny_bert", "mean"), ("tiny_phi", "cls")]
# bitsandbytes' CPU kernel wants rows of whole 64-weight blocks (kbit.py): the tiny backbones' 32-wide
# layers become 64 / 128 wide.
WIDE = ["backbone.random_init.hidden_size=64", "backbone.random_init.intermediate_size=128"]
BNB_LINEARS = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)


def _before_apply(tiny_cfg, backbone: str, pooling: str, *overrides: str):
    """(fp32 classifier, regime, backbone) before regime.apply(): these tests take quantization step by step
    (the whole job, as train.py builds it, is the `job` fixture below)."""
    cfg = tiny_cfg("regime=qlora", f"backbone={backbone}", f"backbone.pooling={pooling}", "rank=4", *WIDE, *overrides)
    bb = instantiate(cfg.backbone)
    classifier = bb.build_classifier(LABELS, seed=0)
    regime = instantiate(cfg.regime)
    return classifier, regime, bb


def _quantized(classifier) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in classifier.named_modules() if isinstance(m, BNB_LINEARS)}


def _quantized_state(classifier) -> dict[str, torch.Tensor]:
    """Every byte of the quantized base: packed weights, biases and quantization statistics."""
    return {f"{n}.{k}": v.clone() for n, m in _quantized(classifier).items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("bits", [4, 8])
def test_params_total_counts_the_weights_a_quantized_layer_stands_for(tiny_cfg, bits: int):
    classifier, regime, _ = _before_apply(tiny_cfg, "tiny_bert", "mean", f"regime.bits={bits}")
    before = parameter_counts(classifier)["params/total"]
    regime.quantize(classifier)
    assert parameter_counts(classifier)["params/total"] == before  # 4-bit: not half, though packed two per byte


@pytest.mark.parametrize("backbone,pooling", SETUPS)
def test_4bit_base_holds_packed_nf4_blocks_close_to_the_fp32_weights_and_the_head_stays_fp32(
    tiny_cfg, backbone: str, pooling: str
):
    classifier, regime, _ = _before_apply(tiny_cfg, backbone, pooling)
    linears = classifier.transformer.named_modules()
    fp32 = {n: m.weight.detach().clone() for n, m in linears if type(m) is torch.nn.Linear}
    head = {n for n, m in classifier.head().named_modules() if isinstance(m, torch.nn.Linear)}
    replaced = regime.quantize(classifier)

    assert set(replaced) == {n for n in fp32 if n.split(".")[0] not in classifier.head()}, "every linear but the head"
    for name in replaced:
        module = classifier.transformer.get_submodule(name)
        assert type(module) is bnb.nn.Linear4bit and not module.weight.requires_grad
        w, state = module.weight, module.weight.quant_state
        assert w.dtype == torch.uint8 and w.numel() == fp32[name].numel() // 2, "two 4-bit codes per byte"
        assert (state.quant_type, state.blocksize, state.nested, state.dtype) == ("nf4", 64, True, torch.float32)
        assert state.absmax.dtype == torch.uint8, "double quantization: block scales stored in 8 bits"
        # NF4 rounds each weight to one of 16 levels x its block's absmax: close to, never equal to, fp32.
        # The widest gap between NF4 levels is 1 - 0.696 = 0.304: an error of at most 0.152 x the block's
        # absmax, plus the 8-bit rounding of the absmax itself (double quantization, ~1%).
        blocks = fp32[name].reshape(-1, 64)
        error = (bnb.functional.dequantize_4bit(w.data, state).reshape(-1, 64) - blocks).abs()
        assert error.max() > 0 and (error / blocks.abs().amax(1, keepdim=True)).max() <= 0.17
    assert classifier.transformer.is_loaded_in_4bit  # what PEFT reads to wrap bitsandbytes layers
    for name in head:
        linear = classifier.head().get_submodule(name)
        assert type(linear) is torch.nn.Linear and linear.weight.dtype == torch.float32


def test_4bit_refuses_rows_the_cpu_kernel_would_dequantize_wrongly_but_8bit_takes_them(tiny_cfg):
    cfg = tiny_cfg("regime=qlora")  # tiny_bert as configured: 32-wide linears
    for bits in (4, 8):
        classifier = instantiate(cfg.backbone).build_classifier(LABELS, seed=0)
        regime = instantiate(cfg.regime, bits=bits)
        if bits == 4:
            with pytest.raises(ValueError, match="in_features=32.*multiple of its blocksize \\(64\\).*regime.bits=8"):
                regime.quantize(classifier)
        else:
            assert regime.quantize(classifier)


@pytest.mark.parametrize(
    "backbone,pooling,bits,base_dtype", [(*s, 4, torch.uint8) for s in SETUPS] + [(*SETUPS[0], 8, torch.int8)]
)
def test_lora_and_head_train_while_the_quantized_base_stays_bit_identical(
    tiny_cfg, backbone: str, pooling: str, bits: int, base_dtype: torch.dtype
):
    classifier, regime, _ = _before_apply(tiny_cfg, backbone, pooling, f"regime.bits={bits}")
    regime.apply(classifier)
    base_types = {type(m.get_base_layer()) for m in classifier.modules() if hasattr(m, "lora_A")}
    assert base_types == {bnb.nn.Linear4bit if bits == 4 else bnb.nn.Linear8bitLt}, "LoRA sits on quantized layers"
    assert all(m.weight.dtype == base_dtype for m in _quantized(classifier).values())
    base = _quantized_state(classifier)
    before = {n: p.detach().clone() for n, p in classifier.named_parameters() if p.requires_grad}

    logits(classifier)  # a validation pass between training steps, as between epochs
    train_steps(classifier, steps=2)

    changed = {n for n, p in classifier.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert any(".lora_A." in n for n in changed) and any(".lora_B." in n for n in changed)
    assert any(classifier.is_head_parameter(n) for n in changed), "the head trains"
    after = _quantized_state(classifier)
    assert after.keys() == base.keys() and all(torch.equal(after[k], base[k]) for k in base), "the base never moves"


@pytest.mark.parametrize("backbone,pooling", SETUPS)
def test_8bit_merges_into_a_plain_fp32_model_up_to_llm_int8_activation_rounding(tiny_cfg, backbone, pooling):
    classifier, regime, _ = _before_apply(tiny_cfg, backbone, pooling, "regime.bits=8")
    regime.apply(classifier)
    train_steps(classifier, steps=2)
    quantized = logits(classifier)
    regime.merge(classifier)
    assert not _quantized(classifier) and not any("lora_" in n for n, _ in classifier.named_parameters())
    assert all(p.dtype == torch.float32 for p in classifier.parameters())
    # The fp32 fold dequant(W_int8) + scale * B @ A is exact; the int8 model's eval forward also rounds
    # its activations to int8 (LLM.int8), which the merged model does not: measured 2e-4 and 2e-3 here.
    torch.testing.assert_close(logits(classifier), quantized, atol=1e-2, rtol=0)


def test_cpu_bf16_repacking_is_off_so_validation_leaves_the_training_layout_alone(tiny_cfg, monkeypatch):
    # Linear4bit reads has_avx512bf16() at construction: pretend this CPU has AVX-512 BF16, where an
    # eval-mode forward would repack every weight for the inference kernel.
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)
    classifier, regime, _ = _before_apply(tiny_cfg, "tiny_bert", "mean")
    regime.apply(classifier)
    base = _quantized_state(classifier)
    logits(classifier)
    states = [m.weight.quant_state for m in _quantized(classifier).values()]
    assert not any(getattr(s, "packing_format_for_cpu", False) for s in states)
    after = _quantized_state(classifier)
    assert all(torch.equal(after[k], base[k]) for k in base)


@pytest.mark.parametrize("bits", [4, 8])
def test_a_checkpoint_restores_the_quantization_statistics_too(tiny_cfg, bits: int):
    """Lightning restores the best epoch with a strict load_state_dict before testing."""
    classifier, regime, _ = _before_apply(tiny_cfg, "tiny_bert", "mean", f"regime.bits={bits}")
    regime.apply(classifier)
    train_steps(classifier, steps=1)  # 8-bit: the first forward moves the row scales off the weight
    checkpoint = {k: v.clone() for k, v in classifier.state_dict().items()}
    expected = logits(classifier)
    for module in _quantized(classifier).values():  # wreck the live statistics
        if bits == 4:
            module.weight.quant_state.absmax.zero_()
        else:
            module.state.SCB.mul_(2)
    assert not torch.allclose(logits(classifier), expected)
    classifier.load_state_dict(checkpoint, strict=True)
    torch.testing.assert_close(logits(classifier), expected, rtol=0, atol=0)


def test_gradient_checkpointing_trains_the_adapter(tiny_cfg):
    classifier, regime, _ = _before_apply(tiny_cfg, "tiny_bert", "mean", "regime.gradient_checkpointing=true")
    regime.apply(classifier)
    assert classifier.transformer.base_model.model.is_gradient_checkpointing
    first = next(p for n, p in classifier.named_parameters() if "layer.0." in n and ".lora_B." in n)
    before = first.detach().clone()
    train_steps(classifier, steps=1)
    assert not torch.equal(first, before), "gradients reach the first layer's LoRA through the recomputed blocks"


@pytest.mark.parametrize(
    "override,message",
    [
        ("regime.bits=3", "regime.bits=3"),
        ("regime.quant_type=int4", "nf4"),
        ("regime.compute_dtype=float64", "compute_dtype"),
    ],
)
def test_bad_quantization_settings_fail_naming_the_key(tiny_cfg, override: str, message: str):
    with pytest.raises(Exception, match=message):  # Hydra wraps the ValueError, keeping its message
        instantiate(tiny_cfg("regime=qlora", override).regime)


def test_a_device_bitsandbytes_cannot_quantize_on_is_a_clear_error(tiny_cfg, monkeypatch):
    def unsupported(*args: object, **kwargs: object) -> None:  # what torch.library raises for a missing kernel
        raise NotImplementedError("Could not run 'bitsandbytes::quantize_4bit' with arguments from the 'CPU' backend")

    monkeypatch.setattr(bnb.functional, "quantize_4bit", unsupported)
    classifier, regime, _ = _before_apply(tiny_cfg, "tiny_bert", "mean")
    with pytest.raises(RuntimeError, match="cannot quantize on cpu.*CUDA GPU.*pip install"):
        regime.apply(classifier)


# --- one real job: Lightning fit (validation between epochs, best-epoch restore), test, artifacts ---


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 2-epoch qlora job on tiny_bert; spies record the model right after apply() and before merge()."""
    run_dir = tmp_path_factory.mktemp("qlora") / "job"
    tiny = [o for o in TINY if not o.startswith(("dataset.", "data.batch_size", "trainer.max_epochs"))]
    cfg = compose_train(
        run_dir,
        [
            *tiny,
            *WIDE,
            "regime=qlora",
            "dataset.n_per_class=20",
            "data.batch_size=32",
            "trainer.max_epochs=2",
            "regime.learning_rate=5e-3",
        ],
    )
    (run_dir / ".hydra").mkdir(parents=True)  # what Hydra saves before a job (eval reads it)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")
    seen: dict = {}
    apply, write = QLoRA.apply, lora_lab.job.outputs.write_job_outputs

    def spy_apply(self, classifier) -> None:
        apply(self, classifier)
        seen.update(
            classifier=classifier,
            base=_quantized_state(classifier),
            lora={n: p.detach().clone() for n, p in classifier.named_parameters() if "lora_" in n},
        )

    def spy_write(run_dir, classifier, *args, **kwargs):
        seen.update(
            trained_base=_quantized_state(classifier),
            logits=logits(classifier),
            trained_lora={n: p.detach().clone() for n, p in classifier.named_parameters() if "lora_" in n},
        )
        return write(run_dir, classifier, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(QLoRA, "apply", spy_apply)
        mp.setattr(lora_lab.job.outputs, "write_job_outputs", spy_write)  # train.py imports it when a job runs
        metrics = lora_lab.train.fit_and_test(cfg, run_dir)
    return run_dir, metrics, seen


def test_the_job_trains_lora_on_a_base_that_stays_bit_identical_through_fit_validation_and_restore(job):
    _, metrics, seen = job
    assert metrics["epochs"] == 2
    base, trained = seen["base"], seen["trained_base"]
    assert base and trained.keys() == base.keys() and all(torch.equal(trained[k], base[k]) for k in base)
    lora = seen["lora"]
    assert all(torch.count_nonzero(lora[n]) == 0 for n in lora if ".lora_B." in n), "LoRA starts as a no-op"
    # Every LoRA on the path to the head learned; mean pooling never reads BERT's pooler, so its LoRA
    # gets no gradient and stays the no-op it started as.
    trained_b = {n: torch.count_nonzero(p) for n, p in seen["trained_lora"].items() if ".lora_B." in n}
    assert all((count == 0) == (".pooler." in n) for n, count in trained_b.items()), trained_b


def test_the_job_leaves_sane_metrics_and_an_adapter_that_reproduces_the_test_accuracy(job):
    run_dir, metrics, _ = job
    saved = read_json(run_dir / "metrics.json")
    assert saved["test/acc"] == metrics["test/acc"] and 0 <= saved["test/acc"] <= 1
    assert 0 <= saved["test/f1_macro"] <= 1 and saved["time/train_s"] > 0 and saved["memory/peak_rss_mb"] > 0
    assert 0 < saved["params/trainable"] < saved["params/total"]
    # adapter/: LoRA A/B + head only, a few percent of the fp32 merged model.
    adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)
    assert 0 < saved["artifact/adapter_bytes"] < 0.2 * saved["artifact/merged_bytes"]
    again = evaluate(run_dir, run_dir.parent / "eval_adapter", load="adapter")
    assert again["test/acc"] == saved["test/acc"]
    assert again["test/f1_macro"] == pytest.approx(saved["test/f1_macro"], abs=1e-6)


def test_merged_is_a_plain_fp32_model_computing_what_the_quantized_model_computed(job):
    run_dir, _, seen = job
    tensors = load_file(str(run_dir / "merged" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert not [k for k in tensors if any(s in k for s in ("absmax", "quant_map", "quant_state", "SCB", "lora_"))]
    merged = load_classifier(run_dir / "merged")
    assert not any(isinstance(m, BNB_LINEARS) for m in merged.modules())
    # dequant(W_q) + scale * B @ A in fp32 is the quantized model's own function: no second rounding.
    torch.testing.assert_close(logits(merged), seen["logits"], atol=1e-5, rtol=1e-5)
