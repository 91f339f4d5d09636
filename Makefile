# leadpact — two commands: `make run` (everything embedded) and `make test` (the whole suite).
# Both set up what they need: the venv, pinned packages, and the Debian tools some tests use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PACKAGES := shared services/intake services/scoring services/sla-monitor services/feedback services/crm-sync
EDITABLE := $(foreach p,$(PACKAGES),$(if $(wildcard $(p)/pyproject.toml),-e $(p)))
MYPY_TARGETS := shared/leadpact $(patsubst %/__init__.py,%,$(wildcard services/*/*/__init__.py))
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint typecheck unit test-faults bench system-deps compose-check clean help

help:
	@echo "make run    start all five services embedded (in-memory bus, SQLite under ./var)"
	@echo "make test   lint, type-check and run every test (starts its own tansu broker)"
	@echo "make bench  run the benchmarks and write bench/results/*.json"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: $(BIN)/python requirements.txt $(wildcard $(addsuffix /pyproject.toml,$(PACKAGES)))
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps $(EDITABLE)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/leadpact run

# Debian tools used by some tests: promtool (rules tests), amtool (Alertmanager config),
# prometheus (dashboard queries), chromium (report pages), docker-compose (config check).
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy $(MYPY_TARGETS)

test: $(VENV)/.dev system-deps lint typecheck
	$(BIN)/pytest

# The fault-injection tests alone (multi-process over tansu and PostgreSQL); `make test`
# runs them too, with everything else.
test-faults: $(VENV)/.dev
	$(BIN)/pytest -m faults

bench: $(VENV)/.dev
	$(BIN)/python -m bench

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
