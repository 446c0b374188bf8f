"""Check an answer against its sources: split it into sentences, find which given source supports each one, keep
only the citations a source supports, add the supporting source where the model cited none or the wrong one, and
mark the sentences no source supports.

Support is scored per (sentence, source) pair with two signals that ship offline, validated on planted errors
(``evals/support_check.py``, numbers in docs/benchmarks.md):

- **the cross-encoder** (``ms-marco-MiniLM-L-12-v2``, packaged; the sentence is the query, the source the passage):
  is the source about what the sentence says? Its logit is mapped to 0..1 with a sigmoid.
- **lexical evidence**: the facts a sentence asserts that can be checked by their spelling (numbers, names, dates,
  identifiers like ``R_LIBS_USER``) must occur in the source. Small models invent exactly these; a passage on the
  right topic with another number does not support the sentence.

A source supports a sentence when its cross-encoder score reaches ``min_score`` and it holds some of the
sentence's evidence; the sentence is supported when the supporting sources together hold at least
``min_evidence`` of it (two sources may each hold half of a sentence that combines them).

Example::

    >>> from rag.types import Chunk, ScoredChunk
    >>> def hit(text): return ScoredChunk(Chunk("i", text, "/d/a.md", None, 0, len(text), "h", "f", "md"), 1.0)
    >>> v = verify_answer("It is 84 metres tall [2]. It was built in 1950 [1].",
    ...                   [hit("Lunch is at noon."), hit("The Halden tower is 84 metres tall.")],
    ...                   LexicalSupport(), min_score=0.0, min_evidence=1.0)
    >>> [(s.text, s.citations, s.supported) for s in v.sentences]
    [('It is 84 metres tall.', (2,), True), ('It was built in 1950.', (), False)]
    >>> v.text  # the verified markers: the wrong [1] is gone
    'It is 84 metres tall [2]. It was built in 1950.'

"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rag.config import VerifySettings
from rag.prompt import cited_numbers
from rag.types import AttributedSentence, ScoredChunk

# -- sentences --------------------------------------------------------------------------------------------------------

_CITE = re.compile(r"\s*\[\s*(?:sources?\s*)?\d+(?:\s*(?:,|;|and|-|–)\s*(?:sources?\s*)?\d+)*\s*\]", re.IGNORECASE)
# A boundary: end punctuation (optionally closed by a quote or bracket, and followed by citation markers) then space,
# or a line break. Abbreviations such as "e.g." or "D.C." are protected below.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*(?:\s*\[[^\]\n]{1,20}\])*\s+|\n+")
_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|Mr|Mrs|Ms|Dr|Prof|St|No|approx|Fig|Vol|Inc|Ltd|Jr|Sr)|\b[A-Z](?:\.[A-Z])*)\.$"
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


@dataclass(frozen=True)
class SentenceSpan:
    """One sentence of an answer: ``text`` is ``answer[start:end]`` (its citation markers included)."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[SentenceSpan]:
    """Sentences of ``text`` with their character spans; citation markers stay with the sentence they follow.

    >>> [s.text for s in split_sentences("It is 84 m tall [1]. Built in 1911. [2]\\n- Red, e.g. brick.")]
    ['It is 84 m tall [1].', 'Built in 1911. [2]', '- Red, e.g. brick.']
    """
    out: list[SentenceSpan] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        piece = text[start : m.start()]
        head = piece.rstrip()
        # markers after the punctuation belong to this sentence ("... 1911. [2] Next ...")
        markers = re.match(r"[\"')\]]*(?:\s*\[[^\]\n]{1,20}\])*", text[m.start() : m.end()])
        end = m.start() + (markers.end() if markers else 0)
        if "\n" not in m.group(0) and (
            _ABBREV.search(re.sub(r"[\"')\]]+$", "", head)) or re.fullmatch(r"\s*\d{1,3}[.)]", head)
        ):
            continue  # "e.g." or "D.C." or a list number "2.", not the end of a sentence
        _add(out, text, start, end)
        start = m.end()
    _add(out, text, start, len(text))
    return out


def _add(out: list[SentenceSpan], text: str, start: int, end: int) -> None:
    if not text[start:end].strip():
        return
    if out and not strip_citations(text[start:end]):  # bare markers: they belong to the sentence before
        out[-1] = _span(text, out[-1].start, end)
    else:
        out.append(_span(text, start, end))


