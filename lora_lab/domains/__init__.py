"""Per-domain adapters on one frozen base: python -m lora_lab.domains (conf/domains.yaml).

jobs.py trains one ordinary job per domain, one on all domains and one per baseline regime;
evaluation.py loads every adapter into one PEFT model (lora_lab.models.multi_adapter), checks
that switching reproduces each standalone adapter, and scores every domain's test rows;
scoring.py holds the measurements; report.py writes the table.
"""
