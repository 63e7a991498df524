# Two commands do everything on a fresh machine:  make demo   and   make test
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STATE := $(CURDIR)/.state
SYSTEM_PACKAGES := openssh-server gnupg
export AIRFLOW_HOME := $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(STATE)/airflow/airflow.db
export GX_ANALYTICS_ENABLED := False

.PHONY: demo test setup system lint clean

## demo: set up, build the shop, check the register, run every feed against the sandbox vendors
demo: setup
	$(PY) -m sandbox.demo --state-dir $(STATE)

## test: set up, then run the whole test suite
test: setup
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
