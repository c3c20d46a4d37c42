"""Deterministic synthetic B2B sales notes for a 5-intent text classification task.

A note is what a salesperson types into the CRM after a call or an email: an optional opener
("Call w/ Dana at Apex Fabrication:"), a core sentence that carries the intent, and optional
class-neutral details ("will send quote by Fri", "cc'd AM"). Then a noise pass mimics hurried
typing (lowercasing, typos, abbreviations, missing spaces and punctuation). The phrases are in
sales_notes.yaml beside this file; the shares and probabilities that shape a note are here.

The task is meant to be learnable but not trivial, so that fine-tuning regimes can be told apart
(TF-IDF + logistic regression lands near 88% on the default 400 x 5 notes at noise=0.3):

* the classes share vocabulary on purpose ("reorder" shows up in Repeat Order, Urgent Need and
  Stocking Issue; "same as last order" in Custom Spec and Urgent Need; "stock" and "spec" in
  neutral closers), and every class has cores that borrow another class's words ("Not urgent and
  nothing custom - just the same 40 boxes as PO#123"), so the cue is meaning, not one keyword;
* some cores state the intent only implicitly ("crew is standing around until the fittings show up");
* ~12% of notes are genuinely mixed: the primary intent comes first and is the label, then a cue
  of another class follows (often a whole sentence of it, about another item);
* ~10% are contrast notes ("Called about warehouse space, not the deadline") and ~35% carry a
  denial of another intent ("No rush on this one."): a bag of words sees both classes' words,
  only word order and negation tell them apart, which is what a fine-tuned encoder can learn.

Everything is driven by `random.Random` instances seeded from the arguments; no global random
state, no iteration over sets and no `hash()`, so the output is identical across processes and
`PYTHONHASHSEED` values.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from lora_lab.data.sources import Source
from lora_lab.data.splits import Split
from lora_lab.data.synthetic.checks import check_count, check_noise, check_seed
from lora_lab.data.synthetic.tables import load_tables, table_path

LABELS: tuple[str, ...] = ("Repeat Order", "Urgent Need", "Stocking Issue", "Custom Spec", "New Product Demand")
PHRASES = load_tables("sales_notes")

# Share of notes whose core is followed by a secondary cue of another class (label = primary intent).
_AMBIGUOUS_SHARE = 0.12
# Share of those whose secondary cue is a full core sentence of the other class rather than a
# short clause: these are the hardest, only the order of the sentences tells the intent.
_P_FULL_SECONDARY = 0.7
# Share of notes that are contrast notes: "Called about X, not Y" (PHRASES.topics).
_CONTRAST_SHARE = 0.10
# Share of notes that try to add a denial of another intent (PHRASES.denials).
_P_DENIAL = 0.35
# How many closers a note gets: 0..3, weighted towards one.
_CLOSER_COUNTS = (0, 0, 1, 1, 1, 2, 2, 3)
# Words per clean note; closers are added or removed to land inside this window.
_MIN_WORDS, _MAX_WORDS = 8, 60

# Noise. Each knob is a probability at noise=1 and scales linearly with `noise`, so noise=0 is
# clean text.
_P_LOWERCASE = 0.6  # whole note lowercased
_P_ABBREVIATE = 0.7  # per abbreviable phrase (PHRASES.abbreviations)
_P_TYPO = 0.10  # per word of 4+ letters: swap, drop or duplicate a letter
_P_JOIN = 0.06  # per gap between words: the space is lost ("reorderof")
_P_PUNCT = 0.5  # per punctuation mark: dropped
_P_DOUBLE_SPACE = 0.05  # per gap: an extra space
_P_TRAILING = 0.4  # per note: trailing whitespace

_PUNCT = ".,;:!?()"
# One alternation, longest phrase first, so "purchase order" wins over "order" and a single pass
# replaces each occurrence at most once.
_ABBREV_MAP = {long.lower(): short for long, short in PHRASES.abbreviations}
_ABBREV_RE = re.compile(
    r"\b(" + "|".join(re.escape(long) for long in sorted(_ABBREV_MAP, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def generate_sales_notes(n_per_class: int = 400, seed: int = 0, noise: float = 0.3) -> list[dict[str, str]]:
    """Return n_per_class * 5 rows {"text": ..., "label": ...}, shuffled, deterministic for (n_per_class, seed, noise).

    `noise` in [0, 1] scales every typing-noise probability (0 = clean text); content and order of
    the notes depend only on (n_per_class, seed), so noise levels are directly comparable.
    """
    _check_arguments(n_per_class, seed, noise)
    noise = float(noise)

    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for label in LABELS:
        for _ in range(int(n_per_class)):
            clean = _compose(label, rng)
            # One seed per note is drawn from the content stream whatever `noise` is, so the
            # content and order of the notes do not depend on `noise`: only the noise pass does.
            note_rng = random.Random(rng.getrandbits(64))
            text = _add_noise(clean, noise, note_rng) if noise > 0 else clean
            # The noise pass never deletes a word, but guard anyway: an empty text is unusable.
            rows.append({"text": text if text.strip() else clean, "label": label})
    rng.shuffle(rows)
    return rows


class SyntheticSalesNotes(Source):
    """Synthetic B2B sales notes with five intents, generated deterministically (no files)."""

    def __init__(self, n_per_class: int = 400, noise: float = 0.3, generator_seed: int = 0, **split_args):
        super().__init__(**split_args)
        # Checked here rather than in read(): a bad override fails as the config is instantiated.
        _check_arguments(
            n_per_class,
            generator_seed,
            noise,
            n_key="dataset.n_per_class",
            seed_key="dataset.generator_seed",
            noise_key="dataset.noise",
        )
        self.n_per_class, self.noise, self.generator_seed = n_per_class, noise, generator_seed

    def files(self) -> list[Path]:
        # The phrase tables: an edit of them is a new dataset (this module's own file is stamped anyway).
        return [table_path("sales_notes")]

    def read(self) -> dict[str, Split]:
        rows = generate_sales_notes(self.n_per_class, seed=self.generator_seed, noise=self.noise)
        return {"train": Split([r["text"] for r in rows], [r["label"] for r in rows])}


def _check_arguments(
    n_per_class: object,
    seed: object,
    noise: object,
    *,
    n_key: str = "n_per_class",
    seed_key: str = "seed",
    noise_key: str = "noise",
) -> None:
    """The generator's arguments; a message names the key the caller knows (a Source passes config keys)."""
    check_count(n_key, n_per_class, counting="notes per intent", example=400)
    check_seed(seed_key, seed)
    check_noise(noise_key, noise, clean="clean text", example=0.3)


