"""A G-Eval judge (Liu et al., 2023, "G-Eval: NLG Evaluation using GPT-4 with Better Human Alignment").

Per criterion the judge (1) gets *evaluation steps*, generated once by the judge model from the criterion's
description (auto chain-of-thought) and cached on disk, or written by the user; (2) fills a form: task, criterion,
steps, the example (question, sources, reference, answer), ending in ``- Faithfulness (1-5):``; (3) scores it as the
**probability-weighted sum over the score tokens** "1".."5": ``score = sum_d d * p(d)`` with ``p`` the server's
``top_logprobs`` at the score position, renormalised over the score tokens. That is finer-grained than a bare integer
and breaks ties between answers the paper found a single sampled integer cannot.

When the server returns no logprobs the judge logs a loud warning (once) and falls back to what the paper did for
GPT-4, which gave no logprobs either: sample ``samples`` judgments at temperature 1 and average the parsed scores; the
run's summary says which method was used. Replies that hold no score are counted as *unparsable* (score None),
never guessed. JSON output can be constrained by the server (vLLM ``guided_json`` or ``response_format``; llama.cpp
``response_format``) when the LLM client accepts ``extra_body``; otherwise the reply is parsed robustly.

Every call goes through an on-disk cache keyed by (model, messages, parameters): a re-run costs nothing.

Example::

    >>> judge = GEvalJudge(llm, JudgeConfig(cache_dir=Path("runs/.judge-cache")))  # doctest: +SKIP
    >>> j = judge.judge("faithfulness", question="Who?", answer="Ada [1].", sources="[1] Ada.")  # doctest: +SKIP
    >>> j.score  # doctest: +SKIP
    4.62
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag.errors import UsageError
from rag.types import Completion, LLMClient, Message, TokenLogprob

log = logging.getLogger(__name__)

SCORE_TOKENS = ("1", "2", "3", "4", "5")
SCORE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["score"],
}

FIELD_LABELS = {
    "question": "Question",
    "sources": "Retrieved sources",
    "reference": "Reference answer",
    "answer": "Answer",
    "document_1": "Document 1",
    "document_2": "Document 2",
}


@dataclass(frozen=True)
class Criterion:
    name: str
    title: str
    description: str
    task: str  # what the evaluator is given
    fields: tuple[str, ...]  # which inputs the form shows, in order
    steps: str | None = None  # user-written evaluation steps; None: generated once by the judge and cached


CRITERIA: dict[str, Criterion] = {
    "faithfulness": Criterion(
        "faithfulness",
        "Faithfulness",
        "Is every claim in the answer supported by the retrieved sources? An answer that adds facts not found in the "
        "sources, or contradicts them, scores low, even if those facts are true. An answer that correctly says the "
        "sources do not contain the answer is faithful.",
        "a question, the numbered sources a question-answering system retrieved, and the system's answer",
        ("question", "sources", "answer"),
    ),
    "relevance": Criterion(
        "relevance",
        "Answer relevance",
        "Does the answer address the question that was asked, directly and without unrelated content? Correctness "
        "does not matter for this metric, only whether the answer responds to the question.",
        "a question and a system's answer",
        ("question", "answer"),
    ),
    "correctness": Criterion(
        "correctness",
        "Correctness",
        "Does the answer state the same facts as the reference answer? Missing key facts or facts that contradict "
        "the reference lower the score; wording does not matter.",
        "a question, a reference answer written by an expert, and a system's answer",
        ("question", "reference", "answer"),
    ),
    "similarity": Criterion(
        "similarity",
        "Similarity",
        "How similar are the two documents in what they are about (topic, events, entities)? 1: unrelated, "
        "5: about the same thing.",
        "two news documents",
        ("document_1", "document_2"),
    ),
}

JUDGE_PROMPT_TEMPLATE = """You will be given {task}.

Your task is to rate {target} on one metric.

