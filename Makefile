# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CODEX_VERSION := 0.171.0
NODE_DIR := var/node
# The previous pin, kept for one end-to-end turn (tests/e2e/test_codex_cli_versions.py): a user who has not
# upgraded yet must keep working.
CODEX_PREV_VERSION := 0.169.0
NODE_PREV_DIR := var/node-prev
# Stamps name the version, so changing a pin reinstalls (the binary's mere presence would keep the old one).
CODEX_STAMP := $(NODE_DIR)/.codex-$(CODEX_VERSION)
CODEX_PREV_STAMP := $(NODE_PREV_DIR)/.codex-$(CODEX_PREV_VERSION)

.PHONY: install run demo test test-unit test-integration test-compose lint check bench bench-deps clean codex-cli system-deps screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the end-to-end tests need (Chromium for the admin browser tests).
system-deps:
	@bash scripts/system-deps.sh

# The real Codex CLI, pinned (and the previous pin), installed into project-local folders.
codex-cli: $(CODEX_STAMP) $(CODEX_PREV_STAMP)
$(CODEX_STAMP):
	mkdir -p $(NODE_DIR)
	npm install --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_VERSION)
	rm -f $(NODE_DIR)/.codex-* && touch $@
$(CODEX_PREV_STAMP):
	mkdir -p $(NODE_PREV_DIR)
	npm install --prefix $(NODE_PREV_DIR) --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_PREV_VERSION)
	rm -f $(NODE_PREV_DIR)/.codex-* && touch $@

run: install
	$(VENV)/bin/pooler secrets init
	$(VENV)/bin/pooler db upgrade
	$(VENV)/bin/pooler up --demo

# Lint first (ruff, the format check, mypy strict over every package): CI runs exactly this.
test: lint codex-cli system-deps
	bash scripts/run-tests.sh

test-unit: install
	$(PY) -m pytest -q tests/unit

# The Dockerfile and docker-compose.yml run for real (root, dockerd, minutes): never part of `make test`.
# See docs/OPERATIONS.md "Docker Compose".
test-compose: install codex-cli
	bash scripts/test-compose.sh

# The admin's main pages at desktop and phone size, for docs/ADMIN.md (seeded data, headless Chromium).
screenshots: install system-deps
	POOLER_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_admin_screens.py -k screenshots

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

check: lint

# wrk (load generator) and nginx-light (a fixed-response upstream) for `make bench` only; never in CI.
bench-deps:
	@command -v wrk >/dev/null && { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q wrk nginx-light >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q wrk nginx-light >/dev/null; }; }

bench: install bench-deps
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
