# The three commands: `make demo`, `make test` and `make up` (both first run the idempotent `make setup`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Servers and tools the tests, demo and benchmarks start: OpenSSH sshd, rclone (bench), docker-compose
# (validates docker-compose.yaml offline), Chromium (console end-to-end test).
APT_PACKAGES := openssh-server openssh-client rclone docker-compose chromium chromium-driver fonts-ipafont-gothic poppler-utils

.PHONY: setup demo test bench lint clean system-packages up down

setup: system-packages $(VENV)/.installed

system-packages:
	@scripts/ensure-system-packages.sh $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	PYTHONPATH=tests $(PY) -m devtools.demo

test: setup
	scripts/test.sh

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf var $(VENV)

# The production-shaped stack on this machine (no Docker): Airflow on Celery, PostgreSQL, Redis, demo servers.
up: setup
	scripts/ensure-services.sh >/dev/null
	PYTHONPATH=tests $(PY) -m devtools.up start

down:
	PYTHONPATH=tests $(PY) -m devtools.up stop
