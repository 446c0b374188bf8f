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
	$(VENV)/bin/python -m pytest -q tests
	$(VENV)/bin/python -m evals.ci --out test-artifacts/eval-ci

lint:
	$(VENV)/bin/ruff check rag ingest evals ui tests benchmarks
	$(VENV)/bin/mypy rag
