"""The FastAPI app: ``create_app(settings)``; ``rag serve`` runs it under uvicorn.

Every response carries an ``X-Request-ID`` (the caller's, when it sends a sane one) that also prefixes every log line
of that request. Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so OpenAI
clients raise their usual exceptions. Request bodies are capped (``server.max_json_kb``; uploads
``server.max_body_mb``) before they are read. ``/healthz`` and ``/metrics`` (Prometheus) need no key; the rest of
``/v1`` does when sign-in is on (``rag.policy.auth_required``). OpenAPI docs at ``/docs``.

Example::

    >>> app = create_app(Settings(), auth=False)  # doctest: +SKIP
    $ uvicorn --factory server.app:app_from_env   # what `rag serve` does, with host/port from settings
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.config import Settings
from rag.errors import (
    CollectionEmpty,
    CollectionNotFound,
    ConfigError,
    IngestError,
    LLMError,
    RagError,
    StoreError,
    UsageError,
)
from rag.identity import AuthError, IdentityError, IdentityStore
from rag.policy import AccessDenied
from server.jobs import JobRunner
from server.metrics import Metrics
from server.parts import BadRequest, NotFound, Parts

log = logging.getLogger("rag.server")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_RID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UPLOAD_PATH = re.compile(r"^/v1/collections/[^/]+/documents/?$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# ----------------------------------------------------------------------------------------------------- errors
def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    return JSONResponse(error_body(message, type_, code, param), status_code=status, headers=headers)


_ERRORS: list[tuple[type[Exception], int, str, str | None]] = [  # most specific first
    (AuthError, 401, "invalid_request_error", "invalid_api_key"),
    (AccessDenied, 403, "permission_error", "permission_denied"),
    (NotFound, 404, "invalid_request_error", "model_not_found"),
    (CollectionNotFound, 404, "invalid_request_error", "model_not_found"),
    (CollectionEmpty, 404, "invalid_request_error", "collection_empty"),
    (IdentityError, 400, "invalid_request_error", "invalid_identity_request"),
    (BadRequest, 400, "invalid_request_error", "invalid_request"),
    (IngestError, 400, "invalid_request_error", "ingest_error"),
    (UsageError, 400, "invalid_request_error", "invalid_request"),
    (LLMError, 502, "api_error", "llm_unavailable"),
    (StoreError, 503, "api_error", "store_unavailable"),
    (ConfigError, 500, "server_error", "config_error"),
    (RagError, 500, "server_error", None),
]


def rag_error_response(e: RagError) -> JSONResponse:
    for cls, status, type_, code in _ERRORS:
        if isinstance(e, cls):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            # the core's not-found names the server's data directory: a caller gets the name only
            message = f"no collection {e.name!r}" if isinstance(e, CollectionNotFound) else str(e)
            return error_response(status, message, type_, code, headers=headers)
    raise AssertionError("unreachable: RagError is in the table")  # pragma: no cover


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag(request: Request, e: RagError) -> JSONResponse:
        if isinstance(e, AuthError):
            request.app.state.metrics.auth_failures.inc()
        return rag_error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        return error_response(400, f"{param + ': ' if param else ''}{first.get('msg')}", "invalid_request_error",
                              "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if e.status_code < 500 else "server_error"
        return error_response(e.status_code, str(e.detail), type_, None, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, f"internal error (request id {request_id.get()}); see the server log",
                              "server_error", "internal_error")


# ------------------------------------------------------------------------------------------------- middleware
class RequestContext:
    """Request id, body-size limit, access log line and metrics for every request (pure ASGI: streams stay streams)."""

    def __init__(self, app: Any, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.max_json = settings.server.max_json_kb * 1024
        self.max_upload = int(settings.server.max_body_mb * 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _RID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        start = time.perf_counter()
        status = {"code": 500}
        limit = self.max_upload if UPLOAD_PATH.match(scope.get("path", "")) else self.max_json

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = 1
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                await _too_large(limit, send_with_id)
                return
            seen = {"n": 0}

            async def limited_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen["n"] += len(message.get("body", b""))
                    if seen["n"] > limit:
                        raise _BodyTooLarge()
                return message

            try:
                await self.app(scope, limited_receive, send_with_id)
            except _BodyTooLarge:
                await _too_large(limit, send_with_id)
            except Exception:  # a bug: log it with its request id, answer in OpenAI's shape if nothing was sent
                log.exception("unhandled error")
                if status.get("started"):
                    raise
                body = error_response(500, f"internal error (request id {rid}); see the server log", "server_error",
                                      "internal_error")  # fmt: skip
                await send_with_id({"type": "http.response.start", "status": 500, "headers": body.raw_headers})
                await send_with_id({"type": "http.response.body", "body": body.body})
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status["code"])).inc()
            self.metrics.latency.labels(method, route).observe(seconds)
            log.info("%s %s %s %.1f ms", method, scope.get("path"), status["code"], seconds * 1000)
            request_id.reset(token)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, send: Send) -> None:
    body = JSONResponse(
        error_body(f"request body larger than {limit // 1024} KB", "invalid_request_error", "request_too_large"),
        status_code=413,
    )
    await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
    await send({"type": "http.response.body", "body": body.body})


def install_log_request_ids() -> None:
    """Give every log record a ``request_id`` attribute (``-`` outside a request), whoever logs it."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_rag_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    factory._rag_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


# ----------------------------------------------------------------------------------------------------- the app
def create_app(
    settings: Settings,
    *,
    auth: bool,
    parts: Parts | None = None,
    identity: IdentityStore | None = None,
) -> FastAPI:
    """The API over ``settings``. ``auth`` False: every caller is the local operator (loopback, one user)."""
    from server import documents, openai_api

    install_log_request_ids()
    parts = parts or Parts(settings)
    identity = identity or (IdentityStore(settings.identity_path) if auth else None)
    metrics = Metrics()
    jobs = JobRunner(settings.server.ingest_workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        jobs.shutdown()
        parts.close()

    app = FastAPI(
        title="rag",
        summary="Chat with your private documents, with citations: OpenAI-compatible chat, search, documents.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.parts = parts
    app.state.identity = identity
    app.state.auth = auth
    app.state.metrics = metrics
    app.state.jobs = jobs
    import anyio

    app.state.retrieval_limiter = anyio.CapacityLimiter(settings.server.retrieval_threads)
    _install_error_handlers(app)
    app.include_router(openai_api.router)
    app.include_router(documents.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness: 200 while the process serves requests")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "auth": auth}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestContext, settings=settings, metrics=metrics)  # type: ignore[arg-type]
    return app
