"""The latent side of a synthetic sales call: CRM context, dialogue cue states and the outcome.

The model is described in sales_conversations.py (steps 1-3 of its docstring). Its weights are
code, not phrases, so they stay here with the reasons for them; sales_conversations.yaml holds
the words that voice the states.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

CONTEXT_FIELDS: tuple[str, ...] = (
    "company_size",
    "industry",
    "contact_role",
    "urgency",
    "budget_authority",
    "previous_interactions",
    "lead_source",
)
CUES: tuple[str, ...] = ("objection", "pricing", "competitor", "stakeholders", "next_steps")

# --------------------------------------------------------------------------------------------
# Outcome model. Weights are logit-like contributions to the propensity; the intercept sets the
# converted share (~37%), the noise SD sets how much no model can know (Bayes accuracy ~87%).
# --------------------------------------------------------------------------------------------

_INTERCEPT = -1.0
_OUTCOME_NOISE_SD = 1.2
# Call quality ~ N(_QUALITY_FROM_CONTEXT * context score, 1): good-fit prospects have better calls,
# so context and dialogue are correlated but neither determines the other.
_QUALITY_FROM_CONTEXT = 0.3
# Relative weight of the two sources in the propensity; they set how much the context header adds
# over the transcript alone.
_CONTEXT_WEIGHT, _DIALOGUE_WEIGHT = 1.2, 0.8
# Whoever holds the budget rarely needs to "run it by" anyone, and a contact without budget rarely
# has the sign-off: multipliers of the stakeholder states' draw weights by budget_authority.
_STAKEHOLDER_SCALE = {"yes": {"pending": 0.3}, "no": {"buy_in": 0.5, "pending": 1.5}}


class _Value(NamedTuple):
    """One value of a categorical field: how often it is drawn and what it adds to the propensity."""

    name: str
    weight: float
    effect: float


_COMPANY_SIZES = (
    _Value("1-10", 15, -0.3),
    _Value("11-50", 25, 0.1),
    _Value("51-200", 30, 0.3),
    _Value("201-1000", 20, 0.0),
    _Value("1000+", 10, -0.4),  # enterprises buy slowly
)
_INDUSTRIES = (
    _Value("logistics", 1, 0.2),
    _Value("manufacturing", 1, 0.1),
    _Value("healthcare", 1, -0.3),
    _Value("retail", 1, 0.0),
    _Value("construction", 1, -0.1),
    _Value("food & beverage", 1, 0.1),
    _Value("professional services", 1, 0.2),
    _Value("education", 1, -0.4),
    _Value("fintech", 1, 0.0),
    _Value("hospitality", 1, -0.2),
)
_URGENCIES = (_Value("low", 35, -1.0), _Value("medium", 40, 0.0), _Value("high", 25, 1.0))
_BUDGET_EFFECTS = {"yes": 0.8, "shared": 0.0, "no": -0.9}
_LEAD_SOURCES = (
    _Value("inbound web", 25, 0.3),
    _Value("referral", 15, 0.8),
    _Value("trade show", 15, 0.0),
    _Value("cold outbound", 20, -0.9),
    _Value("partner", 10, 0.4),
    _Value("webinar", 15, 0.1),
)
# (role, weights of budget_authority yes/shared/no, effect); founders only at companies up to 200.
_ROLES = (
    ("founder", (8, 2, 0), 0.2),
    ("CFO", (7, 3, 0), 0.0),
    ("VP operations", (5, 4, 1), 0.2),
    ("ops manager", (1, 5, 4), 0.1),
    ("IT director", (3, 5, 2), -0.1),
    ("procurement lead", (2, 6, 2), -0.2),
    ("head of finance", (5, 4, 1), 0.0),
    ("office manager", (0, 3, 7), -0.2),
    ("analyst", (0, 2, 8), -0.3),
    ("plant manager", (2, 5, 3), 0.1),
)
_BUDGET_VALUES = ("yes", "shared", "no")
_SMALL_COMPANIES = ("1-10", "11-50", "51-200")
_SMALL_BUDGETS = ("1-10", "11-50")


def _previous_interactions_effect(count: int) -> float:
    """Warm leads help up to ~4 touches; past 5 the deal is stalling ("perpetual evaluator")."""
    return 0.2 * min(count, 4) - 0.4 * max(0, count - 5)


class _State(NamedTuple):
    """One state of a dialogue cue: propensity effect, base weight, and lean towards good calls."""

    name: str
    effect: float
    weight: float
    lean: float  # the state's draw weight is weight * exp(lean * call quality)


_CUE_STATES: dict[str, tuple[_State, ...]] = {
    "objection": (
        _State("none", 0.0, 3, 0.0),
        _State("handled", 0.5, 3, 0.6),
        _State("unresolved", -0.9, 3, -0.6),
    ),
    "pricing": (
        _State("not_discussed", 0.0, 3, 0.0),
        _State("in_range", 0.3, 2, 0.5),
        _State("negotiated", 0.2, 2, 0.3),
        _State("pushback", -0.9, 2, -0.6),
    ),
    "competitor": (
        _State("none", 0.0, 4, 0.0),
        _State("incumbent_unhappy", 0.4, 2, 0.4),
        _State("shortlist", -0.2, 2, 0.0),
        _State("leaning_competitor", -1.0, 1.5, -0.7),
    ),
    "stakeholders": (
        _State("unmentioned", 0.0, 2, 0.0),
        _State("buy_in", 0.7, 2, 0.6),
        _State("pending", -0.2, 3, 0.0),
        _State("blocker", -1.0, 1.5, -0.7),
    ),
    "next_steps": (_State("concrete", 1.1, 3, 0.7), _State("vague", -0.3, 4, 0.0), _State("none", -1.1, 2, -0.7)),
}


def draw_deal(rng: random.Random) -> tuple[dict, dict[str, str], float]:
    """One call's CRM context, its dialogue cue states and its propensity to convert (> 0: converted)."""
    context = _draw_context(rng)
    quality = rng.gauss(_QUALITY_FROM_CONTEXT * _context_score(context), 1.0)
    cues = _draw_cues(context, quality, rng)
    propensity = expected_propensity(context, cues) + rng.gauss(0.0, _OUTCOME_NOISE_SD)
    return context, cues, propensity


