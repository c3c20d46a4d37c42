"""The synthetic datasets' rows, pinned byte for byte.

Each digest is the sha256 of `json.dumps(rows, sort_keys=True)`, computed from the generators as
they were before their phrase tables moved into YAML files (commit 3c432ac, when they were
lora_lab/data/synthetic_sales.py and sales_conversations.py). A failure here means the data
changed: every result measured on it (README, experiment comments) is then from another dataset.
If the change is intended, say so in the commit and pin the new digests.
"""

from __future__ import annotations

import pytest
import yaml

from lora_lab.data.synthetic import sales_conversations, sales_notes
from lora_lab.data.synthetic.tables import table_path
from tests.helpers import digest as rows_digest  # the parameters below are named digest

GENERATORS = {
    "sales_notes": sales_notes.generate_sales_notes,  # (n_per_class, seed, noise)
    "sales_conversations": sales_conversations.generate_sales_conversations,  # (n, seed, noise)
}


# The first row of each generator is its conf/dataset/*.yaml default; the notes of seed 1234 train
# the test BPE tokenizer (lora_lab.models.backbones.synthetic_bpe_tokenizer).
@pytest.mark.parametrize(
    ("generator", "size", "seed", "noise", "digest"),
    [
        ("sales_notes", 400, 0, 0.3, "94214770110a32ff27624235b733053d45db969a6135e706a9424b1e4e2417c6"),
        ("sales_notes", 400, 0, 0.0, "3e29e744d96d4c9da177e1fceda7b8ccf0c7c5938d6202c6415cc317b344bf4d"),
        ("sales_notes", 400, 0, 1.0, "08b6851234cc92f585abac18a3114e828cca3919abbdcd79d06debb91804621b"),
        ("sales_notes", 50, 7, 0.5, "aeb7bb3f8a939b96757990ef93f9727b94349ae2a75ca92816bfc1aef01122a6"),
        ("sales_notes", 200, 1234, 0.3, "d55f53d6602b4ad62d9f39fbc6da7ba553f1d39b8059f534d04966824eae0f65"),
        ("sales_conversations", 2000, 0, 0.2, "0a23a0efbbe8e6dce75a48e364837022d087996b79f129e1e8b1841081b4ffbb"),
        ("sales_conversations", 2000, 0, 0.0, "bf954963a07c81fa3d3bda9c30d7e1442cb4f8ba145c1774f1f553ad674a04e4"),
        ("sales_conversations", 300, 1, 1.0, "c469f083394c4c5a3d2b4b1157602a22073293dade75611e7b7a6477a20a6daf"),
        ("sales_conversations", 500, 42, 0.5, "63cf44bf32eb5e054240aa0cf74e4a67d8ce743c685a0f9d7774cb765d160e8e"),
    ],
)
def test_generated_rows_are_unchanged(generator: str, size: int, seed: int, noise: float, digest: str):
    assert rows_digest(GENERATORS[generator](size, seed=seed, noise=noise)) == digest


def test_rendered_conversations_are_unchanged_with_and_without_the_context_header():
    rows = sales_conversations.generate_sales_conversations(2000, seed=0, noise=0.2)
    texts = {flag: [sales_conversations.render(row, include_context=flag) for row in rows] for flag in (True, False)}
    assert rows_digest(texts[True]) == "58ee1a3c84de0ac605cef6006e6050bc320970da4bb47ef1ec1b41ff8252ce6f"
    assert rows_digest(texts[False]) == "59b780297f44d5b6e151375198bb6107111e1e616de4a977120b150f173f1639"


@pytest.mark.parametrize(
    ("source", "digest"),
    [
        (
            lambda: sales_notes.SyntheticSalesNotes(name="b2b_sales_notes"),
            "b8000a57ae311d9ca894bfd6554f91087ce837d28554766b34015d0501885c34",
        ),
        (
            lambda: sales_conversations.SalesConversations(name="sales_conversations"),
            "82f987b368d38f235bed97db3592ec418a912e40d00118be904210ba7f29a7c7",
        ),
        (
            lambda: sales_conversations.SalesConversations(name="sales_conversations", include_context=False),
            "3f1ed875ff53dfc872dc8a64d417398fb0c83431e34782e54b322038b32dcff0",
        ),
    ],
    ids=["b2b_sales_notes", "sales_conversations", "sales_conversations-no-context"],
)
def test_the_sources_read_unchanged_rows(source, digest: str):
    split = source().read()["train"]
    assert rows_digest({"texts": split.texts, "labels": split.labels, "extra": split.extra}) == digest


@pytest.mark.parametrize("name", ["sales_notes", "sales_conversations"])
def test_the_phrase_tables_read_the_same_with_any_yaml_loader(name: str):
    # The generators read every scalar as a string; a YAML 1.1 loader would turn a bare yes, no,
    # on, off, 9 or 10:30 into a boolean or a number. Quoting every string keeps both readings equal.
    text = table_path(name).read_text(encoding="utf-8")
    assert yaml.safe_load(text) == yaml.load(text, Loader=yaml.BaseLoader)
