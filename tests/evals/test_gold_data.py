"""The committed gold sets are valid and every gold source really contains its answer.

A wrong page number or a typo in a file name silently corrupts every retrieval metric computed on the set, so each
answerable question is checked against the text of the page (pypdf) or file it cites: all numbers in its reference
and most of its content words must occur there.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "evals" / "data"
CORPUS = DATA / "corpus"
CORPUS_HARD = DATA / "corpus_hard"
SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"
GOLD = DATA / "gold.jsonl"
GOLD_CI = DATA / "gold_ci.jsonl"
GOLD_HARD = DATA / "gold_hard.jsonl"

STOPWORDS = set(
    """a an and are as at be been but by can did do does for from had has have how in into is it its itself of on or
    so than that the their them then there these they this those to was were what when where which who whom why will
    with would about after also any both each more most much only other over some such very just under while
    your you i my we our he she his her him one all not new its has had get use may out who how non per via yes
    run""".split()
)


def _rows(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{n}: blank line"
        rows.append(json.loads(line))
    return rows


def _normalize(text: str) -> str:
    """Lowercase, undo ligatures (NFKC: 'ﬁ' -> 'fi'), rejoin words hyphenated across PDF lines, collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", text)


@cache
def _pdf_pages(name: str, corpus: Path = CORPUS) -> tuple[str, ...]:
    from pypdf import PdfReader

    return tuple(page.extract_text() or "" for page in PdfReader(corpus / name).pages)


@cache
def _file_text(name: str, corpus: Path = CORPUS) -> str:
    text = (corpus / name).read_text(encoding="utf-8")
    if name.endswith(".html"):
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return text


def _source_text(source: str, corpus: Path = CORPUS) -> str:
    name, _, page = source.partition("#")
    if page:
        return _pdf_pages(name, corpus)[int(page) - 1]
    return _file_text(name, corpus)


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text.replace(",", "")))


def _content_words(text: str) -> set[str]:
    """Words of 3+ letters that are not stopwords, plus technical tokens kept whole (pig.dtx, x3.159-1989)."""
    text = _normalize(text)
    words = {w for w in re.findall(r"[a-z][a-z0-9]+", text) if len(w) >= 3 and w not in STOPWORDS}
    return words | set(re.findall(r"[a-z0-9]+(?:[._/-][a-z0-9]+)+", text))