def _compose(label: str, rng: random.Random) -> str:
    """One clean note of class `label`: opener + core (+ secondary cue) (+ denial) + closers."""
    slots = _slots(rng)
    opener = rng.choice(PHRASES.openers).format(**slots)
    others = [lab for lab in LABELS if lab != label]

    if rng.random() < _CONTRAST_SHARE:
        topic, other_topic = rng.choice(PHRASES.topics[label]), rng.choice(PHRASES.topics[rng.choice(others)])
        core = rng.choice(PHRASES.contrast_cores).format(topic=topic, other_topic=other_topic, product=slots["product"])
    else:
        core = rng.choice(PHRASES.cores[label]).format(**slots)

    secondary, secondary_label = "", ""
    if rng.random() < _AMBIGUOUS_SHARE:
        secondary_label = rng.choice(others)
        if rng.random() < _P_FULL_SECONDARY:
            # A whole core of the other class, about a different item of the same customer.
            other_slots = {**_slots(rng), "company": slots["company"], "contact": slots["contact"]}
            sentence = rng.choice(PHRASES.cores[secondary_label]).format(**other_slots)
        else:
            sentence = rng.choice(PHRASES.secondary[secondary_label]).format(**slots)
        secondary = rng.choice(PHRASES.secondary_leads) + sentence

    denial = ""
    if rng.random() < _P_DENIAL:
        said = (core + " " + secondary).lower()
        # A denial must not contradict the note ("Not urgent." after "line is down").
        deniable = [
            lab
            for lab in others
            if lab != secondary_label and not any(word in said for word in PHRASES.denial_conflicts[lab])
        ]
        if deniable:
            denial = rng.choice(PHRASES.denials[rng.choice(deniable)]).format(**slots)

    # Closers are sampled without repetition so a note never says the same thing twice.
    spare = list(PHRASES.closers)
    rng.shuffle(spare)
    closers = [c.format(**slots) for c in spare[: rng.choice(_CLOSER_COUNTS)]]
    spare = spare[len(closers) :]

    def n_words() -> int:
        return sum(len(s.split()) for s in (opener, core, secondary, denial, *closers))

    # Keep the clean length inside [_MIN_WORDS, _MAX_WORDS]: pad short notes with closers; trim
    # long ones by dropping closers, then the denial, then the opener (never the intent).
    while n_words() < _MIN_WORDS and spare:
        closers.append(spare.pop().format(**slots))
    while closers and n_words() > _MAX_WORDS:
        closers.pop()
    if n_words() > _MAX_WORDS:
        denial = ""
    if n_words() > _MAX_WORDS:
        opener = ""
    text = " ".join(s for s in (opener, core, secondary, denial, *closers) if s)
    return " ".join(text.split())  # normalise whitespace: clean notes have single spaces only


