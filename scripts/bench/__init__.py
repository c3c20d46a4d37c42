"""Helpers of scripts/bench_train.py: lora_lab vs a plain transformers.Trainer + PEFT recipe.

One concept per module: flops (model FLOPs per training token), machine (peak FLOP/s of this CPU),
lab (lora_lab's config and rows, shared by every worker), worker (the spec/result protocol of a
benchmark subprocess), recipe / inference (workers, each run as `python -m bench.<name>`),
token_counter (a Lightning callback counting the tokens a lora_lab job processes), jobs (launching
runs and recording their raw results), summary (medians, ratios, time to accuracy) and report
(the table and the JSON line).
"""
