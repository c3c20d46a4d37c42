"""Compare the jobs of a multirun or Optuna sweep: python -m lora_lab.report <dir>.

collect.py reads job dirs into rows, aggregate.py groups seeds and picks winners, study.py
opens the sweep's Optuna study, plots.py draws the figures, document.py lays out the report
that markdown.py and html.py render, publish.py swaps it into place, wandb_log.py mirrors it
to W&B, build.py runs that story and __main__.py is the command line.
"""

REPORT_DIR = "report"  # the default output: <sweep dir>/report/
