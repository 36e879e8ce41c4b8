# CLS Backend developer tasks. `make` alone lists them.
#
# Variables (override on the command line, e.g. `make test PYTEST_ARGS='-k compose -x'`):
#   PYTHON          interpreter used to create the venv (must be >= 3.11)   [python3]
#   VENV            virtualenv directory                                    [.venv]
#   PYTEST_ARGS     extra arguments for pytest                              []
#   PYTEST_RC_FILE  if set, `make test` writes pytest's exit code there (used by .ci/run)
#   MUTANTS_ARGS    extra arguments for scripts/check_mutations.py, e.g. '--only relay' []

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
PYTEST_RC_FILE ?=
MUTANTS_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.cls-installed
# Paths checked by the linters; only those that exist (bench/ arrives later).
LINT_PATHS := $(wildcard api_service cls_core cls_runtime event_jobs status_ingester reconciler_stub shared_models bench scripts tests)

.PHONY: help venv services broker-users run test test-quick lint fmt bench mutants clean distclean

help: ## Show this help
	@echo "CLS Backend — make targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PYTHON=$(PYTHON) VENV=$(VENV) PYTEST_ARGS='$(PYTEST_ARGS)'"

venv: $(STAMP) ## Create .venv if missing; pip install -e '.[dev]' when pyproject.toml changed

# Re-run only when pyproject.toml is newer than the stamp (or the venv is missing/broken).
$(STAMP): pyproject.toml
	@if ! $(BIN)/python -c 'import sys' >/dev/null 2>&1; then \
		if ! command -v $(PYTHON) >/dev/null 2>&1; then \
			echo "error: $(PYTHON) not found; install Python >= 3.11 or pass PYTHON=/path/to/python3.11" >&2; \
			exit 1; \
		fi; \
		if ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
			echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); need >= 3.11 (pass PYTHON=...)" >&2; \
			exit 1; \
		fi; \
		echo "creating virtualenv $(VENV) with $$(command -v $(PYTHON))"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --upgrade pip; \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

services: ## Make sure Redis and RabbitMQ answer (starts the local servers if needed)
	@bash scripts/ensure_services.sh

broker-users: venv services ## Create the services' broker users and permissions (idempotent; rabbitmqctl)
	$(BIN)/python scripts/broker_users.py

run: venv services broker-users ## Run the stack as deployed: api_service, event_jobs, status_ingester, reconciler_stub (Ctrl-C stops)
	$(BIN)/python scripts/run_stack.py

test: venv services broker-users ## Run the test suite (PYTEST_ARGS='...' to pass options)
	@rc=0; $(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$(PYTEST_RC_FILE)" ]; then echo "$$rc" > "$(PYTEST_RC_FILE)"; fi; \
	if [ "$$rc" -eq 5 ]; then echo "make test: pytest collected no tests (exit code 5)" >&2; fi; \
	exit $$rc

test-quick: venv services broker-users ## The pure and in-process tests (the services in this process; not e2e, not slow)
	$(BIN)/pytest -p no:cacheprovider -m "not e2e and not slow" $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy, lint-imports (the package layering)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(LINT_PATHS)
	$(BIN)/lint-imports

fmt: venv ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv services broker-users ## Run the benchmarks (python -m bench; BENCH_QUICK=1 for a smoke run)
	@bash scripts/ensure_wrk.sh
	$(BIN)/python -m bench

mutants: venv services broker-users ## Remove each protection (tests/mutations/*.patch); its tests must fail
	$(BIN)/python scripts/check_mutations.py --baseline --markdown docs/mutation-results.md $(MUTANTS_ARGS)

clean: ## Remove caches and build artefacts (keeps the venv)
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .run *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the venv too
	rm -rf $(VENV)
