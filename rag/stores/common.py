"""What every store shares: vector checks (one cosine semantics: vectors are L2-normalised here, for every store),
batch de-duplication and the metadata sidecar that ties a collection to its embedding model."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import StoreError
from rag.types import Chunk, Vector

_FORMAT = 1


def check_vectors(chunks: Sequence[Chunk], vectors: Vector, dim: int) -> np.ndarray:
    """Validate an upsert batch and return the vectors as a float32 (n, dim) array, L2-normalised.

    Normalising here gives every store the same cosine semantics even when a caller forgets to normalise.
    """
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(chunks):
        raise StoreError(f"upsert needs one vector per chunk: {len(chunks)} chunks, vectors of shape {arr.shape}")
    if arr.shape[1] != dim:
        raise StoreError(
            f"vectors have dimension {arr.shape[1]} but this collection holds {dim}-d vectors: "
            "embed with the collection's model, or ingest into a new collection"
        )
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.where(norms == 0, 1.0, norms)


def check_query(vector: Vector, dim: int) -> np.ndarray:
    """A 1-D float32 query of the right dimension, L2-normalised."""
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise StoreError(f"query vector has dimension {q.shape[0]} but this collection holds {dim}-d vectors")
    n = float(np.linalg.norm(q))
    return q / n if n else q


def dedupe_batch(chunks: Sequence[Chunk], vectors: np.ndarray) -> tuple[list[Chunk], np.ndarray]:
    """Keep the last occurrence of each chunk id in one batch (what an upsert of them one by one would leave)."""
    last = {c.id: i for i, c in enumerate(chunks)}
    if len(last) == len(chunks):
        return list(chunks), vectors
    keep = sorted(last.values())
    return [chunks[i] for i in keep], vectors[keep]


def check_meta(path: Path, backend: str, dim: int, embedding_model: str) -> None:
    """Compare the sidecar written when the collection was created with what the caller embeds with.

    Raises ``StoreError`` on a model or dimension mismatch: mixing vectors of two models gives silent garbage.
    """
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read store metadata {path}: {e}; delete the collection folder and re-ingest") from e
    if meta.get("embedding_model") != embedding_model or int(meta.get("dim", -1)) != dim:
        raise StoreError(
            f"the {backend} collection at {path.parent} was built with embedding model "
            f"{meta.get('embedding_model')!r} (dim {meta.get('dim')}), not {embedding_model!r} (dim {dim}): "
            "use the same embedding model, pick another collection (RAG_COLLECTION), or delete it and re-ingest"
        )


def write_meta(path: Path, backend: str, dim: int, embedding_model: str) -> None:
    """Write the sidecar atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"backend": backend, "embedding_model": embedding_model, "dim": dim, "format": _FORMAT}))
    os.replace(tmp, path)
