# Each target creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-oldest lint docs soak bench bench-streams bench-sbe bench-history check clean

# The lowest websocket-client that setup.cfg allows; CI runs the suite on it too.
WSCLIENT_OLDEST := 1.8.0
OLDEST_VENV := .venv-oldest

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wsmanager demo
	$(BIN)/wsmanager demo --futures --seconds 10

test: $(STAMP)
	$(BIN)/pytest -q

$(OLDEST_VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/pip install --quiet -e '.[dev]' 'websocket-client==$(WSCLIENT_OLDEST)'
	touch $@

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -c "import websocket; print('websocket-client', websocket.__version__)"
	$(OLDEST_VENV)/bin/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check wsmanager tests bench
	$(BIN)/mypy

BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[dev]' binance-connector python-binance
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/run.py --write-results

bench-streams: $(STAMP)
	$(BIN)/python bench/streams.py --write-results

bench-sbe: $(STAMP)
	$(BIN)/python bench/sbe.py --write-results

bench-history: $(STAMP)
	$(BIN)/python bench/history.py --write-results

soak: $(STAMP)
	$(BIN)/python bench/soak.py --seconds $${SOAK_SECONDS:-60}

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir site

check: lint docs test

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(BENCH_VENV) build dist *.egg-info