def _pick(values: tuple[_Value, ...], rng: random.Random) -> _Value:
    return rng.choices(values, weights=[v.weight for v in values])[0]


def _draw_context(rng: random.Random) -> dict:
    """The CRM fields of one call."""
    size, industry = _pick(_COMPANY_SIZES, rng), _pick(_INDUSTRIES, rng)
    urgency, source = _pick(_URGENCIES, rng), _pick(_LEAD_SOURCES, rng)
    roles = [r for r in _ROLES if r[0] != "founder" or size.name in _SMALL_COMPANIES]
    role, budget_weights, _ = rng.choice(roles)
    budget = rng.choices(_BUDGET_VALUES, weights=budget_weights)[0]
    # Warm sources come with a history; ~10% of deals are long-stalled evaluations (6-9 touches).
    if rng.random() < 0.1:
        previous = rng.randint(6, 9)
    elif source.name == "cold outbound":
        previous = rng.choice((0, 0, 0, 1, 1, 2))
    elif source.name in ("referral", "partner"):
        previous = rng.randint(1, 5)
    else:
        previous = rng.randint(0, 4)
    return {
        "company_size": size.name,
        "industry": industry.name,
        "contact_role": role,
        "urgency": urgency.name,
        "budget_authority": budget,
        "previous_interactions": previous,
        "lead_source": source.name,
    }


def _effect(values: tuple[_Value, ...], name: str) -> float:
    return next(v.effect for v in values if v.name == name)


def _context_score(context: dict) -> float:
    """Summed propensity effect of the CRM fields."""
    return (
        _effect(_COMPANY_SIZES, context["company_size"])
        + _effect(_INDUSTRIES, context["industry"])
        + next(effect for role, _, effect in _ROLES if role == context["contact_role"])
        + _effect(_URGENCIES, context["urgency"])
        + _BUDGET_EFFECTS[context["budget_authority"]]
        + _previous_interactions_effect(context["previous_interactions"])
        + _effect(_LEAD_SOURCES, context["lead_source"])
    )


def expected_propensity(context: dict, cues: dict[str, str]) -> float:
    """The propensity before its noise term: what an ideal model that saw every field and cue would know."""
    return (
        _INTERCEPT
        + _CONTEXT_WEIGHT * _context_score(context)
        + _DIALOGUE_WEIGHT * _cue_score(cues)
        + _interactions(context, cues)
    )


def _draw_cues(context: dict, quality: float, rng: random.Random) -> dict[str, str]:
    """One state per dialogue cue; states with a positive lean are likelier on good calls."""
    cues = {}
    for cue in CUES:
        states = _CUE_STATES[cue]
        weights = [s.weight * math.exp(s.lean * quality) for s in states]
        if cue == "stakeholders":
            scale = _STAKEHOLDER_SCALE.get(context["budget_authority"], {})
            weights = [w * scale.get(s.name, 1.0) for w, s in zip(weights, states)]
        cues[cue] = rng.choices(states, weights=weights)[0].name
    return cues


def _cue_score(cues: dict[str, str]) -> float:
    return sum(next(s.effect for s in _CUE_STATES[cue] if s.name == cues[cue]) for cue in CUES)


def _interactions(context: dict, cues: dict[str, str]) -> float:
    """Effects that need context and dialogue together (no additive model of either one captures them)."""
    effect = 0.0
    if cues["pricing"] == "pushback" and context["company_size"] in _SMALL_BUDGETS:
        effect -= 0.5  # no room in a small budget
    if cues["stakeholders"] == "blocker" and context["budget_authority"] == "yes":
        effect += 0.6  # the contact can overrule the sceptic
    if cues["next_steps"] == "concrete" and context["urgency"] == "high":
        effect += 0.4  # a booked step on a burning problem rarely slips
    return effect