def _span(text: str, start: int, end: int) -> SentenceSpan:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return SentenceSpan(text[start:end], start, end)


def strip_citations(sentence: str) -> str:
    """The sentence without its ``[n]`` markers (what is scored against a source)."""
    text = re.sub(r"\s+([.,;:!?])", r"\1", _CITE.sub("", sentence))
    return re.sub(r"(?<!\.)([.!?])\.(?=\s|$)", r"\1", text).strip()  # "floor. [1]." -> "floor."


_REFUSAL_RE = re.compile(
    r"i don'?t know|i do not know|(?:do(?:es)?|did) not (?:contain|mention|provide|include|say|specify|state)|"
    r"(?:no|not enough|insufficient) information|(?:cannot|can ?not|can't|unable to) (?:find|answer|determine)",
    re.IGNORECASE,
)


# A citation marker with more of the sentence after it: the model said "this much comes from [n]", and what follows
# is another claim ("... does not corrode in salt water [1] and because it melts at 1,412 degrees ...").
_INLINE_CITE = re.compile(_CITE.pattern + r"(?=\s*,?\s*[^\W_])", re.IGNORECASE)


def claim_units(sentence: SentenceSpan) -> list[SentenceSpan]:
    """``sentence`` cut after each citation marker inside it, so each part is checked against its own sources; a
    part that asserts nothing on its own ("According to [1], ...") stays with the next.

    >>> [u.text for u in claim_units(split_sentences("It does not rust in sea water [1] and melts at 1,412 C [2].")[0])]
    ['It does not rust in sea water [1]', 'and melts at 1,412 C [2].']
    >>> [u.text for u in claim_units(split_sentences("According to [1], it is 84 m tall.")[0])]
    ['According to [1], it is 84 m tall.']
    """
    text, base = sentence.text, sentence.start
    units: list[SentenceSpan] = []
    start = 0
    for end in [m.end() for m in _INLINE_CITE.finditer(text)] + [len(text)]:
        if units and not is_claim(units[-1].text):  # join the part that asserts nothing to this one
            start = units.pop().start - base
        piece = _span(text, start, end)
        if piece.text:
            units.append(SentenceSpan(piece.text, base + piece.start, base + piece.end))
        start = end
    return units or [sentence]


def is_claim(sentence: str) -> bool:
    """Whether a sentence asserts something a source could support (not a refusal, a heading or a filler line)."""
    body = _BULLET.sub("", strip_citations(sentence))
    if _REFUSAL_RE.search(body) or body.endswith(":") or body.endswith("?"):
        return False
    return len(_content_words(body)) >= 2 or bool(evidence_terms(body))


# -- lexical evidence -------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_STOP = frozenset(
    """a an the and or but of to in on at by for from with as is are was were be been being it its this that these
    those there their they them he she his her him we our you your i not no yes so than then also which who whom
    what when where why how all any each both more most other some such only own same can could may might must shall
    should will would do does did has have had about after before into over under between through during while
    according source sources document documents answer""".split()
)
_WORD = re.compile(r"(?<!\w)[^\W\d_](?:[^\W_]|['’-](?=[^\W_]))*")
_TECH = re.compile(r"\b[\w]+(?:[._/:-][\w]+)+\b")  # R_LIBS_USER, texsys.cfg, xorg-dev, 1999-09-03, 4.1.0
_NUM = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


_MONTHS = "january february march april may june july august september october november december".split()
_NUMERIC_DATE = re.compile(r"\b(1[5-9]\d\d|20\d\d)([-/])(0?[1-9]|1[0-2])\2(0?[1-9]|[12]\d|3[01])\b")


def _spell_date(m: re.Match[str]) -> str:
    """``2008-05-04`` -> ``2008-05-04 (may 4 2008)``: a sentence may write the same date in words."""
    year, month, day = m.group(1), int(m.group(3)), int(m.group(4))
    return f"{m.group(0)} ({_MONTHS[month - 1]} {day} {year})"


def normalize(text: str) -> str:
    """Lowercase NFKC text with PDF line-break hyphens joined, thousands separators and number words as digits,
    and numeric dates also spelled out (so "May 4, 2008" finds "2008-05-04")."""
    text = unicodedata.normalize("NFKC", text).replace("’", "'")
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = _NUMERIC_DATE.sub(_spell_date, text)
    text = re.sub(r"\s+", " ", text).lower()
    return re.sub(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", lambda m: _NUMBER_WORDS[m.group(1)], text)


def _content_words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in _STOP]


