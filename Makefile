# Everyday commands. `make test` and `make demo` work on a fresh clone: they create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install lint test test-redis test-valkey release-check demo bench clean

# The distribution was called rmq before rmq-streams: an old .venv's editable install of it goes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if $(PY) -m pip show --quiet rmq >/dev/null 2>&1; then $(PY) -m pip uninstall --quiet --yes rmq; fi
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-redis: install
	RMQ_TEST_SERVER=redis $(VENV)/bin/pytest -m "not release"

test-valkey: install
	RMQ_TEST_SERVER=valkey $(VENV)/bin/pytest -m "not release"

# Build the sdist, the wheel from it (as `python -m build` does) and the direct wheel; install each
# (and an editable install) in a fresh venv and run `rmq` from outside the repository.
release-check: install
	$(VENV)/bin/pytest -m release

test: lint test-redis test-valkey release-check

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
	rm -rf $(VENV) dist build *.egg-info .mypy_cache .ruff_cache .pytest_cache
