# One script per task; CI runs the same ones (.ci/run -> make test).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run chat test test-fast lint format services bench nlu-eval nlu-compare rasa rasa-setup clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Start the bot in embedded mode (SQLite, in-memory locks, embedded NLU,
## demo data) and serve the widget on http://localhost:8000
run: $(STAMP)
	$(PY) -m bot run

## The same conversation in a terminal
chat: $(STAMP)
	$(PY) -m bot chat

## Everything the test suite needs (services, Chromium, Rasa's own
## virtualenv outside the tree), then the tests
test: $(STAMP) services rasa-setup
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not browser"

services:
	bash .ci/services.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) bench/nlu.py
	$(PY) bench/dialog.py
	$(PY) bench/load.py
	$(PY) bench/desk.py

nlu-eval: $(STAMP)
	$(PY) -m bot nlu eval nlu/tests/test_nlu.yml --report var/intent_report.json

## Rasa 3.6 as the NLU server on 127.0.0.1:5005 (--enable-api, --auth-token
## $$RASA_TOKEN). Its own Python 3.10 virtualenv and models live outside the
## tree, in $${XDG_CACHE_HOME:-~/.cache}/heatdesk/rasa-3.6.21/; training is
## skipped while nlu/data and nlu/rasa/config.yml are unchanged.
## The bot uses it with NLU_BACKEND=rasa RASA_TOKEN=... (same token).
rasa: $(STAMP)
	$(PY) -m nlu.rasa.server serve

## Only the Rasa virtualenv (CI does this before the tests; cached)
rasa-setup: $(STAMP)
	$(PY) -m nlu.rasa.server setup

## Both backends on the held-out sets: Markdown tables, confusion matrices in var/
nlu-compare: $(STAMP)
	$(PY) -m bot nlu compare nlu/tests/test_nlu.yml --serve
	$(PY) -m bot nlu compare nlu/tests/test_nlu_field.yml --serve

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
