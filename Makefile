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

.PHONY: install system-packages browser demo test lint format typecheck layers pytest bench bench-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests need: chromium for the browser tests
# (tests/e2e/test_browser_chat.py, driven through Playwright: its own browser downloads
# are not used) and nginx for the deployment and scale-out tests (tests/support/nginx.py
# runs its own nginx, on its own port, prefix and config: a system nginx that the
# package starts on port 80 is left alone). The missing ones are installed with one
# apt-get update and install, as root or through sudo; without either, CI
# (AIOSITE_REQUIRE_SERVICES=1) stops here and a developer's run goes on with those tests
# skipped. AIOSITE_CHROMIUM and AIOSITE_NGINX name other binaries, for this target and
# the tests alike.
CHROMIUM := $(or $(AIOSITE_CHROMIUM),/usr/bin/chromium)
NGINX := $(or $(AIOSITE_NGINX),/usr/sbin/nginx)
APT_INSTALL := apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

## Install Debian's chromium and nginx for the tests when missing (apt-get, as root or with sudo).
system-packages:
	@missing=""; \
	[ -x "$(CHROMIUM)" ] || missing="$$missing chromium"; \
	[ -x "$(NGINX)" ] || missing="$$missing nginx"; \
	install="$(APT_INSTALL)$$missing"; \
	if [ -z "$$missing" ]; then \
		:; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "make system-packages:$$missing missing and there is no apt-get here (the tests that need them are skipped); install them and set AIOSITE_CHROMIUM / AIOSITE_NGINX to their paths" >&2; \
		[ "$${AIOSITE_REQUIRE_SERVICES:-}" != 1 ]; \
	elif [ "$$(id -u)" = 0 ]; then \
		sh -c "$$install"; \
	elif command -v sudo >/dev/null 2>&1; then \
		sudo sh -c "$$install"; \
	else \
		echo "make system-packages:$$missing missing (the tests that need them are skipped); as root run: $$install" >&2; \
		[ "$${AIOSITE_REQUIRE_SERVICES:-}" != 1 ]; \
	fi

## The former name of system-packages.
browser: system-packages

## Run the example site on http://127.0.0.1:8080 (SQLite, development settings):
## migrate its database and load the demo posts first (loading again updates them).
demo: $(STAMP)
	cd $(DEMO_DIR) && $(AIOSITE) db migrate
	cd $(DEMO_DIR) && $(AIOSITE) db seed blogsite/blog/fixtures/demo.yaml
	cd $(DEMO_DIR) && $(AIOSITE) run --host $(HOST) --port $(PORT)

## Install chromium and nginx for the tests when missing, lint, type-check, check the
## layers, run the whole test suite with coverage, and check every benchmark
## implementation against TechEmpower's rules (no load).
test: system-packages lint typecheck layers pytest bench-check

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# coverage run (not pytest --cov): the aiosite pytest plugin imports aiosite before
# pytest-cov would start measuring. The browser tests run beside the rest, in a pytest of
# their own with pytest-playwright on (every other run has `-p no:playwright`): its sync
# API keeps an event loop running in the main thread for the whole session, which the
# asyncio tests after it cannot start theirs beside. BROWSER_TESTS= leaves them out.
BROWSER_TESTS ?= tests/e2e/test_browser_chat.py
BROWSER_LOG := .browser-tests.log
pytest: $(STAMP) system-packages
	$(BIN)/coverage erase
	@if [ -n "$(BROWSER_TESTS)" ]; then \
		$(BIN)/coverage run -m pytest -p playwright $(BROWSER_TESTS) > $(BROWSER_LOG) 2>&1 & \
		browser=$$!; \
	fi; \
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ -n "$(BROWSER_TESTS)" ]; then \
		wait $$browser; browser_status=$$?; \
		echo "--- browser tests ($(BROWSER_TESTS)) ---"; cat $(BROWSER_LOG); \
		[ $$browser_status -eq 0 ] || status=$$browser_status; \
	fi; \
	exit $$status
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