def evidence_terms(sentence: str) -> list[str]:
    """The checkable facts of a sentence, normalized: numbers, names (capitalised words after the first) and
    identifiers. ``[]`` when the sentence has none (then only the cross-encoder judges it).

    >>> evidence_terms("Apollo 8 launched on December 21, 1968 from Kennedy Space Center [1].")
    ['8', '21', '1968', 'december', 'kennedy', 'space', 'center']
    """
    text = strip_citations(_BULLET.sub("", sentence))
    terms: list[str] = []
    plain = text
    for m in _TECH.finditer(text):
        tok = m.group(0)
        if re.fullmatch(r"[\d.,:]+", tok) or re.fullmatch(r"[a-z]+(?:-[a-z]+)+", tok):
            continue  # numbers and times are taken below; "start-up" is a plain word
        terms.append(unicodedata.normalize("NFKC", tok).lower().strip(".,"))
        plain = plain.replace(tok, " ")
    terms += [re.sub(r",", "", n) for n in _NUM.findall(normalize(plain))]
    words = _WORD.findall(plain)
    for i, w in enumerate(words):
        if i == 0 or w.lower() in _STOP or w.lower() in _NUMBER_WORDS:
            continue  # the first word is capitalised anyway; stop words are no evidence
        if w[0].isupper() or (len(w) > 1 and w.isupper()):
            terms.append(re.sub(r"['’]s$", "", w.lower()))
    seen: dict[str, None] = {}
    for t in terms:
        if t and t not in seen:
            seen[t] = None
    return list(seen)


def _found(term: str, passage: str) -> bool:
    if term.replace(".", "").isdigit():
        return re.search(rf"(?<![\d.]){re.escape(term)}(?![\d]|\.\d)", passage) is not None
    return re.search(rf"(?<![a-z0-9]){re.escape(term)}", passage) is not None


def evidence_found(terms: Sequence[str], passage: str) -> set[str]:
    """The terms that occur in ``passage`` (already ``normalize``d)."""
    return {t for t in terms if _found(t, passage)}


# -- scorers ----------------------------------------------------------------------------------------------------------


class SupportScorer(Protocol):
    """How strongly each passage supports a claim, 0..1 (a seam: the cross-encoder, lexical evidence, a fake)."""

    @property
    def name(self) -> str: ...

    def score(self, claim: str, passages: Sequence[str]) -> list[float]: ...


class Reranker(Protocol):  # rag.rerank.Reranker: raw relevance logits
    @property
    def name(self) -> str: ...

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


FOCUS_BELOW = 0.5  # passages scoring less are scored again on the window around the sentence's evidence


class CrossEncoderSupport:
    """The cross-encoder's relevance logit of (claim, passage), squashed to 0..1 with a sigmoid.

    A long passage that states the claim among much else can score low as a whole; where the claim's evidence
    occurs in it, the window around that evidence (the best-matching sentence of the passage and its neighbours) is
    scored too, and the higher score counts.
    """

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker

    @property
    def name(self) -> str:
        return f"cross-encoder:{self.reranker.name}"

    def score(self, claim: str, passages: Sequence[str]) -> list[float]:
        scores = [_sigmoid(x) for x in self.reranker.score(claim, passages)]
        terms = evidence_terms(claim)
        redo = {
            i: w for i, p in enumerate(passages)
            if scores[i] < FOCUS_BELOW and terms and evidence_found(terms, normalize(p))
            and (w := focus_window(claim, p)) is not None and len(w) < len(p)
        }  # fmt: skip
        if redo:
            for i, x in zip(redo, self.reranker.score(claim, list(redo.values())), strict=True):
                scores[i] = max(scores[i], _sigmoid(x))
        return scores


def focus_window(claim: str, passage: str, neighbours: int = 1) -> str | None:
    """The sentence of ``passage`` that best matches ``claim`` with ``neighbours`` sentences on each side."""
    pieces = [m for m in re.finditer(r"[^.!?\n]+(?:[.!?]+|\n|$)", passage) if m.group(0).strip()]
    span = supporting_span(claim, passage)
    if span is None or not pieces:
        return None
    k = next((j for j, m in enumerate(pieces) if m.start() <= span[0] < m.end()), 0)
    lo, hi = max(0, k - neighbours), min(len(pieces) - 1, k + neighbours)
    return passage[pieces[lo].start() : pieces[hi].end()].strip()


