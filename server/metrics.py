"""Prometheus metrics of one app (its own registry, so several apps in one process do not collide).

Labels are route templates (``/v1/collections/{collection}/documents``), never raw paths or collection names:
bounded cardinality, and nothing about the documents leaks through ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("rag_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("rag_http_request_seconds", "HTTP request latency (to the last byte)",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("rag_answer_stage_seconds", "time per answer stage (retrieve, generate, ...)",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("rag_llm_tokens", "LLM tokens (estimated: 4 characters a token)", ["kind"], registry=r)
        self.ingest_files = Counter("rag_ingest_files", "files processed by ingestion jobs", ["outcome"], registry=r)
        self.ingest_chunks = Counter("rag_ingest_chunks_added", "chunks added by ingestion jobs", registry=r)
        self.ingest_jobs = Counter("rag_ingest_jobs", "ingestion jobs finished", ["state"], registry=r)
        self.auth_failures = Counter("rag_auth_failures", "requests refused for missing or bad credentials",
                                     registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
