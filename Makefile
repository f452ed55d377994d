# botfleet — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint services unit bench bench-small bench-large soak clean sample-bot openapi \
	deploy-tools image test-deploy

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Serve on the embedded default (SQLite under ./data/) on 127.0.0.1:3001.
run: install
	$(BIN)/botfleet db upgrade
	$(BIN)/botfleet serve --no-migrate

## Install and start what the tests need (PostgreSQL, Docker, promtool, Chromium), lint, test.
test: install services lint
	$(BIN)/pytest $(PYTEST_ARGS)

services:
	bash scripts/ensure-services.sh

## mmdebstrap, docker-compose, systemd-analyze, promtool: what the deploy files need (Debian's).
deploy-tools:
	bash scripts/ensure-deploy-tools.sh

## The server image, botfleet:dev. BASE_IMAGE=python:3.11-slim builds on the public slim image;
## the default builds on the local Debian base (deploy/docker/local-base.sh), wheels from the host.
image: install deploy-tools
	bash deploy/docker/build.sh server

## The deploy tests: the images built and started, the compose and swarm stacks up, the systemd
## unit verified (minutes; BENCHMARKS.md). CI runs it after `make test`.
test-deploy: install services deploy-tools
	$(BIN)/pytest -m deploy tests/deploy $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check --no-cache botfleet tests bench scripts
	$(BIN)/ruff format --no-cache --check botfleet
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

sample-bot:
	bash examples/sample-bot/build.sh

## The committed OpenAPI document (the test suite checks it is the served one).
openapi: install
	$(BIN)/botfleet openapi docs/openapi.json

bench: install services
	$(BIN)/python -m bench.all

bench-small: install services
	BENCH_SCALE=small $(BIN)/python -m bench.all

## How cost grows up to the 4M-bot store (bench.scaling at 250k, 1M and 4M bots; tens of minutes).
bench-large: install services
	BENCH_SCALE=large $(BIN)/python -m bench.all scaling

## The reliability and security scenarios, longer and bigger (docs/reliability.md publishes the
## figures they write to test-artifacts/reliability-figures.jsonl).
soak: install services
	mkdir -p test-artifacts && rm -f test-artifacts/reliability-figures.jsonl
	BOTFLEET_SOAK=1 BOTFLEET_FIGURES=$(CURDIR)/test-artifacts/reliability-figures.jsonl \
		$(BIN)/pytest tests/reliability tests/security --timeout 1800 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