class LexicalSupport:
    """Only lexical evidence: every passage scores 1.0 (the evidence rule decides alone)."""

    name = "lexical"

    def score(self, claim: str, passages: Sequence[str]) -> list[float]:
        return [1.0] * len(passages)


# -- verification -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """An answer checked against its sources. ``text`` carries the verified ``[n]`` markers."""

    text: str
    sentences: tuple[AttributedSentence, ...]
    supported_any: bool  # at least one sentence is supported by a source
    claims: int  # sentences that assert something

    @property
    def cited(self) -> list[int]:
        """Verified source numbers in order of first citation."""
        seen: dict[int, None] = {}
        for s in self.sentences:
            for n in s.citations:
                seen.setdefault(n, None)
        return list(seen)


def _with_markers(sentence: str, numbers: Sequence[int]) -> str:
    """``sentence`` with its markers replaced by ``[n]`` for ``numbers``, placed before the closing punctuation."""
    body = strip_citations(sentence)
    if not numbers:
        return body
    marks = "".join(f"[{n}]" for n in numbers)
    m = re.search(r"([.!?:;]+[\"')\]]*)$", body)
    if m:
        return f"{body[: m.start()]} {marks}{m.group(1)}"
    return f"{body} {marks}"


def supporting_span(sentence: str, passage: str) -> tuple[int, int] | None:
    """Character span of the sentence of ``passage`` that best matches ``sentence`` (evidence first, then words)."""
    terms = evidence_terms(sentence)
    words = set(_content_words(strip_citations(sentence)))
    best: tuple[float, int, int] | None = None
    for m in re.finditer(r"[^.!?\n]+(?:[.!?]+|\n|$)", passage):
        piece = m.group(0)
        if not piece.strip():
            continue
        norm = normalize(piece)
        score = 2.0 * len(evidence_found(terms, norm)) + len(words & set(_content_words(piece)))
        if score > 0 and (best is None or score > best[0]):
            start = m.start() + (len(piece) - len(piece.lstrip()))
            best = (score, start, m.end())
    return (best[1], best[2]) if best else None


def choose_support(
    claim: str,
    passages: Sequence[str],
    scores: Sequence[float],
    preferred: Sequence[int] = (),
    *,
    min_score: float,
    use_evidence: bool = True,
) -> tuple[list[int], float]:
    """The sources (0-based) that together support ``claim`` best, and the share of its evidence they hold.

    ``passages`` are ``normalize``d; ``scores`` the scorer's support per passage; ``preferred`` (1-based, the model's
    own citations) are taken first when they qualify. A source qualifies when it scores ``min_score`` and holds some
    of the claim's evidence (or the claim has none to check). ``use_evidence=False``: the scores alone decide.
    """
    terms = evidence_terms(claim) if use_evidence else []
    found = [evidence_found(terms, p) for p in passages]
    candidates = [i for i in range(len(passages)) if scores[i] >= min_score and (found[i] or not terms)]
    if not terms:
        best = [n - 1 for n in preferred if n - 1 in candidates] or sorted(candidates, key=lambda i: -scores[i])[:1]
        return best[:1], 1.0
    rank = {i: (i + 1 not in preferred, -len(found[i]), -scores[i]) for i in candidates}
    chosen: list[int] = []
    covered: set[str] = set()
    # Each clause is taken from ONE source: facts of two sources combined into one statement ("the Bergen tower is
    # 84 m tall" from a Bergen passage and an 84 m one) support nothing.
    for clause in clause_terms(claim, terms):
        if not clause:
            continue
        best_i = min(candidates, key=lambda i: (-len(found[i] & clause), *rank[i]), default=None)
        if best_i is None or not found[best_i] & clause:
            continue
        covered |= found[best_i] & clause
        if best_i not in chosen:
            chosen.append(best_i)
    return chosen, len(covered) / len(terms)


_CLAUSE = re.compile(r";|,?\s+(?:and|but|while|whereas)\s+(?=(?:the|its?|he|she|they|[A-Z]|\d)\b)")


