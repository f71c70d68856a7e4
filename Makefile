# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=
# The demo's project directory (a test runs `make demo` on a copy).
DEMO_DIR ?= examples/blog
AIOSITE := $(abspath $(BIN))/aiosite

.PHONY: install demo test lint format typecheck layers pytest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Run the example site on http://127.0.0.1:8080 (SQLite, development settings):
## migrate its database and load the demo posts first (loading again updates them).
demo: $(STAMP)
	cd $(DEMO_DIR) && $(AIOSITE) db migrate
	cd $(DEMO_DIR) && $(AIOSITE) db seed blogsite/blog/fixtures/demo.yaml
	cd $(DEMO_DIR) && $(AIOSITE) run --host $(HOST) --port $(PORT)

## Lint, type-check, check the layers and run the whole test suite with coverage.
test: lint typecheck layers pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# coverage run (not pytest --cov): the aiosite pytest plugin imports aiosite before
# pytest-cov would start measuring.
pytest: $(STAMP)
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache
