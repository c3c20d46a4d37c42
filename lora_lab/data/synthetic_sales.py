"""Deterministic synthetic B2B sales notes for a 5-intent text classification task.

A note is what a salesperson types into the CRM after a call or an email: an optional opener
("Call w/ Dana at Apex Fabrication:"), a core sentence that carries the intent, and optional
class-neutral details ("will send quote by Fri", "cc'd AM"). Then a noise pass mimics hurried
typing (lowercasing, typos, abbreviations, missing spaces and punctuation).

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

import numbers
import random
import re

LABELS: tuple[str, ...] = ("Repeat Order", "Urgent Need", "Stocking Issue", "Custom Spec", "New Product Demand")

# Share of notes whose core is followed by a secondary cue of another class (label = primary intent).
_AMBIGUOUS_SHARE = 0.12
# Words per clean note; closers are added or removed to land inside this window.
_MIN_WORDS, _MAX_WORDS = 8, 60

# --------------------------------------------------------------------------------------------
# Slot vocabularies. All are tuples (ordered) so that choices are reproducible.
# --------------------------------------------------------------------------------------------

_COMPANY_HEADS = (
    "Northwind", "Apex", "Bluewater", "Keystone", "Ironclad", "Summit", "Harbor", "Cedar", "Redline",
    "Granite", "Pioneer", "Silverline", "Tri-County", "Lakeside", "Meridian", "Atlas", "Beacon",
    "Crestview", "Evergreen", "Falcon", "Great Plains", "Horizon", "Midwest", "Pacific", "Quantum",
    "Riverbend", "Sterling", "Titan", "Union", "Westfield", "Oakridge", "Coastal", "Vanguard", "Delta",
)
_COMPANY_TRADES = (
    "Logistics", "Fabrication", "Packaging", "Manufacturing", "Foods", "Plastics", "Metalworks",
    "Distribution", "Industrial Supply", "Automation", "Cold Storage", "Machining", "Components",
    "Brewing", "Medical Supply", "Tooling", "Paper Products", "Electric",
)
# Empty strings weight "no legal form", the most common way people write customer names.
_COMPANY_FORMS = ("", "", "", "", " Inc.", " LLC", " GmbH", " Ltd", " Co.", " Group", " & Sons", " AG")

_CONTACTS = (
    "Dana", "Mike", "Priya", "Tom", "Sandra", "Luis", "Kevin", "Aisha", "Greg", "Mei", "Carlos",
    "Jen", "Raj", "Olga", "Brian", "Fatima", "Steve", "Hannah", "Marco", "Yuki", "Derek", "Nina",
    "Paul", "Rosa", "Tariq", "Emily", "Jonas", "Beth", "Sam", "Ingrid", "Victor", "Lena",
)
_ROLES = (
    "procurement manager", "plant manager", "buyer", "ops lead", "purchasing agent",
    "maintenance supervisor", "warehouse manager", "supply chain analyst", "facilities manager",
    "QA lead", "owner", "office manager", "production planner", "category manager",
    "engineering lead", "senior buyer", "materials manager",
)
# (product, unit used in quantities, unit used in unit prices)
_PRODUCTS = (
    ("hydraulic fittings", "pcs", "pc"), ("nitrile gloves", "cases", "case"), ("pallet wrap", "rolls", "roll"),
    ("servo motors", "units", "unit"), ("label printers", "units", "unit"), ("zip ties", "bags", "bag"),
    ("safety glasses", "boxes", "box"), ("stretch film", "rolls", "roll"), ("corrugated boxes", "bundles", "bundle"),
    ("conveyor belting", "m", "m"), ("hex bolts", "boxes", "box"), ("O-rings", "packs", "pack"),
    ("bearing assemblies", "units", "unit"), ("thermal labels", "rolls", "roll"), ("air filters", "cartons", "carton"),
    ("cutting fluid", "drums", "drum"), ("PVC tubing", "ft", "ft"), ("shop towels", "cases", "case"),
    ("pneumatic valves", "units", "unit"), ("cable glands", "pcs", "pc"), ("packing tape", "cases", "case"),
    ("steel shelving", "units", "unit"), ("hand sanitizer", "cases", "case"), ("welding wire", "spools", "spool"),
    ("drum liners", "cases", "case"), ("ear plugs", "boxes", "box"), ("hose clamps", "pcs", "pc"),
    ("poly bags", "cases", "case"), ("LED high-bay lights", "units", "unit"), ("gear reducers", "units", "unit"),
    ("solenoid coils", "pcs", "pc"), ("floor marking tape", "rolls", "roll"),
)
# Things we do not (yet) carry: the object of New Product Demand, also used in neutral closers
# and ambiguous cues so that the mere presence of such a noun does not give the class away.
_NEW_PRODUCTS = (
    "compostable mailers", "cobot grippers", "RFID tags", "UV-C sanitizing units", "biodegradable pallet wrap",
    "vibration sensors", "ESD-safe bins", "hi-vis winter jackets", "lithium forklift batteries",
    "food-grade lubricants", "recycled-content stretch film", "IoT temperature loggers", "anti-fatigue mats",
    "paper-based void fill", "cut-resistant sleeves", "collaborative robot cells", "smart label printers",
    "battery-powered strapping tools", "reusable totes", "hydrogen leak detectors",
)
_PRODUCT_LINES = (
    "sustainable packaging", "automation", "PPE", "smart sensor", "cold-chain", "ergonomics", "e-commerce fulfillment",
)
_MATERIALS = (
    "316 stainless", "food-grade silicone", "anodized aluminum", "Viton", "glass-filled nylon",
    "galvanized steel", "HDPE", "brass", "EPDM",
)
_COLORS = ("safety orange", "matte black", "RAL 5015 blue", "their corporate green", "white", "clear")
_MODIFICATIONS = (
    "in a shorter length", "with their logo on it", "with a tighter tolerance", "in a different material",
    "with metric threads", "pre-kitted in bags of 10", "with a longer lead", "with a reinforced base",
    "with their part number etched on", "in a custom color",
)
_RATINGS = ("IP67", "ATEX zone 2", "UL 94 V-0", "FDA food contact", "-40C", "NSF", "ISO class 7 cleanroom")
_TOLERANCES = ("+/-0.05mm", "+/-0.1mm", "0.02in", "+/-0.5 degrees")
_DIMENSIONS = ("450mm", "2.4m lengths", "12in wide", "a 35mm bore", "6ft sections", "1.5in OD", "900x600mm")
_DIM_DIFFS = ("12mm", "half an inch", "3cm", "about 5mm", "a quarter inch")
_PACKS = ("bulk cartons", "boxes of 50 instead of 100", "individually bagged units", "plain unbranded boxes")
_SITES = ("Reno", "Dayton", "Columbus", "Fresno", "Laredo", "Hamburg", "Leeds", "Monterrey", "Tulsa", "Savannah")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_MONTHS = ("Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")
_QUARTERS = ("Q1", "Q2", "Q3", "Q4", "the spring", "the fall", "early next year")
_CADENCES = ("monthly", "quarterly", "weekly", "bi-weekly")
_WHEN_NORMAL = (
    "next week", "end of month", "in two weeks", "by the 15th", "early next month", "in 3-4 weeks",
    "by Thursday", "by Friday", "after the holiday",
)
_WHEN_URGENT = (
    "by tomorrow", "within 24h", "within 48h", "today if possible", "by EOD", "before Monday's shift",
    "first thing tomorrow", "by noon tomorrow", "before the weekend",
)
_COMPETITORS = ("Grainger", "Fastenal", "Uline", "MSC", "a local distributor", "an Amazon Business seller", "Motion")
_TRADE_SHOWS = ("ProMat", "Pack Expo", "Hannover Messe", "FABTECH", "a trade show", "a webinar", "LinkedIn")
_MARKETS = ("food processing", "pharma", "e-commerce", "EV parts", "cold chain", "medical devices")
_COLLEAGUES = ("inside sales", "the AM", "customer service", "Jim in ops", "our product specialist", "the branch")
_MACHINES = ("#3", "#7", "2", "the big press", "line B", "the packer")

# --------------------------------------------------------------------------------------------
# Templates. Slots in braces are filled from the vocabularies above (see `_slots`).
# --------------------------------------------------------------------------------------------

_OPENERS = (
    "", "", "", "",  # no opener: about one note in six starts straight with the core
    "Call w/ {contact} at {company}:",
    "Spoke to {contact} ({role}, {company}).",
    "email from {company} procurement -",
    "{company} - {contact}:",
    "Mtg w/ {contact}, {role} at {company}.",
    "Inbound call, {company}.",
    "Per {contact} @ {company}:",
    "Visited {company} {site} plant.",
    "{contact} ({company}) called.",
    "Teams call w/ {company} buying team.",
    "Voicemail from {contact} at {company}:",
    "Quick note re {company}:",
    "RE: {company} account -",
    "{company}, {role} {contact}:",
    "Follow-up call with {contact} ({company}).",
    "Got an email from {contact}, {role} at {company}.",
    "Phone w/ {contact}:",
    "Site visit {company}.",
)

# Core sentences, one tuple per label. The last few of each class are "implied": the intent
# must be inferred from the situation rather than read off a keyword.
_CORES: dict[str, tuple[str, ...]] = {
    "Repeat Order": (
        "Wants to reorder {qty} {product}, same as last time.",
        "Same order as {po} - {qty} {product}, ship to the usual dock.",
        "Standing order for {product} continues, {qty} again this month.",
        "Placing their {cadence} reorder: {qty} {product}, no changes to spec.",
        "Repeat of last quarter's order, {qty} {product} at the same price of {price}.",
        "Asked us to duplicate {po} exactly, delivery {when_normal} is fine.",
        "Confirmed the regular {cadence} replenishment of {product}, {qty}.",
        "Renewing the blanket PO for {product}, same quantities as last year.",
        "Reordering {product}; {qty} like the previous two orders.",
        "Wants to run {po} again for {product}, nothing changed.",
        "Another round of {qty} {product}, same terms as before.",
        "Topping up {product} as usual, {qty} on the same PO terms.",
        "Re-upping their order of {product}, same SKU {sku}, {qty}.",
        "Keep the {cadence} shipment of {product} going, {qty} per drop, no rush.",
        # implied
        "Same drill as every month, {qty} {product}, usual ship-to.",
        "Send the same thing we sent in {month}. {qty} {product}.",
        "Copy of the last invoice for {product} works for them, just needs a new PO number.",
        "{contact} said 'the usual' - {qty} {product}, whenever the truck normally comes.",
        "Their {cadence} order came in right on schedule, {qty} {product}.",
        "Nothing new on their side, just the regular {qty} {product} on {po}.",
        # borrow other classes' words: the routine-reorder intent has to win
        "Not urgent and nothing custom - just the same {qty} {product} as {po}.",
        "Stock is getting low, so time to place the usual {cadence} order of {product}, {qty}.",
        "Same {product} we set up with their logo last year, {qty} again, no changes.",
        "They keep asking about new lines but today it's just the standard reorder of {product}.",
    ),
    "Urgent Need": (
        "Needs {qty} {product} {when_urgent}, line is down.",
        "Urgent: reorder of {product} but they need it {when_urgent}, will pay for expedited freight.",
        "Same order as last time but it has to ship today - {qty} {product}.",
        "Asked if we can overnight {qty} {product}; their production stops otherwise.",
        "Emergency request for {product}, {qty}, {when_urgent}.",
        "Rush order: {qty} {product} needed {when_urgent} for a customer audit.",
        "Critical - {product} failed on their main line, need replacements {when_urgent}.",
        "Wants {qty} {product} expedited, can we hot-ship from our closest warehouse?",
        "Can't wait for standard lead time on {product}, need {qty} {when_urgent}.",
        "ASAP request, {qty} {product}, will accept a partial shipment if it arrives {when_urgent}.",
        "Needs {product} {when_urgent}, otherwise they miss a shipment to their own customer.",
        "Time-sensitive: {qty} {product}, approved air freight up to {price}.",
        "Their regular supplier fell through and they need {qty} {product} {when_urgent}.",
        "Reorder of {sku} is now a hot one, they need it {when_urgent} not {when_normal}.",
        # implied
        "Crew is standing around until {product} shows up. How fast can we get {qty} there?",
        "Their plant shuts down {day} if {product} isn't on site. Said cost is not the issue.",
        "{contact} called three times today about {qty} {product}; they'll take whatever we can ship now.",
        "Machine {machine} down since this morning waiting on {product}, they'll send a driver to pick up.",
        "Will pay the premium freight, just need {qty} {product} on their dock before the weekend.",
        "Their customer moved the go-live up a week, so the {product} has to land {when_urgent}.",
        # borrow other classes' words: the time pressure has to win
        "Ran out of {product} on the floor, need {qty} {when_urgent} or the line stops.",
        "Their custom {product} won't be ready in time, need {qty} standard ones {when_urgent} as a stopgap.",
        "Usual order of {product} but they need it {when_urgent} this time, can't wait for the regular truck.",
        "Need {qty} {product} {when_urgent} - the trial of {new_product} can wait.",
    ),
    "Stocking Issue": (
        "Their warehouse is out of {product}, we're backordered until {when_normal}.",
        "Says our last shipment of {product} was short {qty_small}, stock count doesn't match.",
        "We're out of stock on {sku}; customer asked for an ETA on restock.",
        "Customer over-ordered {product} last quarter and has no shelf space left, wants to push deliveries out.",
        "Backorder on {po} still open, {qty_small} {product} outstanding.",
        "Their inventory system shows zero {product} but a physical count found {qty_small}, asked us to reconcile.",
        "Wants to switch to consignment stock for {product} b/c they keep running out.",
        "Our DC shows {product} at zero until {when_normal}, need to tell them about the delay.",
        "Complained about repeated stockouts of {product} at their {site} site.",
        "Asked us to hold {qty} {product} in our warehouse since they have no room.",
        "Min/max levels for {product} are off, they hit the reorder point twice this month with nothing on hand.",
        "Excess inventory of {product} at their site, asking if we take returns on {qty_small}.",
        "Supplier allocation on {product} means we can only ship {qty_small} of their {qty}.",
        "Wants VMI set up so we track their {product} stock levels.",
        # implied
        "Shelves at their {site} location have been empty on {product} for two weeks.",
        "Got {qty_small} of the {qty} {product} they ordered; the rest is stuck somewhere in our system.",
        "They have {qty} {product} sitting on pallets in the aisle, nowhere to put the next delivery.",
        "Their cycle count on {product} came up {qty_small} short again, second time this quarter.",
        "Same order as last time still hasn't fully arrived, {qty_small} {product} missing and no date from us.",
        "Wants us to keep a safety buffer of {product} on our side, they got burned in {month}.",
        # borrow other classes' words: the inventory problem has to win
        "Not urgent, but we keep backordering {product} on them and they want a fix.",
        "Standing order of {product} keeps arriving short, their stock is off by {qty_small}.",
        "Their custom {product} is sitting in our warehouse, they have no space to receive it.",
        "The {new_product} they bought elsewhere took their shelf space; asking us to hold the {product}.",
    ),
    "Custom Spec": (
        "Wants {product} in {material} instead of the standard.",
        "Asked for {product} cut to {dimension}, not our catalog size.",
        "Needs {product} with their logo printed, {qty} minimum.",
        "Can we hold a tolerance of {tolerance} on {product}? Standard spec won't work for them.",
        "Requesting private-label {product}, their branding on the box.",
        "Wants the same {product} as last order but {modification}.",
        "Engineering sent a drawing for a modified {product}, {dimension}.",
        "Asked if we can do {product} in {color} to match their line.",
        "Needs {product} rated for {rating}, our standard one isn't.",
        "Quote request for {qty} {product} built to their spec sheet, rev C.",
        "Custom kit: {product} pre-assembled with {product2}, their part numbers on the labels.",
        "Wants us to change the packaging on {product} to {pack}.",
        "Asked for a sample of {product} {modification} before committing to {qty}.",
        "Requires {material} {product} for a food-contact application.",
        # implied
        "Our {product} runs {dim_diff} too long for their fixture. Can engineering take a look?",
        "{contact} sent over a marked-up drawing; wants the holes moved and a {color} finish.",
        "Their auditor requires {rating} on anything they buy; asked what we can change on {product}.",
        "Regular {product} works but they want it {modification} going forward.",
        "Reorder of {product} is on hold until we confirm we can do it {modification}.",
        "Urgent-ish: their new fixture only takes {product} at {dimension}, what would tooling cost?",
        # borrow other classes' words: the modified spec has to win
        "Same order as {po} but every piece {modification}.",
        "Not a new product, just our {product} {modification}.",
        "Stock {product} doesn't fit their process, they need it {modification}.",
        "Wants {qty} {product} {when_normal}, but only if we can do it in {material}.",
    ),
    "New Product Demand": (
        "Asked if we carry {new_product}, not in our catalog yet.",
        "They're launching a new line and need a supplier for {new_product}.",
        "Interested in {new_product} - any plans to add it?",
        "Looking for {new_product} for a new facility opening in {quarter}.",
        "Asked whether our new {product_line} line is available yet.",
        "Wants a quote on {new_product}, something we haven't sold them before.",
        "Heard about the {product_line} launch and wants to be first on the list for {new_product}.",
        "Their R&D team is testing {new_product}, would buy {qty} if we can source it.",
        "Any chance we can start stocking {new_product}? Their current vendor is discontinuing it.",
        "Asked for samples of {new_product} to evaluate for a new project.",
        "Expanding into {market}, will need {new_product} which we don't currently offer.",
        "Wants to add {new_product} to their account alongside the usual {product}.",
        "Requested a catalog for our upcoming {product_line} range.",
        "{competitor} offered them {new_product}; asked if we have something comparable.",
        # implied
        "Saw {new_product} at {trade_show} and asked if that's something we could get them.",
        "Opening a second plant in {quarter}; wants to know what else we can supply beyond {product}.",
        "Sustainability push on their side - asking about {new_product} as a replacement for {product}.",
        "Never bought {new_product} from anyone before, wants us to walk them through options.",
        "Their new {market} contract needs {new_product}; could we add it to the same order as the {product}?",
        "Asked if the {product_line} products we teased last month are orderable, they have budget in {quarter}.",
        # borrow other classes' words: the not-yet-carried product has to win
        "Not a custom job - they want a {product_line} item we'd have to add to our line card.",
        "Usual reorder can wait; the real ask is whether we'll carry {new_product}.",
        "Out of stock everywhere on {new_product}, asking if we could start carrying it.",
        "Need a source for {new_product} by {quarter}, not something we sell today.",
    ),
}

# Secondary cues for ambiguous notes: a clause hinting at another intent, appended after the
# primary core. The label stays the primary intent because it is what the note is about.
_SECONDARY: dict[str, tuple[str, ...]] = {
    "Repeat Order": (
        "Otherwise same as the last order.",
        "Rest of the standing order stays the same.",
        "Also keep the {cadence} reorder of {product2} going.",
        "Mentioned the usual {product2} order too.",
    ),
    "Urgent Need": (
        "Would like it sooner if at all possible.",
        "They flagged this as urgent.",
        "Also asked about expedited shipping.",
        "Timing is tight on their side, {when_urgent} would be ideal.",
    ),
    "Stocking Issue": (
        "Also mentioned their warehouse is short on space.",
        "Noted we were backordered on {product2} last time.",
        "They're running low on {product2} as well.",
        "Asked us to check our inventory on it too.",
    ),
    "Custom Spec": (
        "Might want a custom length down the road.",
        "Also asked about putting their logo on it.",
        "Wondered if we could tweak the spec later.",
        "Asked about a {material} option for next time.",
    ),
    "New Product Demand": (
        "Also curious about our new {product_line} line.",
        "Mentioned they might need {new_product} later this year.",
        "Asked if anything new is coming out in {quarter}.",
        "Side question about whether we carry {new_product}.",
    ),
}
_SECONDARY_LEADS = ("", "", "Side note: ", "Also: ", "FYI: ", "Separately: ", "Second thing: ")
# Share of ambiguous notes whose secondary cue is a full core sentence of the other class rather
# than a short clause: these are the hardest, only the order of the sentences tells the intent.
_P_FULL_SECONDARY = 0.7

# Sentences that deny an intent ("Not urgent.", "No custom work needed."). A note of class c may
# carry a denial of some other class: harmless to a reader, but it puts the other class's
# keywords into the note, so "urgent" or "custom" alone cannot decide the label.
_DENIALS: dict[str, tuple[str, ...]] = {
    "Repeat Order": (
        "Not a repeat of the last order.",
        "This isn't their usual reorder.",
        "Different from their standing order.",
        "Not the same as last time.",
        "Not a reorder.",
    ),
    "Urgent Need": (
        "Not urgent.",
        "No rush on this one.",
        "Standard lead time is fine, no need to expedite.",
        "Line isn't down, timing is flexible.",
        "Doesn't need to ship {when_urgent}.",
    ),
    "Stocking Issue": (
        "Stock levels on their side are fine.",
        "They're not out of stock, no backorder.",
        "We have plenty in our warehouse.",
        "Warehouse space isn't an issue for them.",
        "No inventory problems mentioned.",
    ),
    "Custom Spec": (
        "Standard spec is fine.",
        "No custom work needed.",
        "No changes to the spec or the drawing.",
        "They don't want their logo on it.",
        "Catalog size works for them, nothing custom.",
    ),
    "New Product Demand": (
        "Nothing new they're looking for.",
        "No interest in the new {product_line} line for now.",
        "Not asking about new products right now.",
        "Didn't ask about {new_product} this time.",
        "Not looking to add anything to the line card.",
    ),
}
_P_DENIAL = 0.35
# Words that, when present in a note's core, forbid adding a denial of that class: "Not urgent."
# after "line is down" would contradict the note instead of merely sharing vocabulary with
# another class. Substring checks on the lowercased text, so plain tuples are enough.
_DENIAL_CONFLICTS: dict[str, tuple[str, ...]] = {
    "Repeat Order": ("same", "usual", "reorder", "standing", "regular", "repeat", "again", "last order", "before"),
    "Urgent Need": (
        "urgent", "rush", "expedit", "asap", "hot", "overnight", "today", "tomorrow", "24h", "48h", "eod",
        "stops", "down", "weekend", "wait", "deadline", "fast", "time",
    ),
    "Stocking Issue": (
        "stock", "backorder", "warehouse", "inventory", "shelf", "shelves", "out of", "ran out", "low",
        "space", "short", "zero",
    ),
    "Custom Spec": (
        "custom", "spec", "logo", "drawing", "material", "tolerance", "modif", "cut to", "branding",
        "private-label", "finish", "dimension", "fit",
    ),
    "New Product Demand": ("new", "carry", "launch", "line card", "never", "haven't sold", "add"),
}

# Contrast notes: "Called about X, not Y" where X is this class's topic and Y another's. Both
# topics are in the bag of words, only the sentence structure says which one is the intent.
_CONTRAST_SHARE = 0.10
_TOPICS: dict[str, tuple[str, ...]] = {
    "Repeat Order": (
        "repeating last month's order", "the standing order", "a straight reorder", "the usual quantities",
    ),
    "Urgent Need": ("how fast we can ship", "the deadline", "getting it there this week", "beating the lead time"),
    "Stocking Issue": ("stock levels", "their inventory", "our backorder", "warehouse space"),
    "Custom Spec": ("the spec", "the dimensions", "a different material", "their branding"),
    "New Product Demand": (
        "a product we don't carry yet", "the new line", "adding a new item", "something we've never sold",
    ),
}
_CONTRAST_CORES = (
    "Called about {topic} on the {product}, not {other_topic}.",
    "Not {other_topic} this time - it's {topic} for the {product}.",
    "Less about {other_topic}, more about {topic} ({product}).",
    "Re {product}: {topic} is the point, {other_topic} is secondary.",
    "Main thing is {topic}; {other_topic} came up but isn't why they called. Item: {product}.",
)

# Class-neutral details. A few deliberately carry words that are cues elsewhere (stock, spec,
# new catalog, rush fee) because real closers do, and a bag-of-words model should not lean on them.
_CLOSERS = (
    "Will send quote by {day}.",
    "cc'd AM.",
    "Follow up {day}.",
    "Sent pricing, {price}.",
    "Pricing same as contract.",
    "Need to confirm freight terms.",
    "Logged in CRM, task assigned to {colleague}.",
    "Check credit limit before releasing.",
    "Asked for an updated W-9.",
    "Will loop in {colleague}.",
    "Mentioned they're comparing us with {competitor}.",
    "Good call overall, relationship is solid.",
    "They want net 60 terms.",
    "Left VM for {contact2} to confirm.",
    "Need to check stock and lead time before quoting.",
    "Sent spec sheet for reference.",
    "Their fiscal year ends in {month}, budget is approved.",
    "Ship to {site} DC.",
    "Quote valid 30 days.",
    "Discussed a volume discount above {qty}.",
    "{contact2} is out next week, reach {contact} instead.",
    "Price increase letter went out last month, no pushback.",
    "Asked for the new catalog, will mail one.",
    "Reminded them about the rush fee policy.",
    "Their AP wants invoices by email from now on.",
    "Will update the forecast sheet.",
    "Need a PO before we release anything.",
    "Said {competitor} quoted {price}, we're within range.",
    "Confirm the ship-to address, they moved docks in {month}.",
    "Tentative meeting at their {site} site in {quarter}.",
    "Mentioned {new_product} in passing, no action needed.",
    "Payment on the last invoice is still pending.",
)
# How many closers a note gets: 0..3, weighted towards one.
_CLOSER_COUNTS = (0, 0, 1, 1, 1, 2, 2, 3)

# --------------------------------------------------------------------------------------------
# Noise. Each knob is a probability at noise=1 and scales linearly with `noise`, so noise=0 is
# clean text. Abbreviations are whole-phrase swaps people actually type in CRMs.
# --------------------------------------------------------------------------------------------

_ABBREVIATIONS = (
    ("as soon as possible", "asap"), ("quantity", "qty"), ("quantities", "qtys"), ("please", "pls"),
    ("with", "w/"), ("without", "w/o"), ("because", "b/c"), ("customer", "cust"), ("tomorrow", "tmrw"),
    ("regarding", "re"), ("about", "abt"), ("warehouse", "whse"), ("delivery", "dlvry"), ("order", "ord"),
    ("follow up", "f/u"), ("thanks", "thx"), ("request", "req"), ("approximately", "approx"),
    ("shipment", "shpmt"), ("before", "b4"), ("you", "u"), ("Friday", "Fri"),
    ("Monday", "Mon"), ("purchase order", "PO"), ("inventory", "inv"), ("manager", "mgr"),
)
_P_LOWERCASE = 0.6      # whole note lowercased
_P_ABBREVIATE = 0.7     # per abbreviable phrase
_P_TYPO = 0.10          # per word of 4+ letters: swap, drop or duplicate a letter
_P_JOIN = 0.06          # per gap between words: the space is lost ("reorderof")
_P_PUNCT = 0.5          # per punctuation mark: dropped
_P_DOUBLE_SPACE = 0.05  # per gap: an extra space
_P_TRAILING = 0.4       # per note: trailing whitespace

_PUNCT = ".,;:!?()"
# One alternation, longest phrase first, so "purchase order" wins over "order" and a single pass
# replaces each occurrence at most once.
_ABBREV_MAP = {long.lower(): short for long, short in _ABBREVIATIONS}
_ABBREV_RE = re.compile(
    r"\b(" + "|".join(re.escape(long) for long in sorted(_ABBREV_MAP, key=len, reverse=True)) + r")\b", re.IGNORECASE
)

def generate_sales_notes(n_per_class: int = 400, seed: int = 0, noise: float = 0.3) -> list[dict[str, str]]:
    """Return n_per_class * 5 rows {"text": ..., "label": ...}, shuffled, deterministic for (n_per_class, seed, noise).

    `noise` in [0, 1] scales every typing-noise probability (0 = clean text); content and order of
    the notes depend only on (n_per_class, seed), so noise levels are directly comparable.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, numbers.Integral) or n_per_class < 1:
        raise ValueError(f"n_per_class={n_per_class!r}: must be an integer >= 1; pass e.g. n_per_class=400")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0.0 <= float(noise) <= 1.0:
        raise ValueError(f"noise={noise!r}: must be a number in [0, 1] (0 = clean text); pass e.g. noise=0.3")
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


