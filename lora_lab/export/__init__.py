"""Ship a finished job: `python -m lora_lab.export run_dir=<job> out=<dir> [onnx=true]`.

bundle.py builds the export dir (merged/, adapter/, labels, tokenizer, lora_lab_export.json) and
writes it atomically; card.py writes its README.md model card; onnx_check.py adds onnx/, checked
against PyTorch on the job's test split. This package imports nothing heavy, so the entry
point's `--help` stays fast; nothing in lora_lab imports it.
"""
