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

# The documentation site: docs/ + mkdocs.yml, built in strict mode (a warning or a broken link
# fails); the CLI, metrics and settings references are generated from the code at build time.
.PHONY: docs docs-serve
DOCS_STAMP := $(VENV)/.docs-installed-stamp

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# NO_MKDOCS_2_WARNING: Material prints a notice about its end of life on every build.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict

clean:
	rm -rf $(VENV) dist build .mypy_cache .ruff_cache .pytest_cache
