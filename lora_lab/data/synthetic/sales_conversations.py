"""Deterministic synthetic sales call transcripts with CRM context, for converted / not_converted prediction.

A row is one call between a sales rep and a prospect ("Rep: ..." / "Prospect: ..." lines, 6-20
turns) plus the CRM fields a rep fills in: company_size, industry, contact_role, urgency,
budget_authority, previous_interactions and lead_source. `render` turns a row into the text a
classifier sees, with or without a "[field: value | ...]" header of those fields.

How the outcome arises (the difficulty is by design, so it can be tuned and explained):

1. The context fields are drawn with realistic dependencies (founders exist only at small
   companies and usually hold the budget, referrals come with more previous interactions); each
   value adds a weight to a context score.
2. A latent "call quality", centred on a fraction of that score, decides how the call goes: five
   dialogue cues (objection, pricing, competitor, stakeholders, next_steps) each take a state, and
   the states that help a deal are likelier on good calls.
3. propensity = intercept + 1.2 * context score + 0.8 * cue score + three interactions + Gaussian
   noise, and the row converted when propensity > 0 (~37% of rows). The interactions need both
   sources at once: price pushback hurts small companies more, a blocker matters less when the
   contact holds the budget, and a booked next step weighs more when urgency is high.

So neither source suffices, and a bag of words is well short of the ceiling. On the default 2000
rows (5-fold CV, seeds 0-2, majority class ~63%): TF-IDF + logistic regression ~78-80% with the
context header, ~74-76% on the transcript alone; logistic regression on the true context fields
alone ~78%, on the true cue states alone ~76%; the noise term caps any model at ~87%. Why text is hard:

* the context header is only in the text when `include_context`, and the CRM fields leak into
  the dialogue only now and then (a referral opener, a deadline, "it's my budget");
* every cue state is voiced with words that other states use too: "next week" closes both a
  booked pilot and a brush-off, "concern" is in "my main concern" and "no real concerns",
  competitor names appear in switching and in losing deals; some replies are non-committal in
  either state ("Okay, noted."), and politeness ("That looks great.") is independent of the outcome;
* transcripts vary in length and carry neutral small talk, discovery and demo turns.

`noise` is transcription noise only (fillers, stutters, [inaudible], [crosstalk], lost casing and
punctuation): content, order, context and labels depend on (n, seed) alone, so noise levels are
directly comparable. Everything is driven by seeded `random.Random` instances; no global random
state, no set iteration, no `hash()`.

The code is in three parts: this module (rows, rendering, transcription noise, the Source),
conversation_outcome.py (steps 1-3: context, cues, outcome) and conversation_dialogue.py (the
turns); the words are in sales_conversations.yaml.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from lora_lab.data.sources import Source
from lora_lab.data.splits import Split
from lora_lab.data.synthetic import conversation_dialogue, conversation_outcome
from lora_lab.data.synthetic.checks import check_bool, check_count, check_noise, check_seed
from lora_lab.data.synthetic.conversation_dialogue import PHRASES, Turn, dialogue
from lora_lab.data.synthetic.conversation_outcome import CONTEXT_FIELDS, draw_deal
from lora_lab.data.synthetic.tables import table_path

CONVERTED, NOT_CONVERTED = "converted", "not_converted"
LABELS: tuple[str, ...] = (CONVERTED, NOT_CONVERTED)
# Names in the rendered header; "role" reads better there than the column name.
_HEADER_KEYS = {field: ("role" if field == "contact_role" else field) for field in CONTEXT_FIELDS}

# Transcription noise. Each knob is a probability at noise=1 and scales linearly with `noise`.
_P_FILLER = 0.5  # per turn: a filler (PHRASES.fillers) at a random position
_P_STUTTER = 0.05  # per word: said twice ("the the")
_P_INAUDIBLE = 0.02  # per word: replaced by [inaudible] (cue words can get lost, as in real ASR)
_P_CROSSTALK = 0.1  # per turn: a trailing [crosstalk]
_P_PUNCT = 0.5  # per punctuation mark: dropped
_P_LOWERCASE = 0.5  # per transcript: no casing (speaker tags keep theirs)
_PUNCT_RE = re.compile(r"[.,;:!?]")
_SPEAKERS = {"R": "Rep", "P": "Prospect"}


def generate_sales_conversations(n: int = 2000, seed: int = 0, noise: float = 0.2) -> list[dict]:
    """Return n rows, deterministic for (n, seed, noise).

    Each row has the CONTEXT_FIELDS, "transcript" ("Rep: ..." / "Prospect: ..." lines), "label"
    (converted / not_converted) and "cues": the state of each dialogue cue, the ground truth of what
    the transcript expresses (for analysis; a classifier should see `render(row, ...)` only).
    """
    _check_arguments(n, seed, noise)
    rng = random.Random(seed)
    rows = []
    for _ in range(int(n)):
        context, cues, propensity = draw_deal(rng)
        turns = dialogue(context, cues, rng)
        # One seed per row is drawn from the content stream whatever `noise` is, so content and
        # labels do not depend on `noise`: only the noise pass does.
        noise_rng = random.Random(rng.getrandbits(64))
        transcript = _transcribe(turns, float(noise), noise_rng)
        label = CONVERTED if propensity > 0 else NOT_CONVERTED
        rows.append({**context, "transcript": transcript, "label": label, "cues": cues})
    return rows


def render(row: dict, include_context: bool) -> str:
    """The text a classifier sees: an optional "[field: value | ...]" CRM header line, then the transcript."""
    check_bool("include_context", include_context)
    if not include_context:
        return row["transcript"]
    header = " | ".join(f"{_HEADER_KEYS[field]}: {row[field]}" for field in CONTEXT_FIELDS)
    return f"[{header}]\n{row['transcript']}"


class SalesConversations(Source):
    """Synthetic sales call transcripts with CRM context, converted / not_converted (generated, no files).

    Every split keeps the context fields as `extra` columns, whether or not they are rendered into
    the text, so results can be broken down by segment (urgency, lead source, ...).
    Transcripts run ~250-380 word-piece tokens (p50 ~285 with the header): train with
    backbone.max_length=512, or their endings, where next steps are agreed, are truncated.
    """

    def __init__(
        self, n: int = 2000, noise: float = 0.2, include_context: bool = True, generator_seed: int = 0, **split_args
    ):
        super().__init__(**split_args)
        # Checked here rather than in read(): a bad override fails as the config is instantiated.
        _check_arguments(
            n, generator_seed, noise, n_key="dataset.n", seed_key="dataset.generator_seed", noise_key="dataset.noise"
        )
        check_bool("dataset.include_context", include_context)
        self.n, self.noise, self.include_context, self.generator_seed = n, noise, include_context, generator_seed

    def files(self) -> list[Path]:
        # The phrase tables and the generator's other modules: an edit of any is a new dataset.
        modules = (conversation_outcome, conversation_dialogue)
        return [table_path("sales_conversations"), *(Path(module.__file__) for module in modules)]

    def read(self) -> dict[str, Split]:
        rows = generate_sales_conversations(self.n, seed=self.generator_seed, noise=self.noise)
        texts = [render(row, self.include_context) for row in rows]
        extra = {field: [row[field] for row in rows] for field in CONTEXT_FIELDS}
        return {"train": Split(texts, [row["label"] for row in rows], extra)}


def _check_arguments(
    n: object, seed: object, noise: object, *, n_key: str = "n", seed_key: str = "seed", noise_key: str = "noise"
) -> None:
    """The generator's arguments; a message names the key the caller knows (a Source passes config keys)."""
    check_count(n_key, n, counting="how many conversations", example=2000)
    check_seed(seed_key, seed)
    check_noise(noise_key, noise, clean="clean transcripts", example=0.2)


