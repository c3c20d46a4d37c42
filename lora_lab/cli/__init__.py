"""The command line every Hydra entry point shares (imports nothing itself: each module is light).

errors.py           a user's mistake -> one `error:` paragraph and exit 2 (group choices, unknown keys,
                    UserErrors raised while the job runs); the decorators every entry point wears
run.py              where the job runs: single run or multirun, its overrides, a DDP worker
hydra_callbacks.py  Hydra callbacks run before Hydra writes into a job dir (conf/hydra/default.yaml)
"""
