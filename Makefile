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

.PHONY: install demo test lint format typecheck layers pytest bench bench-check clean

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

## Lint, type-check, check the layers, run the whole test suite with coverage, and check
## every benchmark implementation against TechEmpower's rules (no load).
test: lint typecheck layers pytest bench-check

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

## TechEmpower's six tests: aiosite against aiohttp, FastAPI and Django (bench/README.md).
## QUICK=1 for one 3-second round; SERVERS="aiosite aiohttp-tuned", TESTS="json db".
bench:
	$(MAKE) -C bench bench

bench-check:
	$(MAKE) -C bench check

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

clean:
	rm -rf $(VENV) bench/.venv .coverage .coverage.* .mypy_cache .ruff_cache
