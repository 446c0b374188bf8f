# The two commands (see README): `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV ?= .venv
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test lint bench

setup:
	bash .ci/setup

demo: setup
	$(VENV)/bin/rag demo

test:
	bash .ci/setup --browser
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/python -m pytest -q tests

lint:
	$(VENV)/bin/ruff check rag ingest evals ui server tests benchmarks
	$(VENV)/bin/mypy rag server
	$(VENV)/bin/lint-imports
