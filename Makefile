# `make test` and `make demo` work on a fresh machine: they build their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build (a local wheel here). An unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# One pytest worker per core (at most 4: each worker holds torch and the test models);
# tests/conftest.py gives each worker one torch thread. `pytest -q` alone runs them in order.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

# The main job on the embedded digits data: SP vs IP, SNIP at 98% sparsity, 10 epochs, three
# seeds (mean ± std, IP - SP paired by seed), under a minute on 2 cores (one torch thread:
# --threads auto). Drop --no-dense for the dense reference (+50% time).
# --resume: a second `make demo` shows the finished runs (and finishes interrupted ones)
# instead of refusing the existing runs/demo; `rm -rf runs/demo` to train again.
demo: $(STAMP)
	$(BIN)/interspace compare --epochs 10 --seeds 0 1 2 --no-dense --out runs/demo --resume

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/export_size.py
	$(BIN)/python benchmarks/inference_speed.py

# The documentation site (mkdocs.yml, docs/) into site/; any warning (a broken link or
# anchor, a page missing from the nav, an unparsable docstring) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache site