def _transcribe(turns: list[Turn], noise: float, rng: random.Random) -> str:
    """Join the turns as "Rep: ..." / "Prospect: ..." lines, with ASR-like noise on the utterances."""
    lowercase = rng.random() < _P_LOWERCASE * noise
    lines = []
    for speaker, text in turns:
        if noise > 0:
            text = _noisy_utterance(text, noise, rng)
            text = text.lower() if lowercase else text
        lines.append(f"{_SPEAKERS[speaker]}: {text}")
    return "\n".join(lines)


def _noisy_utterance(text: str, noise: float, rng: random.Random) -> str:
    """Drop punctuation marks, lose or repeat words, add a filler or a [crosstalk] marker."""
    text = _PUNCT_RE.sub(lambda m: "" if rng.random() < _P_PUNCT * noise else m.group(0), text)
    words = []
    for word in text.split():
        r = rng.random()
        if r < _P_INAUDIBLE * noise:
            words.append("[inaudible]")
        elif r < (_P_INAUDIBLE + _P_STUTTER) * noise:
            words += [_PUNCT_RE.sub("", word) or word, word]  # "the the.": punctuation only at the end
        else:
            words.append(word)
    if rng.random() < _P_FILLER * noise:
        words.insert(rng.randrange(len(words)), rng.choice(PHRASES.fillers))  # before a word, never trailing
    if rng.random() < _P_CROSSTALK * noise:
        words.append("[crosstalk]")
    return " ".join(words) or text