Please make sure you read and understand these instructions carefully.

Evaluation Criteria:

{title} (1-5) - {description}

Evaluation Steps:

{steps}

Example:

{example}

Evaluation Form ({reply}):

- {title} (1-5):"""

STEPS_PROMPT_TEMPLATE = """You will be given {task}.

Your task is to rate {target} on one metric.

Evaluation Criteria:

{title} (1-5) - {description}

Write the evaluation steps a careful human evaluator follows to give this score: a numbered list of 3 to 5 short \
steps, nothing else.

Evaluation Steps:
"""

JUDGE_PROMPT_VERSION = hashlib.sha256((JUDGE_PROMPT_TEMPLATE + STEPS_PROMPT_TEMPLATE).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class JudgeConfig:
    criteria: tuple[str, ...] = ("faithfulness", "relevance", "correctness")
    top_logprobs: int = 5
    samples: int = 10  # fallback when the server gives no logprobs (the paper sampled 20)
    sample_temperature: float = 1.0
    json_mode: Literal["auto", "off", "guided_json", "response_format"] = "auto"
    cache_dir: Path | None = None  # None: no cache
    steps: Mapping[str, str] = field(default_factory=dict)  # user-written evaluation steps per criterion
    max_field_chars: int = 6000  # keep the form inside a small model's window


@dataclass(frozen=True)
class Judgment:
    criterion: str
    score: float | None  # 1..5, None when unparsable
    method: Literal["logprobs", "sampling", "unparsable"]
    distribution: Mapping[str, float]  # p(score token) used for the score
    raw: str  # the judge's reply (first one when sampled)


class JudgeCache:
    """Completions on disk, one JSON file per key; safe for concurrent threads and processes (atomic rename)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, messages: Sequence[Message], params: Mapping[str, Any]) -> str:
        blob = json.dumps(
            {"model": model, "messages": [asdict(m) for m in messages], "params": dict(params)}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> list[Completion] | None:
        if self.directory is None:
            return None
        path = self.directory / key[:2] / f"{key}.json"
        if not path.is_file():
            self.misses += 1
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return [
            Completion(
                text=c["text"],
                top_logprobs=tuple(tuple(TokenLogprob(t, lp) for t, lp in pos) for pos in c["top_logprobs"]),
                finish_reason=c.get("finish_reason"),
            )
            for c in data
        ]

    def put(self, key: str, completions: Sequence[Completion]) -> None:
        if self.directory is None:
            return
        folder = self.directory / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        data = [
            {
                "text": c.text,
                "top_logprobs": [[[t.token, t.logprob] for t in pos] for pos in c.top_logprobs],
                "finish_reason": c.finish_reason,
            }
            for c in completions
        ]
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, folder / f"{key}.json")


def score_from_logprobs(alternatives: Sequence[TokenLogprob]) -> tuple[float, dict[str, float]] | None:
    """G-Eval's score at one position: sum_d d * p(d) over tokens "1".."5", renormalised; None if none is there.

    >>> alts = [TokenLogprob("5", math.log(0.5)), TokenLogprob("4", math.log(0.3)), TokenLogprob("The", math.log(0.2))]
    >>> round(score_from_logprobs(alts)[0], 3)
    4.625
    """
    probs: dict[str, float] = {}
    for alt in alternatives:
        tok = alt.token.strip().strip('"')
        if tok in SCORE_TOKENS:
            # " 4" and "4" are different tokens with the same meaning
            probs[tok] = probs.get(tok, 0.0) + math.exp(alt.logprob)
    total = sum(probs.values())
    if total <= 0:
        return None
    dist = {t: p / total for t, p in sorted(probs.items())}
    return sum(int(t) * p for t, p in dist.items()), dist


def score_position(top_logprobs: Sequence[Sequence[TokenLogprob]]) -> int | None:
    """The first generated position whose most likely token is a score digit (0 for a bare "4", later in JSON)."""
    for i, alts in enumerate(top_logprobs):
        if alts and max(alts, key=lambda a: a.logprob).token.strip().strip('"') in SCORE_TOKENS:
            return i
    return None


