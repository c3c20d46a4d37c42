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
"""

from __future__ import annotations

import math
import numbers
import random
import re
from typing import Callable, NamedTuple

from lora_lab.data.sources import Source
from lora_lab.data.splits import Split

CONVERTED, NOT_CONVERTED = "converted", "not_converted"
LABELS: tuple[str, ...] = (CONVERTED, NOT_CONVERTED)
CONTEXT_FIELDS: tuple[str, ...] = (
    "company_size", "industry", "contact_role", "urgency", "budget_authority", "previous_interactions", "lead_source",
)
# Names in the rendered header; "role" reads better there than the column name.
_HEADER_KEYS = {field: ("role" if field == "contact_role" else field) for field in CONTEXT_FIELDS}
CUES: tuple[str, ...] = ("objection", "pricing", "competitor", "stakeholders", "next_steps")

# Opening, discovery and the next-step exchange make 6 turns; optional parts fill up to this.
_MAX_TURNS = 20

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
    _Value("1-10", 15, -0.3), _Value("11-50", 25, 0.1), _Value("51-200", 30, 0.3),
    _Value("201-1000", 20, 0.0), _Value("1000+", 10, -0.4),  # enterprises buy slowly
)
_INDUSTRIES = (
    _Value("logistics", 1, 0.2), _Value("manufacturing", 1, 0.1), _Value("healthcare", 1, -0.3),
    _Value("retail", 1, 0.0), _Value("construction", 1, -0.1), _Value("food & beverage", 1, 0.1),
    _Value("professional services", 1, 0.2), _Value("education", 1, -0.4), _Value("fintech", 1, 0.0),
    _Value("hospitality", 1, -0.2),
)
_URGENCIES = (_Value("low", 35, -1.0), _Value("medium", 40, 0.0), _Value("high", 25, 1.0))
_BUDGET_EFFECTS = {"yes": 0.8, "shared": 0.0, "no": -0.9}
_LEAD_SOURCES = (
    _Value("inbound web", 25, 0.3), _Value("referral", 15, 0.8), _Value("trade show", 15, 0.0),
    _Value("cold outbound", 20, -0.9), _Value("partner", 10, 0.4), _Value("webinar", 15, 0.1),
)
# (role, weights of budget_authority yes/shared/no, effect); founders only at companies up to 200.
_ROLES = (
    ("founder", (8, 2, 0), 0.2), ("CFO", (7, 3, 0), 0.0), ("VP operations", (5, 4, 1), 0.2),
    ("ops manager", (1, 5, 4), 0.1), ("IT director", (3, 5, 2), -0.1), ("procurement lead", (2, 6, 2), -0.2),
    ("head of finance", (5, 4, 1), 0.0), ("office manager", (0, 3, 7), -0.2), ("analyst", (0, 2, 8), -0.3),
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
        _State("none", 0.0, 3, 0.0), _State("handled", 0.5, 3, 0.6), _State("unresolved", -0.9, 3, -0.6),
    ),
    "pricing": (
        _State("not_discussed", 0.0, 3, 0.0), _State("in_range", 0.3, 2, 0.5),
        _State("negotiated", 0.2, 2, 0.3), _State("pushback", -0.9, 2, -0.6),
    ),
    "competitor": (
        _State("none", 0.0, 4, 0.0), _State("incumbent_unhappy", 0.4, 2, 0.4),
        _State("shortlist", -0.2, 2, 0.0), _State("leaning_competitor", -1.0, 1.5, -0.7),
    ),
    "stakeholders": (
        _State("unmentioned", 0.0, 2, 0.0), _State("buy_in", 0.7, 2, 0.6),
        _State("pending", -0.2, 3, 0.0), _State("blocker", -1.0, 1.5, -0.7),
    ),
    "next_steps": (_State("concrete", 1.1, 3, 0.7), _State("vague", -0.3, 4, 0.0), _State("none", -1.1, 2, -0.7)),
}

# --------------------------------------------------------------------------------------------
# Slot vocabularies (tuples, so that choices are reproducible).
# --------------------------------------------------------------------------------------------

_REPS = ("Alex", "Jordan", "Sam", "Taylor", "Morgan", "Chris", "Jamie", "Riley", "Casey", "Drew")
_PROSPECTS = (
    "Dana", "Mike", "Priya", "Tom", "Sandra", "Luis", "Kevin", "Aisha", "Greg", "Mei", "Carlos", "Jen",
    "Raj", "Olga", "Brian", "Fatima", "Steve", "Hannah", "Marco", "Yuki", "Derek", "Nina", "Paul", "Rosa",
)
_VENDORS = ("Fluxa", "Orbitly", "Stackwise", "Kinetik", "Trellis")
_PRODUCTS = (
    "the ops platform", "our scheduling tool", "the inventory module", "our procurement portal",
    "the analytics dashboard", "our workflow automation suite",
)
_COMPETITORS = ("Tradewind", "Brightops", "Corvid", "Helix Systems", "Orbix", "Pallas")
_SYSTEMS = ("SAP", "NetSuite", "Salesforce", "QuickBooks", "Manhattan WMS", "Oracle", "Dynamics", "Epic")
_REFERRER_COMPANIES = ("Apex", "Summit Foods", "Harbor Freight Co.", "Atlas Logistics", "Beacon Health")
_PARTNERS = ("Northbridge Consulting", "our implementation partner", "Keystone IT", "the reseller we use")
_SHOWS = ("ProMat", "the regional ops summit", "SaaStr", "the industry expo", "Modex")
_BOSSES = ("my VP", "our CFO", "my boss", "the ops director", "our CEO", "the owner", "our COO")
_COLLEAGUES = ("my ops lead", "our IT person", "two of my team leads", "our controller", "the project manager")
_PROJECTS = ("an ERP migration", "a warehouse move", "an audit", "a re-org", "peak season", "a system upgrade")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_TIMES = ("9", "10:30", "1", "2", "3:30", "4")
_DEADLINES = ("the end of the quarter", "our busy season", "the new fiscal year", "the audit in the spring", "June")
_MONTHS = ("January", "March", "April", "June", "September", "November")
# What the prospect's team juggles, by industry: gives discovery turns an industry flavour.
_THINGS = {
    "logistics": ("shipments", "dock schedules", "carrier invoices"),
    "manufacturing": ("work orders", "maintenance tickets", "material requests"),
    "healthcare": ("staff scheduling", "supply requests", "equipment checks"),
    "retail": ("store inventory", "vendor orders", "shift schedules"),
    "construction": ("job site reports", "equipment rentals", "subcontractor invoices"),
    "food & beverage": ("batch records", "supplier orders", "cold-chain logs"),
    "professional services": ("billable hours", "client onboarding", "project staffing"),
    "education": ("room bookings", "purchase requests", "facility tickets"),
    "fintech": ("compliance reviews", "vendor onboarding", "access requests"),
    "hospitality": ("room turnovers", "supply orders", "maintenance requests"),
}

# --------------------------------------------------------------------------------------------
# Dialogue templates. A turn is (speaker, text); "R" is the rep, "P" the prospect.
# --------------------------------------------------------------------------------------------

_GREETINGS = (
    "Hi {prospect}, thanks for making the time today.",
    "Hey {prospect}, {rep} from {vendor} here. Is now still a good time?",
    "Morning {prospect}, appreciate you jumping on.",
    "Hi {prospect}, it's {rep} with {vendor}. Thanks for taking the call.",
)
# Openers that give the lead source away; used for some calls only, so the header is not redundant.
_SOURCE_GREETINGS = {
    "inbound web": (
        "Hi {prospect}, thanks for filling out the demo request on our site.",
        "I saw you downloaded our guide on {thing} last week, so I wanted to follow up.",
    ),
    "referral": (
        "{referrer} mentioned you might be looking at tools like ours.",
        "Hi {prospect}, {referrer} suggested we connect.",
    ),
    "trade show": ("Great meeting you at {show} last week.", "Following up from our chat at the booth at {show}."),
    "cold outbound": (
        "I know this is out of the blue, I'll keep it short.",
        "Hi {prospect}, I'm reaching out cold, so tell me if it's a bad time.",
    ),
    "partner": (
        "{partner} passed your name along and said you might be a fit.",
        "Our friends at {partner} said you're reviewing tools.",
    ),
    "webinar": (
        "Thanks for joining our webinar on {thing} last week.",
        "You asked a good question in the webinar, so I wanted to follow up.",
    ),
}
_P_SOURCE_LEAK = 0.35
_RETURN_GREETINGS = ("Good to talk again, {prospect}.", "Picking up where we left off last time, {prospect}.")
_P_RETURN_LEAK = 0.4
_GREETING_REPLIES = (
    "Sure, I've got about twenty minutes.", "Yeah, go ahead.", "Happy to. It's been a busy week.",
    "Sure. I have a hard stop at the half hour though.", "Yep, I can hear you fine.", "Thanks for reaching out. Let's do it.",
)

_DISCOVERY_QUESTIONS = (
    "How are you handling {thing} today?", "Walk me through what happens with {thing} right now.",
    "What made you look at this now?", "Where does the current process break down?",
    "How many people touch {thing} in a typical week?", "What does a good outcome look like for you?",
)
_PAINS = (
    "Honestly it's mostly spreadsheets, and things fall through the cracks.",
    "We have a system, but nobody trusts the numbers, so people keep their own lists.",
    "My team spends a day a week just reconciling {thing}.",
    "It works, mostly. It just doesn't scale past where we are now.",
    "We're growing, and the old way of tracking {thing} is starting to creak.",
    "About {team} people, and every one of them does it differently.",
    "We lost a big client last year partly because {thing} slipped through.",
)
# Discovery lines that give urgency or budget authority away, for some calls only.
_URGENCY_LINES = {
    "high": (
        "And we need something in place before {deadline}.",
        "This is a priority for us this quarter, it came up in the board meeting.",
        "Frankly it's costing us money every week we wait.",
    ),
    "medium": ("Ideally we'd have something by {deadline}, but it's not a fire.", "It's on our list for this year."),
    "low": (
        "No hard deadline, we're just exploring for now.",
        "This is more of a next-year thing, but I wanted to see what's out there.",
    ),
}
_BUDGET_LINES = {
    "yes": ("It's my budget, so I can make the call.", "I sign off on tools like this myself."),
    "shared": ("I'd be deciding this together with {boss}.", "Budget sits partly with me and partly with {boss}."),
    "no": ("I'm gathering options for {boss}; it's their budget.", "I don't own the budget, I'm doing the research."),
}
_P_URGENCY_LEAK, _P_BUDGET_LEAK = 0.35, 0.25

_PITCHES = (
    "So the short version: {product} pulls {thing} into one place and flags what's late.",
    "Let me share my screen and show you the dashboard.",
    "Most teams your size are set up in about two weeks.",
    "We also have an API, so it plugs into what you already use.",
)
# Reactions to the demo, independent of the outcome: polite enthusiasm is not a buying signal.
_PITCH_REACTIONS = (
    "Okay, that looks great.", "Nice, that's clean.", "Hm, interesting.", "That's more or less what I expected.",
    "Can you go back to the last screen?", "Okay. And the reporting piece, is that included?", "I like that.",
)
# (rep line, prospect reply) pairs.
_SMALL_TALK = (
    ("How was {show}, by the way?", "Busy, but good. Too much coffee."),
    ("Did you get through the storm okay last week?", "We did, thanks. The office lost power for a day."),
    ("Sorry, can you hear me alright? My connection is acting up.", "You're fine now."),
)

# Rep questions that open a cue segment: they name the topic, never how it goes.
_PROMPTS = {
    "objection": ("Any concerns so far?", "What would hold you back?", "Anything technical I should know about?"),
    "pricing": ("Should we talk budget?", "Do you have a budget range in mind?"),
    "competitor": ("Are you looking at other options?", "What are you using today?"),
    "stakeholders": ("Who else would be involved in the decision?", "How do decisions like this get made on your side?"),
}

# Objections other than price: (raised by the prospect, rep's answer).
_OBJECTIONS = (
    ("My main concern is integration. Will this talk to {system}?",
     "Yes, we have a native {system} connector, and our team sets it up for you."),
    ("Our IT team is going to ask about security and where the data lives.",
     "We're SOC 2 Type II and can host in-region; I'll send over our security pack."),
    ("The timing is tricky, we're in the middle of {project}.",
     "Understood. Most customers start with one team so it doesn't collide with bigger projects."),
    ("I worry my team won't actually use another tool.",
     "That's fair. We do on-site training, and most teams use it daily within a month."),
    ("We can't sign a multi-year contract.", "No problem, we offer annual terms."),
)
_OBJECTION_REPLIES = {
    "handled": (
        "Okay, that actually covers it.", "Good, that was my biggest worry.", "If that's true, that solves it for us.",
        "Great, then I don't see a problem there.", "That helps a lot, thanks.",
    ),
    "unresolved": (
        "I hear you, but I'm still not convinced.", "Maybe, but that's going to be a hard sell internally.",
        "We've heard that before from other vendors.", "I'd need to see that to believe it.",
        "That doesn't really solve it for us.",
    ),
}
# Replies that could end either a handled or an unresolved objection.
_NONCOMMITTAL = ("Okay, noted.", "Hm, let me think about that.", "Alright.")
_P_NONCOMMITTAL = 0.4
# Said when there is no objection: shares words ("concerns", "issue", "blockers") with objections.
_NO_OBJECTION_LINES = (
    "No real concerns on the technical side.", "Integration shouldn't be an issue, we're on {system}.",
    "I don't see any blockers on our end technically.",
)
_P_NO_OBJECTION_LINE = 0.35

_PRICE_ASKS = (
    ("P", "What does this cost?"), ("P", "So what are we looking at on price?"), ("R", "Let me walk you through pricing."),
)
_PRICE_QUOTES = (
    "For a team your size it's about {price} a year, onboarding included.",
    "List is {price} per year, and that includes support.",
)
_PRICE_REACTIONS = {
    "in_range": (
        "That's in line with what we budgeted.", "Okay, that's reasonable.", "That's less than I expected, actually.",
        "Fine, price isn't the issue here.",
    ),
    # Negotiated and pushback open alike; only the outcome of the haggling differs.
    "haggle": ("That's a bit more than we planned. Is there any flexibility?", "Hm, that's above what we budgeted."),
    "pushback": (
        "That's well over what we have budgeted.", "Honestly that's too expensive for us right now.",
        "We were hoping for about half that.",
    ),
}
_DISCOUNT_OFFERS = (
    "If you sign this quarter I can do {discount} off the first year.", "I could get you {discount} off if that helps.",
)
_AFTER_DISCOUNT = {
    "negotiated": ("Okay, with that discount it works.", "That gets us there.", "Alright, that we can do."),
    "pushback": ("Even with that, it's a stretch.", "I'm not sure that moves the needle.", "It's still too much for us."),
}
# Said instead of a price discussion sometimes: "next time" is also a next-step word.
_PRICE_DEFERRAL = ("We can go over pricing next time.", "Sure, that works.")
_P_PRICE_DEFERRAL = 0.3

_COMPETITOR_LINES = {
    "incumbent_unhappy": (
        "We're on {competitor} now and it's been a headache.",
        "Our contract with {competitor} ends in {month}, and we're not renewing.",
    ),
    "shortlist": (
        "We're also looking at {competitor}, to be transparent.",
        "You're one of three vendors on our list, {competitor} is another.",
    ),
    "leaning_competitor": (
        "{competitor} offered us a free pilot, and {boss} liked their demo.",
        "To be honest, {competitor} is further along with us.",
        "We're probably going with {competitor}, but I wanted to see your pricing.",
    ),
}
_COMPETITOR_ANSWERS = {
    "incumbent_unhappy": (
        "We hear that a lot from {competitor} customers.",
        "Makes sense, a lot of our customers switched from them.",
    ),
    "shortlist": (
        "Totally fair. Happy to do a side-by-side.",
        "Of course. Let me know what matters most in the comparison.",
    ),
    "leaning_competitor": (
        "Understood. What would it take for us to get a fair shot?",
        "Fair enough. Is there still room to compare?",
    ),
}
# Only a losing deal gets a third turn; it reuses a vague next-step phrase on purpose.
_LEANING_REPLIES = ("I'm not sure at this point.", "Send me something and I'll pass it along.")

_STAKEHOLDER_LINES = {
    "buy_in": (
        "{boss} already signed off on budget for this.", "I talked to {boss} and they're fully on board.",
        "The whole team asked for this, so buy-in isn't a problem.", "{boss} is the one who asked me to find a tool.",
    ),
    "pending": (
        "I'll need to run this by {boss}.", "{boss} has the final say, so I'll have to bring them in.",
        "I'd have to get IT and finance to weigh in.",
    ),
    "blocker": (
        "Honestly, {boss} is skeptical about adding another vendor.",
        "Our IT director has been burned by tools like this and is against it.",
        "Finance has frozen new software spend until further notice.",
    ),
}
# (rep questions, prospect replies) after a pending or blocked sign-off.
_STAKEHOLDER_FOLLOW_UPS = {
    "pending": (
        ("Of course. Would it help if I joined that conversation?",),
        ("Maybe, I'll let you know.", "Sure, that could help."),
    ),
    "blocker": (
        ("What would they need to see?",),
        ("I don't know that anything would change their mind right now.", "Probably a lot more than a demo."),
    ),
}

_NEXT_STEP_PROPOSALS = (
    "What would a good next step look like?", "Can we put something on the calendar for next week?",
    "Should I send over a proposal?", "Would a pilot with one team make sense?",
)
_NEXT_STEP_REPLIES = {
    "concrete": (
        "Yes. Let's do {day} at {time}, and I'll bring {colleague}.",
        "Send the proposal today, I'll review it with {boss} on {day}.",
        "Let's start the pilot next week. I'll get you the list of users by {day}.",
        "Send the contract over and I'll get it signed this week.",
        "Book it for {day} next week, I'll clear my calendar.",
    ),
    "vague": (
        "Maybe. Next week is crazy, let me get back to you.", "Send me some material and I'll look at it when I can.",
        "Let's touch base next quarter.", "I'll circle back after I talk to the team.",
        "Sure, send something over and we'll see.",
    ),
    "none": (
        "I think we're good for now, thanks.", "I'll reach out if anything changes.", "Let's leave it here for now.",
        "I don't think we need another call at this point.", "Not right now, but I appreciate your time.",
    ),
}
# Replies that could be a booked step or a polite brush-off; used for some concrete and vague calls.
_NEXT_STEP_AMBIGUOUS = ("Sure, send over the proposal.", "Let's aim for next week.", "Okay, let's talk again soon.")
_P_NEXT_STEP_AMBIGUOUS = 0.3
_AMBIGUOUS_ACKS = ("Sounds good.", "Great, I'll send something over today.")
_NEXT_STEP_ACKS = {
    "concrete": ("Perfect, I'll send the invite now.", "Great, you'll have it within the hour."),
    "vague": ("Sounds good, I'll follow up.", "Okay, I'll check back in a couple of weeks."),
    "none": ("Understood, thanks for being upfront.", "No problem. You have my number."),
}
_CLOSINGS = ("Thanks again, {prospect}. Talk soon.", "Appreciate your time today.")
_CLOSING_REPLIES = ("Thanks, you too.", "Thanks, {rep}. Bye.", "Take care.")

# --------------------------------------------------------------------------------------------
# Transcription noise. Each knob is a probability at noise=1 and scales linearly with `noise`.
# --------------------------------------------------------------------------------------------

_FILLERS = ("um,", "uh,", "you know,", "like,", "I mean,", "so,")
_P_FILLER = 0.5        # per turn: a filler at a random position
_P_STUTTER = 0.05      # per word: said twice ("the the")
_P_INAUDIBLE = 0.02    # per word: replaced by [inaudible] (cue words can get lost, as in real ASR)
_P_CROSSTALK = 0.1     # per turn: a trailing [crosstalk]
_P_PUNCT = 0.5         # per punctuation mark: dropped
_P_LOWERCASE = 0.5     # per transcript: no casing (speaker tags keep theirs)
_PUNCT_RE = re.compile(r"[.,;:!?]")
_SPEAKERS = {"R": "Rep", "P": "Prospect"}

Turn = tuple[str, str]
# say(speaker, *templates) -> one turn: a random template, slots filled.
Say = Callable[..., Turn]


def generate_sales_conversations(n: int = 2000, seed: int = 0, noise: float = 0.2) -> list[dict]:
    """Return n rows, deterministic for (n, seed, noise).

    Each row has the CONTEXT_FIELDS, "transcript" ("Rep: ..." / "Prospect: ..." lines), "label"
    (converted / not_converted) and "cues": the state of each dialogue cue, the ground truth of what
    the transcript expresses (for analysis; a classifier should see `render(row, ...)` only).
    """
    _check_count("n", n)
    _check_seed("seed", seed)
    _check_noise("noise", noise)
    rng = random.Random(seed)
    rows = []
    for _ in range(int(n)):
        context = _draw_context(rng)
        quality = rng.gauss(_QUALITY_FROM_CONTEXT * _context_score(context), 1.0)
        cues = _draw_cues(context, quality, rng)
        propensity = _expected_propensity(context, cues) + rng.gauss(0.0, _OUTCOME_NOISE_SD)
        turns = _dialogue(context, cues, rng)
        # One seed per row is drawn from the content stream whatever `noise` is, so content and
        # labels do not depend on `noise`: only the noise pass does.
        noise_rng = random.Random(rng.getrandbits(64))
        transcript = _transcribe(turns, float(noise), noise_rng)
        label = CONVERTED if propensity > 0 else NOT_CONVERTED
        rows.append({**context, "transcript": transcript, "label": label, "cues": cues})
    return rows


def render(row: dict, include_context: bool) -> str:
    """The text a classifier sees: an optional "[field: value | ...]" CRM header line, then the transcript."""
    _check_bool("include_context", include_context)
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
        _check_count("dataset.n", n)
        _check_noise("dataset.noise", noise)
        _check_bool("dataset.include_context", include_context)
        _check_seed("dataset.generator_seed", generator_seed)
        self.n, self.noise, self.include_context, self.generator_seed = n, noise, include_context, generator_seed

    def read(self) -> dict[str, Split]:
        rows = generate_sales_conversations(self.n, seed=self.generator_seed, noise=self.noise)
        texts = [render(row, self.include_context) for row in rows]
        extra = {field: [row[field] for row in rows] for field in CONTEXT_FIELDS}
        return {"train": Split(texts, [row["label"] for row in rows], extra)}


# --------------------------------------------------------------------------------------------
# Argument checks: the message names the argument and says what to pass instead.
# --------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(name: str, value: object) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r}: must be an integer >= 1 (how many conversations); pass e.g. {name}=2000")


def _check_seed(name: str, value: object) -> None:
    if not _is_int(value):
        raise ValueError(f"{name}={value!r}: must be an integer; pass e.g. {name}=0")


def _check_noise(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}={value!r}: must be a number in [0, 1] (0 = clean transcripts); pass e.g. {name}=0.2")


def _check_bool(name: str, value: object) -> None:
    # A string such as "false" would be truthy and silently add the header: reject it.
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be true or false (a boolean, not a string)")


# --------------------------------------------------------------------------------------------
# Latent variables.
# --------------------------------------------------------------------------------------------


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
        "company_size": size.name, "industry": industry.name, "contact_role": role, "urgency": urgency.name,
        "budget_authority": budget, "previous_interactions": previous, "lead_source": source.name,
    }


def _effect(values: tuple[_Value, ...], name: str) -> float:
    return next(v.effect for v in values if v.name == name)


def _context_score(context: dict) -> float:
    """Summed propensity effect of the CRM fields."""
    return (
        _effect(_COMPANY_SIZES, context["company_size"]) + _effect(_INDUSTRIES, context["industry"])
        + next(effect for role, _, effect in _ROLES if role == context["contact_role"])
        + _effect(_URGENCIES, context["urgency"]) + _BUDGET_EFFECTS[context["budget_authority"]]
        + _previous_interactions_effect(context["previous_interactions"]) + _effect(_LEAD_SOURCES, context["lead_source"])
    )


def _expected_propensity(context: dict, cues: dict[str, str]) -> float:
    """The propensity before its noise term: what an ideal model that saw every field and cue would know."""
    return (
        _INTERCEPT + _CONTEXT_WEIGHT * _context_score(context) + _DIALOGUE_WEIGHT * _cue_score(cues)
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


# --------------------------------------------------------------------------------------------
# Dialogue.
# --------------------------------------------------------------------------------------------


def _dialogue(context: dict, cues: dict[str, str], rng: random.Random) -> list[Turn]:
    """Turns of one call: opening, discovery, cue segments in random order, next steps, neutral filler.

    The call is a sequence of parts, some optional (small talk, a second discovery question, the
    demo, rep prompts, the sign-off). They are tried in random order, prompts first, and kept while
    the call stays within a drawn target length, so length varies but never exceeds _MAX_TURNS.
    """
    slots = _slots(context, rng)

    def say(speaker: str, *templates: str) -> Turn:
        text = rng.choice(templates).format(**slots)
        return speaker, text[0].upper() + text[1:]  # "{boss} signed off" starts a sentence

    greetings = _GREETINGS
    if rng.random() < _P_SOURCE_LEAK:
        greetings = _SOURCE_GREETINGS[context["lead_source"]]
    elif context["previous_interactions"] >= 2 and rng.random() < _P_RETURN_LEAK:
        greetings = _RETURN_GREETINGS
    # Urgency and budget authority leak into the prospect's discovery answers for some calls only.
    leaks = []
    if rng.random() < _P_URGENCY_LEAK:
        leaks.append(say("P", *_URGENCY_LINES[context["urgency"]]))
    if rng.random() < _P_BUDGET_LEAK:
        leaks.append(say("P", *_BUDGET_LINES[context["budget_authority"]]))
    small_talk, reply = rng.choice(_SMALL_TALK)

    # (turns, kind): "core" parts are always said; "prompt" and "filler" parts only if they fit.
    parts: list[tuple[list[Turn], str]] = [
        ([say("R", *greetings), say("P", *_GREETING_REPLIES)], "core"),
        ([say("R", small_talk), say("P", reply)], "filler"),
        ([say("R", *_DISCOVERY_QUESTIONS), say("P", *_PAINS), *leaks], "core"),
        ([say("R", *_DISCOVERY_QUESTIONS), say("P", *_PAINS)], "filler"),
        ([say("R", *_PITCHES), say("P", *_PITCH_REACTIONS)], "filler"),
    ]
    segments = {
        "objection": _objection(cues["objection"], say, rng), "pricing": _pricing(cues["pricing"], say, rng),
        "competitor": _competitor(cues["competitor"], say), "stakeholders": _stakeholders(cues["stakeholders"], say),
    }
    for cue in rng.sample(sorted(segments), k=len(segments)):
        if segments[cue]:
            parts += [([say("R", *_PROMPTS[cue])], "prompt"), (segments[cue], "core")]

    replies, acks = _NEXT_STEP_REPLIES[cues["next_steps"]], _NEXT_STEP_ACKS[cues["next_steps"]]
    if cues["next_steps"] != "none" and rng.random() < _P_NEXT_STEP_AMBIGUOUS:
        replies, acks = _NEXT_STEP_AMBIGUOUS, _AMBIGUOUS_ACKS
    parts += [
        ([say("R", *_NEXT_STEP_PROPOSALS), say("P", *replies)], "core"),
        ([say("R", *acks)], "filler"),
        ([say("R", *_CLOSINGS), say("P", *_CLOSING_REPLIES)], "filler"),
    ]

    def n_turns(keep: list[bool]) -> int:  # after merging: one turn per change of speaker
        speakers = [speaker for (turns, _), kept in zip(parts, keep) if kept for speaker, _ in turns]
        return sum(1 for i, speaker in enumerate(speakers) if i == 0 or speaker != speakers[i - 1])

    keep = [kind == "core" for _, kind in parts]
    target = min(_MAX_TURNS, rng.randint(n_turns(keep), n_turns(keep) + 8))
    # Prompts are tried first: without one, a cue segment runs on from the prospect's last answer.
    order = rng.sample(range(len(parts)), k=len(parts))
    for i in [i for i in order if parts[i][1] == "prompt"] + [i for i in order if parts[i][1] == "filler"]:
        if n_turns([k or j == i for j, k in enumerate(keep)]) <= target:
            keep[i] = True
    return _merge_speakers([turn for (turns, _), kept in zip(parts, keep) if kept for turn in turns])


def _merge_speakers(turns: list[Turn]) -> list[Turn]:
    """Join consecutive lines of one speaker into one turn, as a transcript shows them."""
    merged: list[Turn] = []
    for speaker, text in turns:
        if merged and merged[-1][0] == speaker:
            merged[-1] = (speaker, f"{merged[-1][1]} {text}")
        else:
            merged.append((speaker, text))
    return merged


def _slots(context: dict, rng: random.Random) -> dict[str, str]:
    """Fill every slot once; templates use the subset they need."""
    return {
        "rep": rng.choice(_REPS),
        "prospect": rng.choice(_PROSPECTS),
        "vendor": rng.choice(_VENDORS),
        "product": rng.choice(_PRODUCTS),
        "competitor": rng.choice(_COMPETITORS),
        "system": rng.choice(_SYSTEMS),
        "referrer": f"{rng.choice(_PROSPECTS)} at {rng.choice(_REFERRER_COMPANIES)}",
        "partner": rng.choice(_PARTNERS),
        "show": rng.choice(_SHOWS),
        "boss": rng.choice(_BOSSES),
        "colleague": rng.choice(_COLLEAGUES),
        "project": rng.choice(_PROJECTS),
        "day": rng.choice(_DAYS),
        "time": rng.choice(_TIMES),
        "deadline": rng.choice(_DEADLINES),
        "month": rng.choice(_MONTHS),
        "thing": rng.choice(_THINGS[context["industry"]]),
        "team": str(rng.randint(3, 60)),
        "price": f"${rng.randint(6, 120) * 500:,}",
        "discount": f"{rng.choice((5, 10, 15, 20))}%",
    }


def _objection(state: str, say: Say, rng: random.Random) -> list[Turn]:
    if state == "none":
        return [say("P", *_NO_OBJECTION_LINES)] if rng.random() < _P_NO_OBJECTION_LINE else []
    raised, answer = rng.choice(_OBJECTIONS)
    replies = _NONCOMMITTAL if rng.random() < _P_NONCOMMITTAL else _OBJECTION_REPLIES[state]
    return [say("P", raised), say("R", answer), say("P", *replies)]


def _pricing(state: str, say: Say, rng: random.Random) -> list[Turn]:
    if state == "not_discussed":
        return [say("R", _PRICE_DEFERRAL[0]), say("P", _PRICE_DEFERRAL[1])] if rng.random() < _P_PRICE_DEFERRAL else []
    turns = [say(*rng.choice(_PRICE_ASKS)), say("R", *_PRICE_QUOTES)]
    if state == "in_range":
        return [*turns, say("P", *_PRICE_REACTIONS["in_range"])]
    # A pushback opens bluntly or like a haggle; a negotiation always opens like a haggle, so the
    # first reaction alone does not tell them apart.
    opener = "pushback" if state == "pushback" and rng.random() < 0.6 else "haggle"
    turns.append(say("P", *_PRICE_REACTIONS[opener]))
    if state == "negotiated" or rng.random() < 0.5:
        turns += [say("R", *_DISCOUNT_OFFERS), say("P", *_AFTER_DISCOUNT[state])]
    return turns


def _competitor(state: str, say: Say) -> list[Turn]:
    if state == "none":
        return []
    turns = [say("P", *_COMPETITOR_LINES[state]), say("R", *_COMPETITOR_ANSWERS[state])]
    return [*turns, say("P", *_LEANING_REPLIES)] if state == "leaning_competitor" else turns


def _stakeholders(state: str, say: Say) -> list[Turn]:
    if state == "unmentioned":
        return []
    turns = [say("P", *_STAKEHOLDER_LINES[state])]
    if state in _STAKEHOLDER_FOLLOW_UPS:
        questions, replies = _STAKEHOLDER_FOLLOW_UPS[state]
        turns += [say("R", *questions), say("P", *replies)]
    return turns


# --------------------------------------------------------------------------------------------
# Transcription.
# --------------------------------------------------------------------------------------------


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
        words.insert(rng.randrange(len(words)), rng.choice(_FILLERS))  # before a word, never trailing
    if rng.random() < _P_CROSSTALK * noise:
        words.append("[crosstalk]")
    return " ".join(words) or text
