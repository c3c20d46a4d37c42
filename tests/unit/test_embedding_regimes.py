"""The embedding regimes (zeroshot, fewshot, contrastive) on tiny_bert: each fits what it claims,
leaves frozen what it claims, and a saved job re-evaluates to its own test accuracy."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from lora_lab.data.batching import PadCollator
from lora_lab.errors import ConfigError
from lora_lab.eval import evaluate
from lora_lab.models.embedding import embed_split, embed_texts, head_linear
from lora_lab.models.fitted_heads import logistic_regression_head, prototype_head
from lora_lab.regimes.contrastive_objectives import CosinePairs, PairSampler, SupervisedInfoNCE, Triplets
from lora_lab.train import fit_and_test
from tests.helpers import save_hydra_config

HIDDEN, LABELS = 32, 5  # tiny_bert's hidden size; the sales notes' intents
SHOTS = ("shots_per_class=4",)  # 20 training rows: seconds, even for the contrastive loop


def _prepared(tiny_job, *overrides: str):
    """(classifier, regime, datamodule) after apply(); prepare() is the test's to call."""
    job = tiny_job(*overrides)
    return job.classifier, job.regime, job.datamodule


def _snapshot(classifier) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in classifier.named_parameters()}


def _changed(classifier, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in classifier.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize(
    "overrides,trainable,adapter_files",
    [
        (("regime=zeroshot",), "none", {"head.safetensors"}),
        (("regime=fewshot", *SHOTS), "head", {"head.safetensors"}),
        (("regime=contrastive", "regime.num_iterations=2", *SHOTS), "all", None),
        (
            ("regime=contrastive", "regime.body=lora", "regime.loss=infonce", "regime.num_iterations=2", *SHOTS),
            "lora+head",
            {"adapter_model.safetensors", "head.safetensors"},
        ),
    ],
    ids=["zeroshot", "fewshot", "contrastive-full", "contrastive-lora"],
)
def test_a_job_fits_without_gradient_epochs_and_reevaluates_to_its_test_accuracy(
    tiny_cfg, overrides, trainable, adapter_files
):
    cfg = tiny_cfg(*overrides)
    run_dir = Path(cfg.paths.output_dir)
    save_hydra_config(cfg, run_dir)
    metrics = fit_and_test(cfg, run_dir)
    # contrastive keeps its best body on validation (regimes/val_checks.py); the others fit once.
    selection = "best_val_check" if "regime=contrastive" in overrides else "no_gradient_epochs"
    assert metrics["model_selection"] == selection and metrics["epochs"] == 0
    assert metrics["time/train_s"] == metrics["time/prepare_s"] > 0
    head = HIDDEN * LABELS + LABELS
    expected = {"none": 0, "head": head, "all": metrics["params/total"]}.get(trainable)
    if expected is None:  # LoRA r=8 on query/key/value/dense of 2 layers: A (r x in) + B (out x r) each
        assert head < metrics["params/trainable"] < 0.2 * metrics["params/total"]
    else:
        assert metrics["params/trainable"] == expected
    if any(o.startswith("shots_per_class") for o in overrides):
        assert metrics["data/train_rows"] == 4 * LABELS
    if adapter_files is None:
        assert not (run_dir / "adapter").exists()
    else:
        assert adapter_files <= {p.name for p in (run_dir / "adapter").iterdir()}
    for load in ("merged", "adapter") if adapter_files else ("merged",):
        again = evaluate(run_dir, run_dir.parent / f"eval_{load}", load=load)
        assert again["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6), load
        assert again["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"], abs=1e-6), load


def test_zeroshot_writes_only_the_head_and_predicts_by_cosine_to_the_label_descriptions(tiny_job):
    classifier, regime, dm = _prepared(tiny_job, "regime=zeroshot", "regime.template='note: {}'", "regime.scale=10")
    assert not any(p.requires_grad for p in classifier.parameters())
    before = _snapshot(classifier)
    regime.prepare(classifier, dm)
    assert _changed(classifier, before) == {"classifier_head.1.weight", "classifier_head.1.bias"}  # the head alone
    assert torch.equal(head_linear(classifier).bias, torch.zeros(LABELS))
    prompts = regime.prompts(dm)
    assert prompts[dm.labels.index("Urgent Need")].startswith("note: The customer needs products urgently")

    labels = embed_texts(classifier, dm, prompts)
    x, _ = embed_split(classifier, dm, "validation")
    batch = PadCollator(dm.tokenizer.pad_token_id)([(ids, 0) for ids in dm.tokenized["validation"].input_ids])
    with torch.no_grad():
        logits = classifier.eval()(batch["input_ids"], batch["attention_mask"])
    cosine = F.normalize(x, dim=1) @ F.normalize(labels, dim=1).T
    # logits = scale * cos * |x| / r, r = the label embeddings' mean norm; the argmax is the cosine's.
    expected = 10 * cosine * x.norm(dim=1, keepdim=True) / labels.norm(dim=1).mean()
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(logits.argmax(1), cosine.argmax(1))


def test_zeroshot_refuses_descriptions_of_labels_the_data_lacks(tiny_job):
    classifier, regime, dm = _prepared(tiny_job, "regime=zeroshot", "+dataset.label_descriptions.Refund=money back")
    with pytest.raises(ValueError, match=r"describes \['Refund'\], which are not labels"):
        regime.prepare(classifier, dm)


@pytest.mark.parametrize("regime", ["zeroshot", "fewshot", "contrastive"])
def test_a_stock_head_backbone_is_refused_in_apply_naming_the_fix(tiny_cfg, regime: str):
    cfg = tiny_cfg(f"regime={regime}", "backbone.pooling=cls")
    classifier = instantiate(cfg.backbone).build_classifier({0: "a", 1: "b"})
    with pytest.raises(ConfigError, match=f"regime={regime} .* set backbone.pooling=mean"):
        instantiate(cfg.regime).apply(classifier)


def test_prototype_head_is_the_nearest_centroid_in_closed_form():
    # Class 0 at (1, 0) and (3, 0): centroid (2, 0); class 1 at (0, 2) and (0, 4): centroid (0, 3).
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    y = torch.tensor([0, 0, 1, 1])
    weight, bias = prototype_head(x, y, 2, "euclidean", scale=1.0)
    torch.testing.assert_close(weight, torch.tensor([[4.0, 0.0], [0.0, 6.0]]))  # 2p
    torch.testing.assert_close(bias, torch.tensor([-4.0, -9.0]))  # -|p|^2
    queries = torch.randn(50, 2)
    centroids = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # logits = |q|^2 - |q - p|^2 for every query: the squared distance up to a per-query constant.
    torch.testing.assert_close(
        queries @ weight.T + bias,
        (queries**2).sum(1, keepdim=True) - torch.cdist(queries, centroids) ** 2,
        atol=1e-4,
        rtol=1e-4,
    )

    # Cosine: the unit vectors average to (1, 0) and (0, 1); the embeddings' mean norm is 10 / 4.
    weight, bias = prototype_head(x, y, 2, "cosine", scale=20.0)
    torch.testing.assert_close(weight, 20.0 * torch.eye(2) / 2.5)
    assert torch.equal(bias, torch.zeros(2))
    with pytest.raises(ValueError, match="label id\\(s\\) \\[2\\] have no training row"):
        prototype_head(x, y, 3, "euclidean", scale=1.0)


@pytest.mark.parametrize("num_labels", [2, 3])
def test_logistic_regression_head_reproduces_scikit_learns_probabilities(num_labels: int):
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % num_labels
    x = torch.randn(60, 4, generator=g) + 2.0 * F.one_hot(y, 4).float()
    weight, bias = logistic_regression_head(x, y, num_labels, C=1.0, max_iter=1000, seed=0)
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(x.double().numpy(), y.numpy())
    probs = torch.softmax(x @ weight.T + bias, dim=1)
    torch.testing.assert_close(
        probs, torch.from_numpy(reference.predict_proba(x.double().numpy())).float(), atol=1e-5, rtol=1e-4
    )
    with pytest.raises(RuntimeError, match="did not converge in max_iter=1"):
        logistic_regression_head(x, y, num_labels, C=1.0, max_iter=1, seed=0)


@pytest.mark.parametrize("num_labels, present", [(4, [0, 1, 3]), (3, [0, 2])])
def test_a_logistic_regression_head_over_labels_without_rows_never_predicts_them(num_labels: int, present: list):
    """64 rows of Banking77's 77 labels leave labels without a row: the fitted head (LP-FT's start)
    scores the present labels as scikit-learn does and gives the absent ones probability 0."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    y = torch.tensor(present).repeat(20)
    x = torch.randn(len(y), 4, generator=g) + 2.0 * F.one_hot(y, 4).float()
    weight, bias = logistic_regression_head(x, y, num_labels, C=1.0, max_iter=1000, seed=0)
    probs = torch.softmax(x @ weight.T + bias, dim=1)
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(x.double().numpy(), y.numpy())
    expected = torch.from_numpy(reference.predict_proba(x.double().numpy())).float()
    torch.testing.assert_close(probs[:, present], expected, atol=1e-5, rtol=1e-4)
    assert probs[:, [k for k in range(num_labels) if k not in present]].max() == 0.0
    with pytest.raises(ValueError, match=r"1 label\(s\) have training rows"):
        logistic_regression_head(x, torch.zeros_like(y), num_labels, C=1.0, max_iter=1000, seed=0)


@pytest.mark.parametrize("method", ["prototype", "logistic_regression"])
def test_fewshot_fits_the_head_on_the_kept_shots_and_moves_nothing_else(tiny_job, method: str):
    classifier, regime, dm = _prepared(tiny_job, "regime=fewshot", f"regime.method={method}", "shots_per_class=3")
    assert {n for n, p in classifier.named_parameters() if p.requires_grad} == {
        "classifier_head.1.weight",
        "classifier_head.1.bias",
    }
    before = _snapshot(classifier)
    regime.prepare(classifier, dm)
    assert _changed(classifier, before) == {"classifier_head.1.weight", "classifier_head.1.bias"}
    x, y = embed_split(classifier, dm, "train")
    assert len(y) == 3 * LABELS and torch.equal(torch.bincount(y), torch.full((LABELS,), 3))
    weight, bias = regime.fit_head(x, y, LABELS)
    torch.testing.assert_close(head_linear(classifier).weight, weight)
    torch.testing.assert_close(head_linear(classifier).bias, bias)


@pytest.mark.parametrize("body", ["full", "lora"])
def test_contrastive_trains_the_body_it_claims_and_fits_the_head(tiny_job, body: str):
    classifier, regime, dm = _prepared(
        tiny_job,
        "regime=contrastive",
        f"regime.body={body}",
        "regime.loss=triplet",
        "regime.num_iterations=2",
        "regime.learning_rate=1e-3",
        "regime.val_checks=0",
        *SHOTS,  # no selection: the last body, trained
    )
    trainable = {n for n, p in classifier.named_parameters() if p.requires_grad}
    head = {"classifier_head.1.weight", "classifier_head.1.bias"}
    before = _snapshot(classifier)
    regime.prepare(classifier, dm)
    changed = _changed(classifier, before)
    assert head <= changed
    if body == "full":
        assert trainable == set(before)
        assert {n for n in changed if ".encoder.layer." in n} == {n for n in before if ".encoder.layer." in n}
    else:
        assert trainable - head and all("lora_" in n for n in trainable - head)
        assert changed - head and changed - head <= trainable  # base weights never move under LoRA
        assert any("lora_B" in n for n in changed)  # B starts at zero: moving it is what changes the encoder
    assert len(regime.loss_history) == 1 and torch.isfinite(torch.tensor(regime.loss_history)).all()
    # regime.normalize (the default): the head was fitted on, and reads, unit-length embeddings.
    x, y = embed_split(classifier, dm)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(len(x)))
    weight, bias = logistic_regression_head(x, y, LABELS, regime.C, regime.max_iter, regime.seed)
    torch.testing.assert_close(head_linear(classifier).weight, weight)
    torch.testing.assert_close(head_linear(classifier).bias, bias)


def test_contrastive_without_normalize_fits_the_head_on_raw_embeddings(tiny_job):
    classifier, regime, dm = _prepared(
        tiny_job, "regime=contrastive", "regime.normalize=false", "regime.num_iterations=1", *SHOTS
    )
    regime.prepare(classifier, dm)
    x, _ = embed_split(classifier, dm)
    assert not classifier.normalize and (x.norm(dim=1) - 1).abs().max() > 0.1


def test_a_served_contrastive_adapter_reads_unit_embeddings_as_its_merged_model_does(tiny_cfg):
    from lora_lab.models.predictor import Predictor
    from lora_lab.serve.engine import Engine
    from lora_lab.serve.sources import resolve_source

    cfg = tiny_cfg(
        "regime=contrastive", "regime.body=lora", "regime.num_iterations=1", "regime.learning_rate=1e-3", *SHOTS
    )
    run_dir = Path(cfg.paths.output_dir)
    save_hydra_config(cfg, run_dir)
    fit_and_test(cfg, run_dir)
    texts = ["need 40 more boxes asap", "the invoice is wrong again", "can we move the demo to friday"]
    want = Predictor(run_dir / "merged", trace=False).logits(texts).softmax(-1)
    engine = Engine()
    served = engine.load("contrastive", resolve_source(run_dir))
    assert served.adapter_id is not None  # through the shared base and PEFT, not the merged copy
    (got,) = engine.predict([("contrastive", texts)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_pair_sampler_draws_positives_within_and_negatives_across_labels_reproducibly():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    sampler = PairSampler(labels, random.Random(0))
    for row in range(len(labels)):
        for _ in range(20):
            positive, negative = sampler.positive(row), sampler.negative(row)
            assert positive != row and labels[positive] == labels[row]
            assert labels[negative] != labels[row]
    assert CosinePairs().examples(labels, 3, random.Random(1)) == CosinePairs().examples(labels, 3, random.Random(1))
    assert (
        len(CosinePairs().examples(labels, 3, random.Random(1))) == 3 * len(labels) * 2
    )  # a positive and a negative pair
    assert len(Triplets(0.25).examples(labels, 3, random.Random(1))) == 3 * len(labels)
    with pytest.raises(ValueError, match=r"label id\(s\) \[3\] have a single training row"):
        PairSampler([*labels, 3], random.Random(0))


def test_contrastive_losses_reward_embeddings_grouped_by_label():
    # Two labels on two orthogonal directions: positives coincide, negatives are orthogonal.
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    pairs = torch.stack([torch.stack([a, a]), torch.stack([a, b]), torch.stack([b, b])])
    pair_labels = torch.tensor([[0, 0], [0, 1], [1, 1]])
    assert CosinePairs().loss(pairs, pair_labels).item() == pytest.approx(0.0)
    flipped = torch.tensor([[0, 1], [0, 0], [1, 0]])  # the same pairs with the opposite targets: (1-0)^2 each
    assert CosinePairs().loss(pairs, flipped).item() == pytest.approx(1.0)

    triplet = torch.stack([torch.stack([a, a, b])])
    assert Triplets(0.25).loss(triplet, torch.tensor([[0, 0, 1]])).item() == pytest.approx(0.0)  # gap 1 > margin
    assert Triplets(0.25).loss(triplet[:, [0, 2, 1]], torch.tensor([[0, 0, 1]])).item() == pytest.approx(
        1.25
    )  # d(a,p)=1, d(a,n)=0

    grouped = torch.stack([torch.stack([a, a]), torch.stack([b, b])])
    infonce = SupervisedInfoNCE(0.05)
    assert infonce.loss(grouped, torch.tensor([[0, 0], [1, 1]])) < infonce.loss(grouped, torch.tensor([[0, 1], [1, 0]]))


@pytest.mark.parametrize("loss", ["cosine", "triplet"])
def test_a_contrastive_batch_encodes_each_distinct_row_once_with_the_loss_and_gradients_of_every_slot(
    tiny_job, loss: str
):
    classifier, regime, dm = _prepared(
        tiny_job, "regime=contrastive", f"regime.loss={loss}", "regime.num_iterations=2", *SHOTS
    )
    data, collate = dm.tokenized["train"], PadCollator(dm.tokenizer.pad_token_id)
    batch = regime.objective.examples(data.labels, 2, random.Random(0))[:16]  # 20 rows: some recur in 16 examples
    rows = [row for example in batch for row in example]
    assert len(set(rows)) < len(rows)
    params = [p for p in classifier.transformer.parameters() if p.requires_grad]
    classifier.eval()  # no dropout: both ways compute the same function

    encoded: list[int] = []
    hook = classifier.transformer.register_forward_hook(
        lambda module, args, kwargs, out: encoded.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    got = regime._backward(classifier, batch, data, collate, params)
    hook.remove()
    assert encoded == [len(set(rows))]
    grads = [None if p.grad is None else p.grad.clone() for p in params]  # the unused pooler has none
    classifier.zero_grad(set_to_none=True)

    # Every slot through the encoder, as SetFit does; the gradients clipped the same way.
    padded = collate([(data.input_ids[row], data.labels[row]) for row in rows])
    m = regime.objective.rows_per_example
    embeddings = classifier.embed(padded["input_ids"], padded["attention_mask"]).float()
    expected = regime.objective.loss(embeddings.view(len(batch), m, -1), padded["labels"].view(len(batch), m))
    expected.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    assert got == pytest.approx(expected.item(), rel=1e-5)
    assert any(g is not None for g in grads)
    for mine, theirs in zip(grads, (p.grad for p in params)):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
