"""Pure text helpers for the chat view: citation labels, answer markdown, the cited part of a passage.

Kept out of ``ui/app.py`` so they can be unit-tested without Streamlit.

Example::

    >>> answer_markdown("Paris is the capital [1][2-3]. It costs $5.")
    'Paris is the capital :blue-badge[1]:blue-badge[2]:blue-badge[3]. It costs \\\\$5.'
    >>> claims_for("Paris is in France [source 2]. Rome is not.", 2)
    'Paris is in France [source 2].'
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from rag.prompt import CITATION_RE, cited_numbers, marker_numbers
from rag.types import AttributedSentence, Chunk

UNSUPPORTED_TIP = (
    "Not supported by the sources: no passage the model was given states this (checked after the answer was "
    "written). Treat it as the model's guess."
)

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n{2,}")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "the a an and or of to in on for is are was were be been by with as at from that this these those it its "
    "which who what when where how not no but if then than so such can may will would should could has have had "
    "do does did their there they them he she we you your our i".split()
)


def answer_markdown(text: str) -> str:
    """The answer as Streamlit markdown: ``[n]`` becomes a small badge, ``$`` does not start LaTeX."""
    text = text.replace("$", "\\$")
    return CITATION_RE.sub(lambda m: "".join(f":blue-badge[{n}]" for n in marker_numbers(m)), text)


def attributed_markdown(sentences: Sequence[AttributedSentence]) -> str:
    """A verified answer as Streamlit markdown (``unsafe_allow_html``): each sentence with its verified citation
    badges; a sentence no source supports is underlined, marked ⚠, and explains itself in a tooltip.

    >>> s = [AttributedSentence("Tall.", (1,), True, 0.9), AttributedSentence("Built in 1950.", (), False, 0.1)]
    >>> attributed_markdown(s)  # doctest: +ELLIPSIS
    'Tall :blue-badge[1]. <span class="rag-unsupported" title="Not supported...">Built in 1950. ⚠</span>'
    """
    parts = []
    for s in sentences:
        text = s.text
        if s.supported is False:
            body = html.escape(text).replace("$", "\\$")
            parts.append(f'<span class="rag-unsupported" title="{html.escape(UNSUPPORTED_TIP)}">{body} ⚠</span>')
            continue
        marks = "".join(f":blue-badge[{n}]" for n in s.citations)
        text = text.replace("$", "\\$")
        if marks:
            end = len(text.rstrip(".!?:;"))
            text = f"{text[:end]} {marks}{text[end:]}"
        parts.append(text)
    return " ".join(parts)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~:])")


def md_escape(text: str) -> str:
    """``text`` shown literally by Streamlit's markdown (file names like ``*draft*_v2.md``, questions with ``$``).

    >>> md_escape("*draft* $5")
    '\\\\*draft\\\\* \\\\$5'
    """
    return _MD_SPECIAL.sub(r"\\\1", text)


def source_label(chunk: Chunk) -> str:
    """``report.pdf · p. 3`` (the file name, the page or ``slide 3`` for slide decks, then the section when known)."""
    name = Path(chunk.source).name or chunk.source
    parts = [name]
    label = chunk.page_label()  # "page 3", or "slide 3" for slide decks
    if label:
        parts.append(label.replace("page ", "p. ", 1))
    if chunk.section:
        parts.append(chunk.section)
    return " · ".join(parts)


def _words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if len(w) > 2 and w not in _STOP}


def claims_for(answer_text: str, n: int) -> str:
    """The sentences of the answer that cite ``[n]`` (the whole answer when none does explicitly)."""
    sentences = [s for s in _SENTENCE.split(answer_text) if s.strip()]
    citing = [s for s in sentences if n in cited_numbers(s, n)]
    return " ".join(citing) if citing else answer_text


def spans_html(chunk_text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The chunk as escaped HTML with the character ``spans`` (the verified support) wrapped in ``<mark>``.

    >>> spans_html("Cats sleep. Paris is the capital.", [(12, 33)])
    'Cats sleep. <mark>Paris is the capital.</mark>'
    """
    out, pos = [], 0
    for start, end in sorted(set(spans)):
        start, end = max(start, pos), min(end, len(chunk_text))
        if start >= end:
            continue
        out += [html.escape(chunk_text[pos:start]), f"<mark>{html.escape(chunk_text[start:end])}</mark>"]
        pos = end
    out.append(html.escape(chunk_text[pos:]))
    return "".join(out).replace("\n", "<br>")


def passage_html(
    chunk_text: str, claim: str, *, max_marked: int = 2, spans: Sequence[tuple[int, int]] = ()
) -> str:
    """The chunk as escaped HTML with the sentences that best support ``claim`` wrapped in ``<mark>``.

    With ``spans`` (a verified answer's supporting spans) those are marked exactly. Otherwise support is word
    overlap (content words): cheap, transparent, and good enough to point the eye at the cited part.

    >>> passage_html("Cats sleep. Paris is the capital of France.", "The capital of France is Paris [1].")
    'Cats sleep. <mark>Paris is the capital of France.</mark>'
    """
    if spans:
        return spans_html(chunk_text, spans)
    chunk_text = re.sub(r"\n{3,}", "\n\n", chunk_text.strip())
    parts = re.split(r"((?<=[.!?])\s+|\n+)", chunk_text)  # keep separators so the text reads as it was
    claim_words = _words(claim)
    scores = [len(_words(p) & claim_words) if i % 2 == 0 else 0 for i, p in enumerate(parts)]
    best = max(scores, default=0)
    marked: set[int] = set()
    if best >= 2 or (best >= 1 and len(claim_words) <= 3):
        ranked = sorted((i for i, s in enumerate(scores) if s >= max(1, best // 2)), key=lambda i: -scores[i])
        marked = set(ranked[:max_marked])
    out = []
    for i, p in enumerate(parts):
        esc = html.escape(p)
        out.append(f"<mark>{esc}</mark>" if i in marked else esc)
    # <br> instead of newlines: a blank line would end the HTML block in Streamlit's markdown, and the rest of the
    # passage would then be parsed as markdown ("# " turning into a heading) instead of shown as text.
    return "".join(out).replace("\n", "<br>")