_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_SCALE = re.compile(r"\(?\b1\s*(?:-|–|to)\s*5\b\)?")
_OUT_OF = re.compile(r"\b([1-5])\s*(?:/|out of)\s*5\b")
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.]*\d)")


def parse_score(text: str) -> int | None:
    """A 1-5 score from a reply: JSON ``{"score": 4}`` first, else the first standalone digit 1-5; None otherwise."""
    for m in _JSON_OBJECT.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        value = obj.get("score") if isinstance(obj, dict) else None
        if isinstance(value, int | float | str) and str(value).strip() in SCORE_TOKENS:
            return int(str(value).strip())
    text = _SCALE.sub(" ", text)  # an echoed "(1-5)" is the scale, not the score
    found = _OUT_OF.search(text) or _DIGIT.search(text)
    return int(found.group(1)) if found else None


class GEvalJudge:
    """Scores answers per criterion; thread-safe (the runner judges concurrently)."""

    def __init__(self, llm: LLMClient, config: JudgeConfig | None = None) -> None:
        self.llm = llm
        self.config = config or JudgeConfig()
        self.cache = JudgeCache(self.config.cache_dir)
        self._lock = threading.Lock()
        self._steps: dict[str, str] = dict(self.config.steps)
        self.logprobs_available: bool | None = None  # learnt from the first reply
        self.counts: Counter[str] = Counter()  # method -> judgments
        self._extra_body_ok = "extra_body" in inspect.signature(llm.complete).parameters
        unknown = set(self.config.criteria) - set(CRITERIA)
        if unknown:
            raise UsageError(f"unknown judge criteria {sorted(unknown)}; known: {sorted(CRITERIA)}")

    @property
    def model(self) -> str:
        return self.llm.model

    def _constraint(self) -> dict[str, Any] | None:
        mode = self.config.json_mode
        if mode == "off" or (mode == "auto" and not self._extra_body_ok):
            return None
        if not self._extra_body_ok:
            log.warning("judge json_mode=%s but this LLM client cannot send extra_body; parsing replies instead", mode)
            return None
        if mode == "guided_json":
            return {"guided_json": SCORE_SCHEMA}
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "score", "schema": SCORE_SCHEMA}}}

    def _complete(self, messages: list[Message], **params: Any) -> list[Completion]:
        extra = params.pop("extra_body", None)
        key = self.cache.key(self.model, messages, {**params, "extra_body": extra})
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        kwargs = dict(params)
        if extra:
            kwargs["extra_body"] = extra
        out = self.llm.complete(messages, **kwargs)
        self.cache.put(key, out)
        return out

    # -- steps ----------------------------------------------------------------------------------------------------

    def steps_for(self, criterion: str) -> str:
        """The criterion's evaluation steps: user-written, or generated by the judge once (greedy, cached)."""
        c = CRITERIA[criterion]
        with self._lock:
            if criterion in self._steps:
                return self._steps[criterion]
            if c.steps:
                self._steps[criterion] = c.steps
                return c.steps
        prompt = STEPS_PROMPT_TEMPLATE.format(task=c.task, target=_target(c), title=c.title, description=c.description)
        text = self._complete([Message("user", prompt)], max_tokens=160, temperature=0.0)[0].text.strip()
        if not text:
            text = (
                "1. Read the inputs carefully.\n2. Compare them against the criterion.\n3. Assign a score from 1 to 5."
            )
        with self._lock:
            self._steps.setdefault(criterion, text)
            return self._steps[criterion]

    # -- judging --------------------------------------------------------------------------------------------------

    def messages(self, criterion: str, **fields: str) -> list[Message]:
        """The form-filling prompt for one example (visible, so a user can read exactly what the judge saw)."""
        c = CRITERIA[criterion]
        missing = [f for f in c.fields if f not in fields]
        if missing:
            raise UsageError(f"criterion {criterion!r} needs {missing}")
        limit = self.config.max_field_chars
        example = "\n\n".join(f"{FIELD_LABELS[f]}:\n{_clip(fields[f], limit)}" for f in c.fields)
        json_reply = self._constraint() is not None
        reply = 'reply with JSON only: {"score": <1-5>}' if json_reply else "reply with the score only, one digit"
        prompt = JUDGE_PROMPT_TEMPLATE.format(
            task=c.task,
            target=_target(c),
            title=c.title,
            description=c.description,
            steps=self.steps_for(criterion),
            example=example,
            reply=reply,
        )
        return [Message("user", prompt)]

    def judge(self, criterion: str, **fields: str) -> Judgment:
        messages = self.messages(criterion, **fields)
        extra = self._constraint()
        max_tokens = 12 if extra else 4
        if self.logprobs_available is not False:
            first = self._complete(
                messages, max_tokens=max_tokens, temperature=0.0, top_logprobs=self.config.top_logprobs,
                extra_body=extra,
            )[0]  # fmt: skip
            if first.top_logprobs:
                self.logprobs_available = True
                pos = score_position(first.top_logprobs)
                scored = score_from_logprobs(first.top_logprobs[pos]) if pos is not None else None
                if scored is None:
                    return self._count(Judgment(criterion, None, "unparsable", {}, first.text))
                return self._count(Judgment(criterion, scored[0], "logprobs", scored[1], first.text))
            with self._lock:
                if self.logprobs_available is None:
                    log.warning(
                        "WARNING: the judge server (%s) returned NO logprobs: G-Eval's probability-weighted score is "
                        "not available; falling back to the mean of %d sampled scores at temperature %g per judgment",
                        self.model, self.config.samples, self.config.sample_temperature,
                    )  # fmt: skip
                self.logprobs_available = False
        samples = self._complete(
            messages, max_tokens=max_tokens, temperature=self.config.sample_temperature, n=self.config.samples,
            extra_body=extra,
        )  # fmt: skip
        parsed = [s for s in (parse_score(c.text) for c in samples) if s is not None]
        if not parsed:
            return self._count(Judgment(criterion, None, "unparsable", {}, samples[0].text if samples else ""))
        freq = Counter(str(s) for s in parsed)
        dist = {t: freq[t] / len(parsed) for t in sorted(freq)}
        return self._count(Judgment(criterion, sum(parsed) / len(parsed), "sampling", dist, samples[0].text))

    def _count(self, j: Judgment) -> Judgment:
        with self._lock:
            self.counts[j.method] += 1
        return j

    def stats(self) -> dict[str, Any]:
        """For the run summary: method counts, unparsable judgments, cache use, the steps used."""
        return {
            "model": self.model,
            "prompt_version": JUDGE_PROMPT_VERSION,
            "logprobs_available": self.logprobs_available,
            "method": "logprobs"
            if self.logprobs_available
            else ("sampling" if self.logprobs_available is False else None),
            "judgments": dict(self.counts),
            "unparsable": self.counts.get("unparsable", 0),
            "errors": self.counts.get("error", 0),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "json_constrained": self._constraint() is not None,
            "steps": dict(self._steps),
        }


def format_sources(texts: Sequence[str]) -> str:
    """Numbered sources as the answer prompt shows them: "[1] ...\\n\\n[2] ..."."""
    return "\n\n".join(f"[{i}] {t.strip()}" for i, t in enumerate(texts, start=1)) or "(no sources were retrieved)"


def _target(c: Criterion) -> str:
    return "the answer" if "answer" in c.fields else "the pair"


def _clip(text: str, limit: int) -> str:
    text = text.strip() or "(empty)"
    return text if len(text) <= limit else text[:limit] + " [...]"
