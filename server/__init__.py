"""``rag serve``: the HTTP API (FastAPI). OpenAI-compatible chat with citations, search, documents, ingestion jobs.

    server/app.py        create_app(): middleware (request ids, size limits, metrics), error shape, routes
    server/parts.py      the server's open collections (stores, pipelines) and shared models, built once
    server/auth.py       who is calling: an API key -> rag.policy.Principal (or the local operator when auth is off)
    server/openai_api.py POST /v1/chat/completions, GET /v1/models
    server/documents.py  POST /v1/search, documents per collection, ingestion jobs
    server/jobs.py       background ingestion (a bounded thread pool) with a status per job
    server/metrics.py    Prometheus metrics
    server/cli.py        rag serve, rag users ..., rag keys ...
"""