def clause_terms(claim: str, terms: Sequence[str]) -> list[set[str]]:
    """The claim's evidence split by clause ("A is X; B is Y", "A is X and B is Y"): each set must come from one
    source. A term found in no clause's text (normalization) goes with the first clause.

    >>> terms = ["borman", "8", "armstrong", "11"]
    >>> [sorted(c) for c in clause_terms("Borman commanded Apollo 8; Armstrong commanded Apollo 11.", terms)]
    [['8', 'borman'], ['11', 'armstrong']]
    """
    parts = [normalize(p) for p in _CLAUSE.split(claim) if p.strip()]
    out: list[set[str]] = [set() for _ in parts]
    for t in terms:
        where = [k for k, p in enumerate(parts) if _found(t, p)]
        for k in where or [0]:
            out[k].add(t)
    return out


def supports(claim: str, passages: Sequence[str], scorer: SupportScorer, *, min_score: float,
             min_evidence: float) -> bool:  # fmt: skip
    """Whether ``passages`` (raw text) together support ``claim``: the rule ``verify_answer`` applies."""
    if not passages:
        return False
    scores = scorer.score(claim, list(passages))
    chosen, coverage = choose_support(claim, [normalize(p) for p in passages], scores, min_score=min_score)
    return bool(chosen) and coverage >= min_evidence


def verify_answer(
    text: str,
    sources: Sequence[ScoredChunk],
    scorer: SupportScorer,
    *,
    min_score: float,
    min_evidence: float,
    use_evidence: bool = True,
) -> Verification:
    """Attribute each sentence of ``text`` to the sources (``sources[i]`` is ``[i + 1]``) that support it."""
    passages = [normalize(h.chunk.text) for h in sources]
    sentences: list[AttributedSentence] = []
    pieces: list[str] = []
    last = 0
    claims = 0
    for span in (unit for sentence in split_sentences(text) for unit in claim_units(sentence)):
        model_cites = tuple(cited_numbers(span.text, len(sources)))
        pieces.append(text[last : span.start])
        last = span.end
        if not sources or not is_claim(span.text):
            sentences.append(AttributedSentence(strip_citations(span.text), (), None, 0.0, model_cites))
            pieces.append(span.text if not sources else _with_markers(span.text, ()))
            continue
        claims += 1
        claim = strip_citations(_BULLET.sub("", span.text))
        scores = scorer.score(claim, [h.chunk.text for h in sources])
        chosen, coverage = choose_support(claim, passages, scores, model_cites, min_score=min_score,
                                          use_evidence=use_evidence)  # fmt: skip
        supported = bool(chosen) and coverage >= min_evidence
        citations = tuple(sorted(i + 1 for i in chosen)) if supported else ()
        best = max((scores[i] for i in chosen), default=max(scores, default=0.0))
        spans = tuple(
            (n, *sp) for n in citations if (sp := supporting_span(claim, sources[n - 1].chunk.text)) is not None
        )
        sentences.append(
            AttributedSentence(
                strip_citations(span.text), citations, supported, round(float(min(best, coverage)), 4), model_cites,
                evidence=round(coverage, 4), spans=spans,
            )
        )  # fmt: skip
        pieces.append(_with_markers(span.text, citations))
    pieces.append(text[last:])
    new_text = "".join(pieces).strip()
    supported_any = any(s.supported for s in sentences)
    return Verification(text=new_text, sentences=tuple(sentences), supported_any=supported_any, claims=claims)


class Verifier:
    """Verification as configured (``settings.verify``): the scorer is built on first use.

    ``reranker`` lets the pipeline share the cross-encoder the retriever already loaded (same model, one copy).
    """

    def __init__(self, settings: VerifySettings, reranker: Reranker | None = None) -> None:
        self.settings = settings
        self._reranker = reranker
        self._scorer: SupportScorer | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.scorer != "none"

    @property
    def scorer(self) -> SupportScorer:
        if self._scorer is None:
            if self.settings.scorer == "lexical":
                self._scorer = LexicalSupport()
            else:
                if self._reranker is None:
                    from rag.rerank import load_reranker

                    self._reranker = load_reranker(self.settings.model)
                self._scorer = CrossEncoderSupport(self._reranker)
        return self._scorer

    def check(self, text: str, sources: Sequence[ScoredChunk]) -> Verification:
        s = self.settings
        # "cross-encoder" alone: every on-topic source counts, whatever facts the sentence states
        return verify_answer(
            text, sources, self.scorer, min_score=0.0 if s.scorer == "lexical" else s.min_score,
            min_evidence=s.min_evidence, use_evidence=s.scorer != "cross-encoder",
        )  # fmt: skip
