"""hparams_search=auto: a budgeted search over what is installed, for a new dataset (docs/auto.md).

    python -m lora_lab.train -m hparams_search=auto dataset=csv dataset.path=reviews.csv budget_minutes=30

portfolio.py  the entries (conf/hparams_search/auto.yaml), which backbones are installed
halving.py    successive halving and the budget: rungs, promotion, estimates, launch or skip (pure)
record.py     auto.json: what each rung ran, the time spent, the signature a rerun must match
search.py     the rung loop: launch, measure, promote, continue a paused job, pick the winner
cut.py        the callbacks its jobs get: validate where trainer.max_time cuts; pause after n epochs
probe.py      a training step timed on each backbone here: the cost of an entry on another backbone
sweeper.py    the Hydra sweeper; config.py its structured config (hydra/sweeper=lora_lab_auto)

Light on purpose: Hydra imports config.py on every start, through hydra_plugins/lora_lab_auto.
"""
