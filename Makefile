# The README's two commands: `make test` and `make book`. Each (re)creates .venv when it is
# missing or older than requirements.txt / pyproject.toml, then does its job. Nothing downloads at
# run time except the package install itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test book venv clean-book clean bench check-site chromium full-check

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

# Every study notebook at profile=full on small full-resolution samples in the real data sets'
# layouts and file names, capped (max_steps, max_images): the full-scale path, on the CPU here.
full-check: $(STAMP)
	$(BIN)/python scripts/full_check.py $(FULL_CHECK_ARGS)

# The browser test of the rendered site (after `make book`): Debian's chromium, driven by Playwright.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

check-site: $(STAMP) chromium
	REPROLIB_SITE_TEST=1 $(BIN)/python -m pytest tests/site -q -s -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python scripts/bench_raw_read.py

clean-book:
	rm -rf _build

clean: clean-book
	rm -rf $(VENV)
