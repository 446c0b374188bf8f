"""Search, documents per collection, and ingestion jobs.

    POST   /v1/search                                    {"model"|"collection", "query", "k", "mode", ...}
    GET    /v1/collections/{collection}/documents        the documents you may see
    POST   /v1/collections/{collection}/documents        multipart files (+ groups): 202 and an ingestion job
    DELETE /v1/collections/{collection}/documents/{id}   remove one (editors)
    POST   /v1/collections/{collection}/folders          {"path"}: index a server folder (admins, allowed roots)
    GET    /v1/jobs/{id}                                 a job's state and, at the end, its ingest summary

Uploads are saved under ``<data_dir>/uploads/<collection>/<user>/`` with sanitised names (``../../x.md`` lands
inside that folder as ``x.md``): one user's upload never replaces another's document.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.filenames import sanitize_filename
from rag.policy import Principal, can, folder_allowed, parse_groups, require, retrieval_filters
from server.auth import caller, open_collection
from server.jobs import Job
from server.openai_api import SourceFilters
from server.parts import BadRequest, NotFound, Parts

router = APIRouter(tags=["documents"])


def doc_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------------- search
class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=4000)
    model: str | None = Field(None, description="the collection (as in chat); or use 'collection'")
    collection: str | None = None
    k: int | None = Field(None, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    rerank: bool | None = None
    filters: SourceFilters | None = None
    explain: bool = False


@router.post("/v1/search", summary="The chunks most relevant to a query (the schema of `rag search --json`)")
async def search(body: SearchRequest, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    import functools

    import anyio

    # Retrieval is CPU-bound: a few threads (server.retrieval_threads) take requests in arrival order, instead of
    # 40 threads fighting over 2 cores and the GIL (which made the slowest requests 10x the median).
    return await anyio.to_thread.run_sync(functools.partial(_search, body, request, who),
                                          limiter=request.app.state.retrieval_limiter)  # fmt: skip


def _search(body: SearchRequest, request: Request, who: Principal) -> dict[str, Any]:
    parts: Parts = request.app.state.parts
    collection = body.collection or body.model
    if not collection:
        raise BadRequest("name the collection: 'collection' (or 'model')")
    open_collection(who, parts, collection)
    if parts.collection(collection).store.count() == 0:
        return {"hits": []}
    filters = retrieval_filters(who, body.filters.to_filters() if body.filters else None)
    hits = parts.pipeline(collection).retrieve(body.query, k=body.k, filters=filters, mode=body.mode,
                                               rerank=body.rerank)  # fmt: skip
    return {"hits": [
        {"source": h.chunk.source, "page": h.chunk.page, "section": h.chunk.section, "ocr": h.chunk.ocr,
         "ocr_confidence": h.chunk.ocr_confidence, "chunk_id": h.chunk.id, "score": h.score, "text": h.chunk.text,
         **({"stages": dict(h.stages)} if body.explain else {})}
        for h in hits
    ]}  # fmt: skip


# -------------------------------------------------------------------------------------------------- documents
def visible_documents(who: Principal, parts: Parts, collection: str) -> dict[str, dict[str, Any]]:
    """source -> {chunks, groups} of the documents ``who`` may see (the same access filter as retrieval)."""
    docs: dict[str, dict[str, Any]] = {}
    for chunk in parts.collection(collection).store.chunks(retrieval_filters(who)):
        d = docs.setdefault(chunk.source, {"chunks": 0, "groups": list(chunk.groups)})
        d["chunks"] += 1
    return docs


@router.get("/v1/collections/{collection}/documents", summary="The documents of a collection that you may see")
def list_documents(collection: str, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    parts: Parts = request.app.state.parts
    open_collection(who, parts, collection)
    docs = visible_documents(who, parts, collection)
    return {"object": "list", "data": [
        {"id": doc_id(s), "file": Path(s).name, "source": s, "chunks": d["chunks"], "groups": d["groups"]}
        for s, d in sorted(docs.items())
    ]}  # fmt: skip


def upload_folder(parts: Parts, collection: str, user: str) -> Path:
    return parts.collection(collection).uploads_dir / sanitize_filename(user)


def _suffix_ok(name: str, include: list[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in include)


@router.post("/v1/collections/{collection}/documents", status_code=202,
             summary="Upload files; they are indexed by a background job (poll GET /v1/jobs/{id})")  # fmt: skip
def upload_documents(
    collection: str,
    request: Request,
    files: list[UploadFile] = File(..., description="the documents (PDF, Markdown, text, HTML)"),  # noqa: B008
    groups: str = Form("", description="access groups of these documents, e.g. hr,finance; empty: public"),
    who: Principal = Depends(caller),  # noqa: B008
) -> JSONResponse:
    parts: Parts = request.app.state.parts
    open_collection(who, parts, collection, "write")
    try:
        labels = parse_groups(groups)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    include = parts.settings.ingest.include
    target = upload_folder(parts, collection, who.name)
    saved: list[Path] = []
    rejected: list[dict[str, str]] = []
    for f in files:
        name = sanitize_filename(f.filename or "")
        path = target / name
        if path.resolve().parent != target.resolve():  # whatever the sanitiser missed stays inside
            rejected.append({"file": f.filename or "", "reason": "unsafe file name"})
            continue
        if not _suffix_ok(name, include):
            rejected.append({"file": f.filename or "", "reason": f"unsupported type; allowed: {', '.join(include)}"})
            continue
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{uuid.uuid4().hex}.part"
        with tmp.open("wb") as out:
            shutil.copyfileobj(f.file, out, 1 << 20)
        os.replace(tmp, path)
        saved.append(path)
    if not saved:
        raise BadRequest("no file could be accepted: " + "; ".join(f"{r['file']}: {r['reason']}" for r in rejected))
    job = start_ingest(request, who, collection, saved, labels)
    return JSONResponse({"job": job.to_dict(), "saved": [p.name for p in saved], "rejected": rejected},
                        status_code=202)


class FolderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096)
    groups: str = ""


@router.post("/v1/collections/{collection}/folders", status_code=202,
             summary="Index a folder of the server (admins; only below RAG_INGEST__ALLOWED_ROOTS)")  # fmt: skip
def index_folder(collection: str, body: FolderRequest, request: Request,
                 who: Principal = Depends(caller)) -> JSONResponse:  # noqa: B008  # fmt: skip
    parts: Parts = request.app.state.parts
    require(who, "admin")
    folder = folder_allowed(body.path, parts.settings.ingest.allowed_roots)
    if not folder.exists():
        raise BadRequest(f"no such file or folder: {body.path}")
    try:
        labels = parse_groups(body.groups)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    job = start_ingest(request, who, collection, [folder], labels)
    return JSONResponse({"job": job.to_dict()}, status_code=202)


def start_ingest(request: Request, who: Principal, collection: str, paths: list[Path], groups: tuple[str, ...]) -> Job:
    parts: Parts = request.app.state.parts
    metrics = request.app.state.metrics
    parts.settings_for(collection)  # validates the name

    def work(job: Job) -> dict[str, Any]:
        from ingest.pipeline import IngestProgress, ingest_paths

        def progress(p: IngestProgress) -> None:
            job.files_total, job.files_done = p.files_total, p.files_done

        # the collection's own wiring: the job writes into the store the requests read (kept open, flushed)
        summary = ingest_paths(paths, parts.wiring(collection), groups=groups, progress=progress, keep_open=True)
        for outcome in ("new", "changed", "unchanged"):
            metrics.ingest_files.labels(outcome).inc(getattr(summary, outcome))
        metrics.ingest_files.labels("failed").inc(len(summary.failed))
        metrics.ingest_chunks.inc(summary.chunks_added)
        return summary.to_dict()

    return request.app.state.jobs.submit(collection, who.name, work,
                                         on_done=lambda j: metrics.ingest_jobs.labels(j.state).inc())


@router.get("/v1/jobs/{job_id}", summary="An ingestion job: state, progress, and the summary when done")
def get_job(job_id: str, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    job = request.app.state.jobs.get(job_id)
    if job is None or (job.owner != who.name and not who.is_admin):
        raise NotFound(f"no job {job_id!r}")  # someone else's job looks like none
    return job.to_dict()


@router.delete("/v1/collections/{collection}/documents/{document_id}",
               summary="Remove a document from the index (editors)")  # fmt: skip
def delete_document(collection: str, document_id: str, request: Request,
                    who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008  # fmt: skip
    parts: Parts = request.app.state.parts
    open_collection(who, parts, collection)
    require(who, "write", collection)
    source = next((s for s in visible_documents(who, parts, collection) if doc_id(s) == document_id), None)
    if source is None:
        raise NotFound(f"no document {document_id!r} in {collection!r}")
    removed = remove_document(parts, collection, source)
    uploads = parts.collection(collection).uploads_dir.resolve()
    if uploads in Path(source).resolve().parents:
        Path(source).unlink(missing_ok=True)  # a deleted upload is gone, not re-indexed by the next job
    return {"id": document_id, "object": "document.deleted", "deleted": True, "chunks_removed": removed}


def remove_document(parts: Parts, collection: str, source: str) -> int:
    c = parts.collection(collection)
    removed = c.delete_document(source)  # manifest, store and keyword index, in step
    c.flush()
    return removed


__all__ = ["can", "router"]


# ------------------------------------------------------------------------------------------------------ admin
class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    name: str = Field("default", max_length=64)


@router.get("/v1/admin/users", tags=["admin"], summary="Users with roles, groups and grants (admins)")
def admin_users(request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    require(who, "admin")
    ids = request.app.state.identity
    if ids is None:
        return {"object": "list", "data": []}
    return {"object": "list", "data": [
        {"name": u.name, "role": u.role, "groups": list(u.groups), "disabled": u.disabled,
         "grants": {c: lvl for _, c, lvl in ids.grants(u.name)}}
        for u in ids.users()
    ]}  # fmt: skip


@router.post("/v1/admin/keys", tags=["admin"], status_code=201,
             summary="Create an API key for a user (admins); the key is in this response only")  # fmt: skip
def admin_create_key(body: KeyRequest, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    require(who, "admin")
    ids = request.app.state.identity
    if ids is None:
        raise BadRequest("sign-in is off: there are no keys to manage")
    key = ids.create_key(body.user, body.name)
    return {"id": key.id, "user": key.user, "name": key.name, "key": key.secret}


@router.delete("/v1/admin/keys/{key_id}", tags=["admin"], summary="Revoke an API key (admins)")
def admin_revoke_key(key_id: str, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    require(who, "admin")
    ids = request.app.state.identity
    if ids is None or not ids.revoke_key(key_id):
        raise NotFound(f"no active key {key_id!r}")
    return {"id": key_id, "revoked": True}
