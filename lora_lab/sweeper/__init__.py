"""lora_lab's Optuna sweeper for Hydra: `python -m lora_lab.train -m hparams_search=<name>`.

sweeper.py (ask, launch, tell), search_space.py (override syntax -> distributions), resume.py
(new study or resumed one), storage.py (the study's storage, study.json, a job re-attaching to
its trial), pruning.py (the job's callback; the median rule of several objectives), objectives.py
(hydra.sweeper.objectives: their checks, values and Pareto front), heartbeat.py + recovery.py (a dead
worker's trials), ledger.py (counting trials), reseed.py (more seeds for the finalists), config.py
(hydra/sweeper=lora_lab_optuna and its sampler/pruner groups). Hydra finds it through
hydra_plugins/lora_lab_sweeper; searches in conf/hparams_search/.
"""