def _compose(label: str, rng: random.Random) -> str:
    """One clean note of class `label`: opener + core (+ secondary cue) (+ denial) + closers."""
    slots = _slots(rng)
    opener = rng.choice(_OPENERS).format(**slots)
    others = [lab for lab in LABELS if lab != label]

    if rng.random() < _CONTRAST_SHARE:
        topic, other_topic = rng.choice(_TOPICS[label]), rng.choice(_TOPICS[rng.choice(others)])
        core = rng.choice(_CONTRAST_CORES).format(topic=topic, other_topic=other_topic, product=slots["product"])
    else:
        core = rng.choice(_CORES[label]).format(**slots)

    secondary, secondary_label = "", ""
    if rng.random() < _AMBIGUOUS_SHARE:
        secondary_label = rng.choice(others)
        if rng.random() < _P_FULL_SECONDARY:
            # A whole core of the other class, about a different item of the same customer.
            other_slots = {**_slots(rng), "company": slots["company"], "contact": slots["contact"]}
            sentence = rng.choice(_CORES[secondary_label]).format(**other_slots)
        else:
            sentence = rng.choice(_SECONDARY[secondary_label]).format(**slots)
        secondary = rng.choice(_SECONDARY_LEADS) + sentence

    denial = ""
    if rng.random() < _P_DENIAL:
        said = (core + " " + secondary).lower()
        deniable = [
            lab for lab in others
            if lab != secondary_label and not any(word in said for word in _DENIAL_CONFLICTS[lab])
        ]
        if deniable:
            denial = rng.choice(_DENIALS[rng.choice(deniable)]).format(**slots)

    # Closers are sampled without repetition so a note never says the same thing twice.
    spare = list(_CLOSERS)
    rng.shuffle(spare)
    closers = [c.format(**slots) for c in spare[: rng.choice(_CLOSER_COUNTS)]]
    spare = spare[len(closers):]

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
    product, unit, unit_one = rng.choice(_PRODUCTS)
    product2 = rng.choice([p for p in _PRODUCTS if p[0] != product])[0]
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
    company = rng.choice(_COMPANY_HEADS) + " " + rng.choice(_COMPANY_TRADES) + rng.choice(_COMPANY_FORMS)
    contact = rng.choice(_CONTACTS)
    return {
        "company": company,
        "contact": contact,
        "contact2": rng.choice([c for c in _CONTACTS if c != contact]),
        "role": rng.choice(_ROLES),
        "product": shown,
        "product2": product2,
        "sku": sku,
        "qty": f"{qty_n} {unit}",
        "qty_small": f"{qty_small} {unit}",
        "price": price,
        "po": po,
        "new_product": rng.choice(_NEW_PRODUCTS),
        "product_line": rng.choice(_PRODUCT_LINES),
        "material": rng.choice(_MATERIALS),
        "color": rng.choice(_COLORS),
        "modification": rng.choice(_MODIFICATIONS),
        "rating": rng.choice(_RATINGS),
        "tolerance": rng.choice(_TOLERANCES),
        "dimension": rng.choice(_DIMENSIONS),
        "dim_diff": rng.choice(_DIM_DIFFS),
        "pack": rng.choice(_PACKS),
        "site": rng.choice(_SITES),
        "day": rng.choice(_DAYS),
        "month": rng.choice(_MONTHS),
        "quarter": rng.choice(_QUARTERS),
        "cadence": rng.choice(_CADENCES),
        "when_normal": rng.choice(_WHEN_NORMAL),
        "when_urgent": rng.choice(_WHEN_URGENT),
        "competitor": rng.choice(_COMPETITORS),
        "trade_show": rng.choice(_TRADE_SHOWS),
        "market": rng.choice(_MARKETS),
        "colleague": rng.choice(_COLLEAGUES),
        "machine": rng.choice(_MACHINES),
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
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]
