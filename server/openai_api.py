"""The OpenAI-compatible face: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``model`` names a collection; ``messages`` is the conversation (the last user message is the question, earlier
turns are the history). The reply's ``content`` carries ``[n]`` markers, and the response has an extra ``sources``
field (the official ``openai`` client shows it as ``completion.model_extra["sources"]``): every source the model was
given, with ``n``, ``cited``, ``source``, ``file``, ``page``, ``chunk_id``, ``score`` and ``text``. With
``"stream": true`` the reply is standard ``chat.completion.chunk`` server-sent events; the last chunk (the one with
``finish_reason``) carries ``sources``, before ``data: [DONE]``. With citation verification on, both also carry
``verified_answer`` and ``sentences`` (``verification_of``); ``sources[].cited`` are the verified citations.

Any front-end with an "OpenAI connection" works with base URL ``http://HOST:PORT/v1`` and an API key.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.errors import RagError
from rag.policy import Principal, readable, retrieval_filters
from rag.prompt import REFUSAL, approx_tokens
from rag.types import Answer, Message, ScoredChunk
from server.auth import caller, open_collection
from server.parts import BadRequest

router = APIRouter(tags=["OpenAI-compatible"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") in ("text", "input_text"))
        return self.content or ""


class SourceFilters(BaseModel):
    """Narrow retrieval further (access is decided by the server, never by these)."""

    model_config = ConfigDict(extra="forbid")
    source: list[str] | None = None
    file_type: list[str] | None = None
    page: list[int] | None = None

    def to_filters(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ChatRequest(BaseModel):
    # Front-ends send many OpenAI fields (top_p, n, user, ...): accepted and ignored unless used below.
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="the collection to answer from (GET /v1/models lists yours)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    k: int | None = Field(None, ge=1, le=50, description="sources given to the model (default: settings)")
    filters: SourceFilters | None = None


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[Message]]:
    """(question, history): the last user message, and the user/assistant turns before it."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise BadRequest("messages must end with a non-empty user message (the question)")
    history = [Message(role=m.role, content=m.text()) for m in turns[:-1]]  # type: ignore[arg-type]
    return turns[-1].text().strip(), history


def source_json(n: int, hit: ScoredChunk, cited: bool) -> dict[str, Any]:
    c = hit.chunk
    return {"n": n, "cited": cited, "source": c.source, "file": PurePath(c.source).name, "page": c.page,
            "where": c.page_label(), "section": c.section, "chunk_id": c.id, "score": round(float(hit.score), 6),
            "text": c.text}  # fmt: skip


def sources_of(answer: Answer) -> list[dict[str, Any]]:
    cited = {c.n for c in answer.citations}
    return [source_json(n, hit, n in cited) for n, hit in enumerate(answer.retrieved, start=1)]


def verification_of(answer: Answer) -> dict[str, Any]:
    """What citation verification (``rag.verify``) made of the model's text: the content of a reply is the model's
    own text (a stream cannot take back what it sent); ``verified_answer`` is the checked text (the refusal when no
    sentence was supported) and ``sentences`` the per-sentence attribution, as ``rag ask --json`` gives them."""
    if not answer.sentences:
        return {}
    return {
        "verified_answer": answer.text,
        "sentences": [{"text": s.text, "citations": list(s.citations), "supported": s.supported, "score": s.score,
                       "model_citations": list(s.model_citations)} for s in answer.sentences],
    }  # fmt: skip


def _content(answer: Answer) -> str:
    return answer.model_text if answer.model_text is not None else answer.text


def _usage(answer: Answer, question: str) -> dict[str, int]:
    prompt = approx_tokens(question) + sum(approx_tokens(h.chunk.text) for h in answer.retrieved) + 200
    completion = approx_tokens(answer.text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _refusal(question: str) -> Answer:
    return Answer(question=question, text=REFUSAL, citations=(), retrieved=(), timings={})


def _record(request: Request, answer: Answer, usage: dict[str, int]) -> None:
    m = request.app.state.metrics
    for stage, seconds in answer.timings.items():
        m.stage.labels(stage).observe(seconds)
    m.tokens.labels("prompt").inc(usage["prompt_tokens"])
    m.tokens.labels("completion").inc(usage["completion_tokens"])


@router.post("/v1/chat/completions", summary="Answer from a collection, with citations (OpenAI-compatible)")
def chat_completions(body: ChatRequest, request: Request, who: Principal = Depends(caller)) -> Any:  # noqa: B008
    parts = request.app.state.parts
    open_collection(who, parts, body.model)
    question, history = split_messages(body.messages)
    filters = retrieval_filters(who, body.filters.to_filters() if body.filters else None)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    empty = parts.collection(body.model).store.count() == 0
    pipeline = parts.pipeline(body.model)
    if body.stream:
        parts_iter: Iterator[Any] = (
            iter([REFUSAL, _refusal(question)]) if empty
            else pipeline.stream(question, history=history, k=body.k, filters=filters)
        )
        first = next(parts_iter)  # retrieval and the LLM's first token happen here: errors still get a status
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        events = _events(request, body.model, completion_id, created, question, first, parts_iter, include_usage)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    answer = _refusal(question) if empty else pipeline.answer(question, history=history, k=body.k, filters=filters)
    usage = _usage(answer, question)
    _record(request, answer, usage)
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _content(answer)}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": usage,
        "sources": sources_of(answer),
        **verification_of(answer),
        **({"standalone_question": answer.standalone_question} if answer.standalone_question else {}),
    }  # fmt: skip


def _events(request: Request, model: str, cid: str, created: int, question: str, first: Any,
            rest: Iterator[Any], include_usage: bool) -> Iterator[str]:  # fmt: skip
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    answer: Answer | None = None
    try:
        item = first
        while True:
            if isinstance(item, Answer):
                answer = item
            elif item:
                yield chunk({"content": item})
            item = next(rest, None)
            if item is None:
                break
    except RagError as e:  # mid-stream: the status is sent already; say it in the stream, as OpenAI does
        from server.app import rag_error_response

        yield f"data: {bytes(rag_error_response(e).body).decode()}\n\n"
        yield "data: [DONE]\n\n"
        return
    if answer is None:
        answer = _refusal(question)
    usage = _usage(answer, question)
    _record(request, answer, usage)
    yield chunk({}, "stop", sources=sources_of(answer), **verification_of(answer))
    if include_usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": usage}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _model(name: str, parts: Any) -> dict[str, Any]:
    path = parts.collection(name).root
    return {"id": name, "object": "model", "created": int(path.stat().st_mtime), "owned_by": "rag"}


@router.get("/v1/models", summary="The collections you may read (each is a 'model')")
def list_models(request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    parts = request.app.state.parts
    return {"object": "list", "data": [_model(n, parts) for n in readable(who, parts.names())]}


@router.get("/v1/models/{model}", summary="One collection you may read")
def get_model(model: str, request: Request, who: Principal = Depends(caller)) -> dict[str, Any]:  # noqa: B008
    parts = request.app.state.parts
    open_collection(who, parts, model)
    return _model(model, parts)
