# Two commands do everything on a fresh machine:  make demo   and   make test
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STATE := $(CURDIR)/.state
SYSTEM_PACKAGES := openssh-server gnupg chromium
export AIRFLOW_HOME := $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(STATE)/airflow/airflow.db
export GX_ANALYTICS_ENABLED := False

.PHONY: demo test check setup system lint clean

## demo: set up, build the shop, check the register, run every feed against the sandbox vendors
demo: setup
	$(PY) -m sandbox.demo --state-dir $(STATE)

## test: set up, then the whole test suite, then the end-to-end tests against a running Airflow (what CI runs)
test: setup
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory e2e

## check: the test suite without the end-to-end run (quicker while developing)
check: setup
	$(PY) -m pytest -q

setup: system $(VENV)/.installed

# System packages the sandbox vendors need (OpenSSH server, GnuPG); installed only when missing.
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.9
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements-dev.txt -c constraints.txt
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

lint: setup
	$(PY) -m vendorprivacy policy check

clean:
	rm -rf $(STATE)

# ---------------------------------------------------------------------------------------------------------
# A running Airflow (API server, scheduler, DAG processor, triggerer) on PostgreSQL with the sandbox vendors,
# end-to-end tests against it, the Celery variant and the fault suite. See docs/deployment.md.
.PHONY: up down e2e celery-e2e faults chromium celery-deps
UP_STATE := $(STATE)/up
E2E_ENV := VENDORPRIVACY_E2E=1

## up: Airflow 3 on PostgreSQL (database airflow_up, recreated) at http://127.0.0.1:8080, user admin
up: setup
	$(PY) scripts/airflow_up.py up --state-dir $(UP_STATE)

## down: stop everything `make up` started (no process left behind)
down:
	@if [ -x $(PY) ]; then $(PY) scripts/airflow_up.py down --state-dir $(UP_STATE); else echo "nothing to stop"; fi

## e2e: end-to-end tests against a running Airflow (LocalExecutor, PostgreSQL), incl. headless Chromium
e2e: setup chromium
	$(E2E_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/e2e

## celery-e2e: the same end-to-end tests with the CeleryExecutor (Redis 127.0.0.1:6379, two workers)
celery-e2e: setup chromium celery-deps
	$(E2E_ENV) VENDORPRIVACY_E2E_EXECUTOR=CeleryExecutor $(PY) -m pytest -q -p no:cacheprovider tests/e2e

## faults: the fault suite (loopback only, every fault bounded in time); prints fault | expected | observed
faults: setup
	VENDORPRIVACY_FAULTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/faults

chromium:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The Celery executor's packages are not in requirements.txt (LocalExecutor is the default deployment here).
celery-deps: setup
	$(VENV)/bin/uv pip install -q --python $(PY) -r scripts/celery-requirements.txt -c constraints.txt