def _occurs(word: str, text: str) -> bool:
    """``word`` starts a word of ``text`` ("termite" matches "termites", "tex" does not match "latex")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}", text) is not None


GOLD_ROWS = _rows(GOLD)
CI_ROWS = _rows(GOLD_CI)
ANSWERABLE = [r for r in GOLD_ROWS if r["reference"]]


@pytest.mark.parametrize("path", [GOLD, GOLD_CI, GOLD_HARD], ids=lambda p: p.name)
def test_every_line_has_the_dataset_schema(path: Path) -> None:
    for n, row in enumerate(_rows(path), 1):
        where = f"{path.name}:{n}"
        assert {"question", "reference", "sources"} <= set(row) <= {"question", "reference", "sources", "facts", "kind"}
        assert isinstance(row.get("facts", []), list) and all(f.strip() for f in row.get("facts", [])), where
        assert isinstance(row["question"], str) and row["question"].strip().endswith("?"), where
        assert isinstance(row["reference"], str), where
        assert isinstance(row["sources"], list) and all(isinstance(s, str) for s in row["sources"]), where
        # unanswerable <=> empty reference <=> no sources
        assert bool(row["reference"]) == bool(row["sources"]), where


def test_gold_set_size_and_mix() -> None:
    questions = [r["question"] for r in GOLD_ROWS]
    assert len(questions) == len(set(questions)), "duplicate questions in gold.jsonl"
    assert len(ANSWERABLE) >= 60
    assert len(GOLD_ROWS) - len(ANSWERABLE) >= 6
    files = {s.partition("#")[0] for r in ANSWERABLE for s in r["sources"]}
    assert files == {p.name for p in CORPUS.iterdir()}, "every corpus document should have gold questions"


def test_ci_subset_is_small_mixed_and_drawn_from_gold() -> None:
    assert len(CI_ROWS) == 12
    answerable = [r for r in CI_ROWS if r["reference"]]
    assert len(answerable) == 10
    assert any(s.split("#")[0].endswith(".pdf") for r in answerable for s in r["sources"])
    assert len({s.partition("#")[0] for r in answerable for s in r["sources"]}) >= 5
    gold = {r["question"]: {k: r[k] for k in ("question", "reference", "sources")} for r in GOLD_ROWS}
    for r in CI_ROWS:  # copied from gold.jsonl (the CI rows add the key facts)
        assert gold.get(r["question"]) == {k: r[k] for k in ("question", "reference", "sources")}, r["question"]
    assert all(r.get("facts") for r in answerable), "CI questions name their key facts (facts_in_answer)"


@pytest.mark.parametrize("row", ANSWERABLE, ids=lambda r: r["question"][:60])
def test_source_exists_and_contains_the_reference(row: dict) -> None:
    texts = []
    for source in row["sources"]:
        name, sep, page = source.partition("#")
        assert (CORPUS / name).is_file(), f"{source}: no such file in evals/data/corpus"
        if name.endswith(".pdf"):
            assert sep and page.isdigit(), f"{source}: PDF sources need a 1-based page, e.g. {name}#3"
            assert 1 <= int(page) <= len(_pdf_pages(name)), f"{source}: page out of range"
        else:
            assert not sep, f"{source}: only PDFs have pages"
        texts.append(_normalize(_source_text(source)))
    cited = " ".join(texts)
    missing_numbers = _numbers(row["reference"]) - _numbers(cited)
    assert not missing_numbers, f"{row['sources']}: numbers {missing_numbers} of the reference are not in the source"
    words = _content_words(row["reference"])
    assert words or _numbers(row["reference"]), f"{row['question']!r}: reference has nothing checkable"
    found = {w for w in words if _occurs(w, cited)}
    assert len(found) >= 0.6 * len(words), f"{row['sources']}: only {sorted(found)} of {sorted(words)} found"


def test_gold_pages_are_the_right_ones() -> None:
    """For a PDF question, the cited page matches the reference better than (or as well as) any other page."""
    for row in ANSWERABLE:
        for source in row["sources"]:
            name, _, page = source.partition("#")
            if not page:
                continue
            words = _content_words(row["reference"]) | _numbers(row["reference"])
            scores = [sum(_occurs(w, _normalize(t)) for w in words) for t in _pdf_pages(name)]
            assert scores[int(page) - 1] == max(scores), f"{source}: page scores {scores} for {row['question']!r}"


def test_unanswerable_questions_are_not_covered_by_any_document() -> None:
    texts = {
        p.name: _normalize(_file_text(p.name) if p.suffix != ".pdf" else " ".join(_pdf_pages(p.name)))
        for p in CORPUS.iterdir()
    }
    for row in GOLD_ROWS:
        if row["reference"]:
            continue
        words = _content_words(row["question"])
        for name, text in texts.items():
            hits = {w for w in words if re.search(rf"\b{re.escape(w)}\b", text)}
            assert len(hits) < max(2, len(words)), f"{row['question']!r} may be answered by {name}: {hits}"


def test_every_corpus_pdf_has_a_text_layer() -> None:
    pdfs = sorted(CORPUS.glob("*.pdf"))
    assert len(pdfs) >= 3
    for pdf in pdfs:
        pages = _pdf_pages(pdf.name)
        assert 2 <= len(pages) <= 20, pdf.name
        assert all(len(t.strip()) > 200 for t in pages), f"{pdf.name}: a page without extractable text"


def test_corpus_stays_small() -> None:
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 3_000_000


def test_readme_documents_every_corpus_file() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for p in CORPUS.iterdir():
        assert f"`{p.name}`" in readme, f"{p.name}: provenance and licence missing from evals/data/README.md"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="docs/samples not written yet")
def test_sample_folder_questions_are_answered_by_its_documents() -> None:
    questions = [q for q in (SAMPLES / "questions.txt").read_text(encoding="utf-8").splitlines() if q.strip()]
    assert 2 <= len(questions) <= 5
    docs = [p for p in SAMPLES.iterdir() if p.name not in ("README.md", "questions.txt")]
    assert any(p.suffix == ".pdf" for p in docs) and any(p.suffix in (".md", ".txt") for p in docs)
    by_question = {r["question"]: r for r in GOLD_ROWS}
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for question in questions:
        assert question in readme, f"{question!r} is not listed in docs/samples/README.md"
        row = by_question.get(question)
        assert row is not None and row["reference"], f"{question!r} should be an answerable gold question"
        for source in row["sources"]:
            name = source.partition("#")[0]
            assert (SAMPLES / name).is_file(), f"{name} answers {question!r} but is not in docs/samples"
            assert (SAMPLES / name).read_bytes() == (CORPUS / name).read_bytes(), f"{name} differs from the corpus copy"


# -- the harder set (gold_hard.jsonl over corpus_hard/) ---------------------------------------------------------------

HARD_ROWS = _rows(GOLD_HARD)
HARD_ANSWERABLE = [r for r in HARD_ROWS if r["reference"]]
# What makes each in-domain unanswerable question unanswerable: words that no document on its topic contains.
APOLLO = ["Apollo_8.md", "Apollo_11.md", "Astronaut.txt"]
LPPL = ["lppl-1-0.txt", "lppl-1-1.txt", "lppl-1-2.txt", "lppl-1-3c.pdf"]
HARD_ABSENT = {  # question -> (the documents on its topic, words none of them contains)
    "How much did the Apollo 11 mission cost?": (APOLLO, ["cost", "dollars"]),
    "Who was the captain of the ship that recovered the Apollo 8 crew?": (APOLLO, ["captain"]),
    "In which city was Michael Collins born?": (APOLLO, ["collins was born", "collins, born", "collins (born"]),
    "Who was the flight surgeon of the Apollo 8 mission?": (["Apollo_8.md"], ["surgeon", "physician"]),
    "Which company manufactured the Apollo 11 space suits?": (APOLLO, ["manufactur", "ilc"]),
    "What salary did NASA pay the Apollo astronauts?": (APOLLO, ["salary", "salaries"]),
    "How much RAM is needed to compile R from source?": (["R-admin.pdf"], [" ram ", "gb of ram"]),
    "What is the default value of R_LIBS_USER on Linux?": (["R-admin.pdf"], ["r_libs_user is", "r_libs_user="]),
    "How long does it take to compile R from source?": (["R-admin.pdf"], ["minutes", "hours to"]),
    "What is the date of LPPL version 1.3a?": (LPPL, ["1.3a"]),
}


def _corpus_text(corpus: Path, name: str) -> str:
    return _normalize(" ".join(_pdf_pages(name, corpus)) if name.endswith(".pdf") else _file_text(name, corpus))


def _fact_found(fact: str, text: str) -> bool:
    return any(_normalize(alt).strip() in text for alt in fact.split("|"))


def test_hard_set_mix() -> None:
    kinds = [r["kind"] for r in HARD_ROWS]
    for kind, at_least in (("long_pdf", 10), ("near_duplicate", 12), ("two_passage", 4),
                           ("unanswerable_in_domain", 8)):  # fmt: skip
        assert kinds.count(kind) >= at_least, kind
    assert all(r.get("facts") for r in HARD_ANSWERABLE), "every answerable hard question names its key facts"
    assert all(len(r["sources"]) >= 2 for r in HARD_ROWS if r["kind"] == "two_passage")
    files = {s.partition("#")[0] for r in HARD_ANSWERABLE for s in r["sources"]}
    assert files == {p.name for p in CORPUS_HARD.iterdir()}, "every hard-corpus document should have gold questions"
    assert max(len(_pdf_pages("R-admin.pdf", CORPUS_HARD)), 0) >= 80, "the long PDF"


@pytest.mark.parametrize("row", HARD_ANSWERABLE, ids=lambda r: r["question"][:60])
def test_hard_facts_are_in_their_gold_sources(row: dict) -> None:
    per_source = [_normalize(_source_text(s, CORPUS_HARD)) for s in row["sources"]]
    for fact in row["facts"]:
        assert any(_fact_found(fact, t) for t in per_source), f"{fact!r} is not in {row['sources']}"
    if row["kind"] == "two_passage":  # each gold source holds at least one of the facts: the answer needs both
        assert all(any(_fact_found(f, t) for f in row["facts"]) for t in per_source), row["question"]


def test_hard_near_duplicates_differ_in_the_asked_fact() -> None:
    """No paragraph of a near-duplicate's twin file states all of its facts (else either file would do)."""
    twins = {"lppl-1-0.txt": ["lppl-1-1.txt", "lppl-1-2.txt"], "lppl-1-1.txt": ["lppl-1-0.txt", "lppl-1-2.txt"],
             "lppl-1-2.txt": ["lppl-1-0.txt", "lppl-1-1.txt"], "Apollo_8.md": ["Apollo_11.md"],
             "Apollo_11.md": ["Apollo_8.md"]}  # fmt: skip
    for row in HARD_ANSWERABLE:
        if row["kind"] != "near_duplicate" or row["sources"][0] not in twins:
            continue
        for twin in twins[row["sources"][0]]:
            for para in _file_text(twin, CORPUS_HARD).split("\n\n"):
                text = _normalize(para)
                topic = {w for w in _content_words(row["question"]) if _occurs(w, text)}
                answers = all(_fact_found(f, text) for f in row["facts"])
                assert not (answers and len(topic) > len(_content_words(row["question"])) / 2), (row["question"], twin)


