"""lora_lab: parameter-efficient fine-tuning experiments for text classifiers."""

__version__ = "0.1.0"
