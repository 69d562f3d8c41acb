# Everyday commands. `make test` and `make demo` work on a fresh clone: they create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install lint test test-redis test-valkey demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-redis: install
	RMQ_TEST_SERVER=redis $(VENV)/bin/pytest

test-valkey: install
	RMQ_TEST_SERVER=valkey $(VENV)/bin/pytest

test: lint test-redis test-valkey

demo: install
	$(PY) -m workers.demo

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) dist build .mypy_cache .ruff_cache .pytest_cache
