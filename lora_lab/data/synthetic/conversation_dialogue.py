"""The dialogue of a synthetic sales call: which turns are said, in which order, in which words.

The cue states come from conversation_outcome.py; the words from sales_conversations.yaml. Each
state is voiced with lines that other states share words with (see that file's comments), and the
probabilities below decide how often the context leaks into what the prospect says.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lora_lab.data.synthetic.tables import load_tables

PHRASES = load_tables("sales_conversations")

Turn = tuple[str, str]  # (speaker, text); "R" is the rep, "P" the prospect
# say(speaker, *templates) -> one turn: a random template, slots filled.
Say = Callable[..., Turn]

# Opening, discovery and the next-step exchange make 6 turns; optional parts fill up to this.
_MAX_TURNS = 20
# How often a call gives the context away: a greeting naming the lead source (else, with two or
# more previous interactions, a "good to talk again"), a discovery line on urgency or budget.
_P_SOURCE_LEAK = 0.35
_P_RETURN_LEAK = 0.4
_P_URGENCY_LEAK, _P_BUDGET_LEAK = 0.35, 0.25
# Share of objections closed by a reply that fits handled and unresolved alike ("Okay, noted.").
_P_NONCOMMITTAL = 0.4
# Share of calls without an objection that still say "no real concerns".
_P_NO_OBJECTION_LINE = 0.35
# Share of calls without a price discussion that defer it to "next time".
_P_PRICE_DEFERRAL = 0.3
# Share of concrete and vague next steps voiced by an ambiguous reply ("Let's aim for next week.").
_P_NEXT_STEP_AMBIGUOUS = 0.3


def dialogue(context: dict, cues: dict[str, str], rng: random.Random) -> list[Turn]:
    """Turns of one call: opening, discovery, cue segments in random order, next steps, neutral filler.

    The call is a sequence of parts, some optional (small talk, a second discovery question, the
    demo, rep prompts, the sign-off). They are tried in random order, prompts first, and kept while
    the call stays within a drawn target length, so length varies but never exceeds _MAX_TURNS.
    """
    slots = _slots(context, rng)

    def say(speaker: str, *templates: str) -> Turn:
        text = rng.choice(templates).format(**slots)
        return speaker, text[0].upper() + text[1:]  # "{boss} signed off" starts a sentence

    greetings = PHRASES.greetings
    if rng.random() < _P_SOURCE_LEAK:
        greetings = PHRASES.source_greetings[context["lead_source"]]
    elif context["previous_interactions"] >= 2 and rng.random() < _P_RETURN_LEAK:
        greetings = PHRASES.return_greetings
    # Urgency and budget authority leak into the prospect's discovery answers for some calls only.
    leaks = []
    if rng.random() < _P_URGENCY_LEAK:
        leaks.append(say("P", *PHRASES.urgency_lines[context["urgency"]]))
    if rng.random() < _P_BUDGET_LEAK:
        leaks.append(say("P", *PHRASES.budget_lines[context["budget_authority"]]))
    small_talk = rng.choice(PHRASES.small_talk)

    # (turns, kind): "core" parts are always said; "prompt" and "filler" parts only if they fit.
    parts: list[tuple[list[Turn], str]] = [
        ([say("R", *greetings), say("P", *PHRASES.greeting_replies)], "core"),
        ([say("R", small_talk["rep"]), say("P", small_talk["reply"])], "filler"),
        ([say("R", *PHRASES.discovery_questions), say("P", *PHRASES.pains), *leaks], "core"),
        ([say("R", *PHRASES.discovery_questions), say("P", *PHRASES.pains)], "filler"),
        ([say("R", *PHRASES.pitches), say("P", *PHRASES.pitch_reactions)], "filler"),
    ]
    segments = {
        "objection": _objection(cues["objection"], say, rng),
        "pricing": _pricing(cues["pricing"], say, rng),
        "competitor": _competitor(cues["competitor"], say),
        "stakeholders": _stakeholders(cues["stakeholders"], say),
    }
    for cue in rng.sample(sorted(segments), k=len(segments)):
        if segments[cue]:
            parts += [([say("R", *PHRASES.prompts[cue])], "prompt"), (segments[cue], "core")]

    replies, acks = PHRASES.next_step_replies[cues["next_steps"]], PHRASES.next_step_acks[cues["next_steps"]]
    if cues["next_steps"] != "none" and rng.random() < _P_NEXT_STEP_AMBIGUOUS:
        replies, acks = PHRASES.next_step_ambiguous, PHRASES.ambiguous_acks
    parts += [
        ([say("R", *PHRASES.next_step_proposals), say("P", *replies)], "core"),
        ([say("R", *acks)], "filler"),
        ([say("R", *PHRASES.closings), say("P", *PHRASES.closing_replies)], "filler"),
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
    p = PHRASES
    return {
        "rep": rng.choice(p.reps),
        "prospect": rng.choice(p.prospects),
        "vendor": rng.choice(p.vendors),
        "product": rng.choice(p.products),
        "competitor": rng.choice(p.competitors),
        "system": rng.choice(p.systems),
        "referrer": f"{rng.choice(p.prospects)} at {rng.choice(p.referrer_companies)}",
        "partner": rng.choice(p.partners),
        "show": rng.choice(p.shows),
        "boss": rng.choice(p.bosses),
        "colleague": rng.choice(p.colleagues),
        "project": rng.choice(p.projects),
        "day": rng.choice(p.days),
        "time": rng.choice(p.times),
        "deadline": rng.choice(p.deadlines),
        "month": rng.choice(p.months),
        "thing": rng.choice(p.things[context["industry"]]),
        "team": str(rng.randint(3, 60)),
        "price": f"${rng.randint(6, 120) * 500:,}",
        "discount": f"{rng.choice((5, 10, 15, 20))}%",
    }


def _objection(state: str, say: Say, rng: random.Random) -> list[Turn]:
    if state == "none":
        return [say("P", *PHRASES.no_objection_lines)] if rng.random() < _P_NO_OBJECTION_LINE else []
    objection = rng.choice(PHRASES.objections)
    replies = PHRASES.noncommittal if rng.random() < _P_NONCOMMITTAL else PHRASES.objection_replies[state]
    return [say("P", objection["raised"]), say("R", objection["answer"]), say("P", *replies)]


def _pricing(state: str, say: Say, rng: random.Random) -> list[Turn]:
    if state == "not_discussed":
        if rng.random() >= _P_PRICE_DEFERRAL:
            return []
        return [say("R", PHRASES.price_deferral["rep"]), say("P", PHRASES.price_deferral["reply"])]
    turns = [say(*rng.choice(PHRASES.price_asks)), say("R", *PHRASES.price_quotes)]
    if state == "in_range":
        return [*turns, say("P", *PHRASES.price_reactions["in_range"])]
    # A pushback opens bluntly or like a haggle; a negotiation always opens like a haggle, so the
    # first reaction alone does not tell them apart.
    opener = "pushback" if state == "pushback" and rng.random() < 0.6 else "haggle"
    turns.append(say("P", *PHRASES.price_reactions[opener]))
    if state == "negotiated" or rng.random() < 0.5:
        turns += [say("R", *PHRASES.discount_offers), say("P", *PHRASES.after_discount[state])]
    return turns


def _competitor(state: str, say: Say) -> list[Turn]:
    if state == "none":
        return []
    turns = [say("P", *PHRASES.competitor_lines[state]), say("R", *PHRASES.competitor_answers[state])]
    return [*turns, say("P", *PHRASES.leaning_replies)] if state == "leaning_competitor" else turns


def _stakeholders(state: str, say: Say) -> list[Turn]:
    if state == "unmentioned":
        return []
    turns = [say("P", *PHRASES.stakeholder_lines[state])]
    if state in PHRASES.stakeholder_follow_ups:
        follow_up = PHRASES.stakeholder_follow_ups[state]
        turns += [say("R", *follow_up["questions"]), say("P", *follow_up["replies"])]
    return turns
