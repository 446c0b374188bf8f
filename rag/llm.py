"""The LLM client: any OpenAI-compatible chat server (vLLM in production, llama.cpp's server as the embedded default).

This is the only module that imports ``openai``. It adds what a RAG product needs on top of the SDK: the model
picked from ``/v1/models`` when none is configured, bounded retries with exponential backoff for failures that a
retry can fix (connection refused while a server starts, 429, 5xx), and every failure translated into an
``LLMError`` that says what to do.

Example::

    >>> from rag.config import LLMSettings
    >>> llm = OpenAICompatibleLLM(LLMSettings(), "http://127.0.0.1:8765/v1")  # cheap: nothing is contacted yet
    >>> "".join(llm.stream([Message("user", "Say hi")], max_tokens=5))  # doctest: +SKIP
    'Hi!'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from rag.config import LLMSettings
from rag.errors import LLMError
from rag.types import Completion, Message, TokenLogprob

T = TypeVar("T")

_BACKOFF_S = 0.5  # first retry delay; doubles each attempt (0.5, 1, 2, ...)
_BACKOFF_MAX_S = 8.0


class OpenAICompatibleLLM:
    """``LLMClient`` over ``/v1/chat/completions`` (vLLM, llama.cpp server, or any OpenAI-compatible endpoint)."""

    def __init__(self, settings: LLMSettings, base_url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self._model = settings.model
        self._client: Any = None
        self._sleep = sleep  # injectable so tests of the backoff don't wait

    # -- plumbing -------------------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.settings.api_key.get_secret_value() or "EMPTY",
                timeout=openai.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
                max_retries=0,  # retries are ours: bounded, logged in the error, and never after tokens were streamed
            )
        return self._client

    @property
    def model(self) -> str:
        """The configured model, or the first one the server lists (vLLM and llama.cpp serve one model each)."""
        if self._model is None:
            models = self._call(lambda: self.client.models.list(), what="list models")
            ids = [m.id for m in getattr(models, "data", None) or []]
            if not ids:
                raise LLMError(f"the LLM server at {self.base_url} serves no model: check how it was started")
            self._model = ids[0]
        return self._model

    def _translate(self, e: Exception, what: str) -> LLMError:
        import openai

        url = self.base_url
        if isinstance(e, openai.APITimeoutError):
            return LLMError(
                f"the LLM at {url} did not answer within {self.settings.timeout_s:g} s ({what}): the server is busy or "
                "the model is too slow for this machine; raise RAG_LLM__TIMEOUT_S, lower RAG_LLM__MAX_TOKENS, "
                "or use a smaller model"
            )
        if isinstance(e, openai.APIConnectionError):
            return LLMError(
                f"cannot reach LLM at {url}: is the vLLM server up? "
                "(start the embedded one with `rag serve-llm`, or set RAG_LLM__BASE_URL)"
            )
        if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
            return LLMError(f"the LLM at {url} refused the API key ({e.status_code}): set RAG_LLM__API_KEY")
        if isinstance(e, openai.NotFoundError):
            return LLMError(
                f"the LLM at {url} has no model {self._model!r} or no such endpoint ({what}): check RAG_LLM__MODEL "
                "(leave it unset to use the server's first model) and that the base URL ends in /v1"
            )
        if isinstance(e, openai.APIStatusError):
            detail = _short(getattr(e, "message", "") or str(e))
            return LLMError(f"the LLM at {url} answered HTTP {e.status_code} to {what}: {detail}")
        return LLMError(f"the LLM at {url} sent a reply this client cannot read ({what}): {_short(str(e))}")

    def _retryable(self, e: Exception) -> bool:
        import openai

        if isinstance(e, openai.APITimeoutError):
            return False  # a slow generation retried is just twice as slow: report it instead
        if isinstance(e, openai.APIConnectionError):
            return True  # refused/reset, e.g. a server still starting
        if isinstance(e, openai.APIStatusError):
            return e.status_code == 429 or e.status_code >= 500
        return False

    def _call(self, fn: Callable[[], T], *, what: str) -> T:
        """Run ``fn`` with bounded retries and backoff; any SDK failure becomes an ``LLMError``."""
        import openai

        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                return fn()
            except (openai.OpenAIError, ValueError, KeyError, TypeError, AttributeError) as e:
                if attempt + 1 < attempts and self._retryable(e):
                    self._sleep(min(_BACKOFF_S * 2**attempt, _BACKOFF_MAX_S))
                    continue
                err = self._translate(e, what)
                if attempt:
                    err = LLMError(f"{err} (after {attempt + 1} attempts)")
                raise err from e
        raise AssertionError("unreachable")

    def _params(self, messages: Sequence[Message], max_tokens: int | None, temperature: float) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            # max_tokens, not max_completion_tokens: llama.cpp's server ignores the latter and runs to the context end
            "max_tokens": max_tokens if max_tokens is not None else self.settings.max_tokens,
            "temperature": temperature,
        }

    # -- LLMClient ------------------------------------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_logprobs: int | None = None,
        n: int = 1,
    ) -> list[Completion]:
        """``n`` completions; with ``top_logprobs`` each carries the alternatives per generated token.

        Servers that ignore ``n`` (llama.cpp returns one choice) are asked again until there are ``n``.
        """
        params = self._params(messages, max_tokens, temperature)
        if top_logprobs:
            params.update(logprobs=True, top_logprobs=top_logprobs)
        out: list[Completion] = []
        while len(out) < n:
            extra = {"n": n - len(out)} if n - len(out) > 1 else {}

            def create(extra: dict[str, int] = extra) -> Any:
                return self.client.chat.completions.create(**params, **extra)

            reply = self._call(create, what="chat completion")
            want = n - len(out)
            choices = getattr(reply, "choices", None)
            if not choices:
                raise LLMError(
                    f"the LLM at {self.base_url} replied with no choices: is it an OpenAI-compatible server?"
                )
            out.extend(_completion(c, self.base_url) for c in choices[:want])
        return out

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int | None = None, temperature: float = 0.0
    ) -> Iterator[str]:
        """Text deltas as the server generates them. Retries happen only before the first delta."""
        import openai

        params = self._params(messages, max_tokens, temperature)
        response = self._call(lambda: self.client.chat.completions.create(**params, stream=True), what="streaming")
        try:
            for event in response:
                for choice in getattr(event, "choices", None) or []:
                    delta = getattr(getattr(choice, "delta", None), "content", None)
                    if delta:
                        yield delta
        except openai.OpenAIError as e:
            raise self._translate(e, "streaming") from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LLMError(f"the LLM at {self.base_url} sent a malformed stream: {_short(str(e))}") from e
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()


def _completion(choice: Any, base_url: str) -> Completion:
    message = getattr(choice, "message", None)
    if message is None:
        raise LLMError(f"the LLM at {base_url} replied without a message: is it an OpenAI-compatible server?")
    per_token: list[tuple[TokenLogprob, ...]] = []
    logprobs = getattr(choice, "logprobs", None)
    for item in (getattr(logprobs, "content", None) or []) if logprobs else []:
        alts = getattr(item, "top_logprobs", None) or []
        per_token.append(tuple(TokenLogprob(token=a.token, logprob=float(a.logprob)) for a in alts))
    return Completion(
        text=message.content or "",
        top_logprobs=tuple(per_token),
        finish_reason=getattr(choice, "finish_reason", None),
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