def test_hard_pdf_pages_are_the_right_ones() -> None:
    for row in HARD_ANSWERABLE:
        for source in row["sources"]:
            name, _, page = source.partition("#")
            if page:
                pages = [_normalize(t) for t in _pdf_pages(name, CORPUS_HARD)]
                hits = [sum(_fact_found(f, t) for f in row["facts"]) for t in pages]
                assert hits[int(page) - 1] >= 1, (source, hits)
                if len(row["sources"]) == 1:  # the one page that answers: no other page states more of the facts
                    assert hits[int(page) - 1] == max(hits), (source, hits)


def test_hard_unanswerable_questions_name_what_is_missing() -> None:
    unanswerable = [r["question"] for r in HARD_ROWS if not r["reference"]]
    assert sorted(unanswerable) == sorted(HARD_ABSENT)
    for question, (files, absent) in HARD_ABSENT.items():
        for name in files:
            text = " " + _corpus_text(CORPUS_HARD, name) + " "
            assert not any(re.search(rf"(?<![a-z]){re.escape(a)}", text) for a in absent), f"{question!r}: {name}"


def test_readme_documents_every_hard_corpus_file() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for p in CORPUS_HARD.iterdir():
        assert f"`{p.name}`" in readme, f"{p.name}: provenance and licence missing from evals/data/README.md"