def _slots(rng: random.Random) -> dict[str, str]:
    """Fill every slot once; templates use the subset they need (a fixed number of draws per call)."""
    p = PHRASES
    product, unit, unit_one = rng.choice(p.products)
    product2 = rng.choice([row for row in p.products if row[0] != product])[0]
    sku = f"{rng.choice('ABCDFHKMPRSTX')}{rng.choice('ABDHKLRSTXZ')}-{rng.randint(1000, 9899)}"
    # Show the SKU next to the product name some of the time, as people paste it from the ERP.
    shown = rng.choice((product, product, product, f"{product} ({sku})", f"{sku} {product}"))
    scale = rng.choice((1, 5, 10, 25, 50, 100))
    qty_n = rng.randint(2, 40) * scale
    qty_small = max(2, qty_n // rng.choice((3, 4, 5, 10)))
    if rng.random() < 0.5:
        price = f"${rng.randint(2, 400)}.{rng.randint(0, 99):02d}/{unit_one}"
    else:
        price = f"${rng.randint(5, 95) * 100:,}"
    po = rng.choice(("PO#{}", "PO {}", "PO-{}", "po#{}")).format(rng.randint(10000, 99999))
    company = rng.choice(p.company_heads) + " " + rng.choice(p.company_trades) + rng.choice(p.company_forms)
    contact = rng.choice(p.contacts)
    return {
        "company": company,
        "contact": contact,
        "contact2": rng.choice([c for c in p.contacts if c != contact]),
        "role": rng.choice(p.roles),
        "product": shown,
        "product2": product2,
        "sku": sku,
        "qty": f"{qty_n} {unit}",
        "qty_small": f"{qty_small} {unit}",
        "price": price,
        "po": po,
        "new_product": rng.choice(p.new_products),
        "product_line": rng.choice(p.product_lines),
        "material": rng.choice(p.materials),
        "color": rng.choice(p.colors),
        "modification": rng.choice(p.modifications),
        "rating": rng.choice(p.ratings),
        "tolerance": rng.choice(p.tolerances),
        "dimension": rng.choice(p.dimensions),
        "dim_diff": rng.choice(p.dim_diffs),
        "pack": rng.choice(p.packs),
        "site": rng.choice(p.sites),
        "day": rng.choice(p.days),
        "month": rng.choice(p.months),
        "quarter": rng.choice(p.quarters),
        "cadence": rng.choice(p.cadences),
        "when_normal": rng.choice(p.when_normal),
        "when_urgent": rng.choice(p.when_urgent),
        "competitor": rng.choice(p.competitors),
        "trade_show": rng.choice(p.trade_shows),
        "market": rng.choice(p.markets),
        "colleague": rng.choice(p.colleagues),
        "machine": rng.choice(p.machines),
    }


def _add_noise(text: str, noise: float, rng: random.Random) -> str:
    """Hurried-typing noise; every knob is its probability times `noise`. Never deletes a whole word."""

    def abbreviate(match: re.Match[str]) -> str:
        original = match.group(0)
        if rng.random() >= _P_ABBREVIATE * noise:
            return original
        short = _ABBREV_MAP[original.lower()]
        # Keep a sentence-initial capital: "Please" -> "Pls", "Tomorrow" -> "Tmrw".
        return short[0].upper() + short[1:] if original[0].isupper() and short[0].islower() else short

    # Abbreviations first, while the words are still spelled right.
    words = _ABBREV_RE.sub(abbreviate, text).split()
    out_words = []
    for word in words:
        if rng.random() < _P_TYPO * noise and sum(ch.isalpha() for ch in word) >= 4:
            word = _typo(word, rng)
        # Punctuation loss, but a word made only of punctuation ("-") stays: no word vanishes.
        if any(ch in _PUNCT for ch in word):
            word = "".join(ch for ch in word if ch not in _PUNCT or rng.random() >= _P_PUNCT * noise) or word
        out_words.append(word)
    # Rebuild with lost spaces ("reorderof") and the occasional double space.
    out = out_words[0]
    for word in out_words[1:]:
        r = rng.random()
        if r < _P_JOIN * noise:
            out += word
        elif r < (_P_JOIN + _P_DOUBLE_SPACE) * noise:
            out += "  " + word
        else:
            out += " " + word
    if rng.random() < _P_LOWERCASE * noise:
        out = out.lower()
    if rng.random() < _P_TRAILING * noise:
        out += rng.choice((" ", "  ", "   "))
    return out


def _typo(word: str, rng: random.Random) -> str:
    """Swap two neighbouring characters, drop one or duplicate one, away from the word's ends."""
    i = rng.randrange(1, len(word) - 1)  # first and last character stay: the word remains readable
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]
