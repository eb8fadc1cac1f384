# The README's two commands: `make test` and `make book`. Each (re)creates .venv when it is
# missing or older than requirements.txt / pyproject.toml, then does its job. Nothing downloads at
# run time except the package install itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test book venv clean-book clean bench

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@if [ ! -x $(BIN)/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

book: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter-book build book/ --path-output . --warningiserror --keep-going

bench: $(STAMP)
	$(BIN)/python scripts/bench_raw_read.py

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV)
