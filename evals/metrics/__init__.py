"""Metrics, each a small function over lists, checked against its reference implementation in tests/evals."""
