# infinitic-py — every setup step lives here; a fresh clone needs only python3, java 17+ and mvn.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PULSAR := deploy/pulsar-standalone/pulsar.sh
WITH_BROKER := deploy/pulsar-standalone/with-broker.sh
PYTEST_ARGS ?=

.PHONY: help install lint unit integration test run demo bench pulsar-up pulsar-down pulsar-status deploy-check clean

help:
	@echo "make run          worker + demo dispatch (memory:// unless PULSAR_URL is set; PULSAR=1 starts the local broker)"
	@echo "make test         lint + deploy checks + unit + integration tests against a real Pulsar broker"
	@echo "make bench        benchmarks against the real broker, ratios to a raw pulsar-client baseline"
	@echo "make pulsar-up    start the local standalone broker (idempotent); make pulsar-down stops it"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Starts the broker when PULSAR_URL is unset and nothing answers on 127.0.0.1:6650; stops what it started.
integration: install
	$(WITH_BROKER) $(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: lint deploy-check
	$(WITH_BROKER) $(BIN)/pytest tests $(PYTEST_ARGS)

deploy-check: install
	deploy/validate.sh

run: install
ifeq ($(PULSAR),1)
	$(WITH_BROKER) $(BIN)/python -m examples.demo
else
	$(BIN)/python -m examples.demo
endif

bench: install
	$(WITH_BROKER) $(BIN)/python -m benchmarks.run

pulsar-up:
	$(PULSAR) up

pulsar-down:
	$(PULSAR) down

pulsar-status:
	$(PULSAR) status

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
