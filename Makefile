# Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs soak check clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wsmanager demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check wsmanager tests bench
	$(BIN)/mypy

soak: $(STAMP)
	$(BIN)/python bench/soak.py --seconds $${SOAK_SECONDS:-60}

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir site

check: lint docs test

clean:
	rm -rf $(VENV) build dist *.egg-info
