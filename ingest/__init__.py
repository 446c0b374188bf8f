"""Ingestion: files -> Documents (``load``) -> Chunks (``chunk``) -> vectors in a store (``pipeline``), with a
manifest (``manifest``) that makes runs incremental, idempotent and resumable. ``rag ingest`` is ``cli``."""
