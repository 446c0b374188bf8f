"""Rebuild the Wikipedia part of the evaluation corpora from the sample that ships inside gensim.

The corpus is committed; this script only documents (and reproduces) how the text files were made.
It needs ``gensim`` (4.4.0 was used), which is not a project dependency:

    python -m venv /tmp/v && /tmp/v/bin/pip install gensim
    /tmp/v/bin/python evals/data/build_corpus.py evals/data/corpus
    /tmp/v/bin/python evals/data/build_corpus.py evals/data/corpus_hard --set hard

The PDFs come from Debian documentation packages, copied unchanged (see evals/data/README.md):

    apt-get download texlive-latex-base-doc octave-doc r-doc-pdf && dpkg -x PKG.deb DIR

(``corpus_hard`` also holds the LPPL 1.0/1.1/1.2 texts, gunzipped unchanged from texlive-latex-base-doc, and R's
"R Installation and Administration" manual from r-doc-pdf.)

Cleaning: gensim's ``filter_wiki`` removes markup; before it runs, a few templates whose text matters
(``{{convert|55|to|80|cm}}`` -> "55 to 80 cm", ``{{lang|fr|...}}``) are expanded so measurements survive.
Reference sections (See also, Notes, References, External links...) are dropped.
"""

from __future__ import annotations

import bz2
import html
import os
import re
import sys

# title in the dump -> file name in the corpus (the suffix picks the format written)
ARTICLES = {
    "International Atomic Time": "International_Atomic_Time.md",
    "Albedo": "Albedo.md",
    "Aardvark": "Aardvark.md",
    "Aardwolf": "Aardwolf.txt",
    "Ampere": "Ampere.txt",
    "Allan Dwan": "Allan_Dwan.md",
    "An American in Paris": "An_American_in_Paris.md",
    "Arithmetic mean": "Arithmetic_mean.txt",
    "Atomic number": "Atomic_number.md",
    "Abacus": "Abacus.md",
    "American National Standards Institute": "American_National_Standards_Institute.txt",
    "Animalia (book)": "Animalia_book.txt",
    "Arraignment": "Arraignment.html",
}
# The harder set (corpus_hard/): two near-duplicate articles (two Apollo missions written to the same outline) and a
# related one, so a retriever and a citation checker must tell apart passages that read alike.
HARD_ARTICLES = {
    "Apollo 8": "Apollo_8.md",
    "Apollo 11": "Apollo_11.md",
    "Astronaut": "Astronaut.txt",
}
SETS = {"default": ARTICLES, "hard": HARD_ARTICLES}
DUMP = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
RANGE = {"to", "-", "–", "and", "or", "by", "x", "×"}
_TAIL = "See also|Notes|References|Footnotes|External links|Further reading|Bibliography|Sources|Citations"
STOP = re.compile(rf"^=+\s*({_TAIL})\s*=+\s*$", re.I | re.M)


def _template(m: re.Match[str]) -> str:
    parts = [p.strip() for p in m.group(2).split("|")]
    name = m.group(1).strip().lower()
    if name in ("convert", "cvt"):
        if len(parts) >= 4 and parts[1] in RANGE | {"and(-)"}:
            sep = "and" if parts[1] == "and(-)" else parts[1]
            return f"{parts[0]} {sep} {parts[2]} {parts[3]}"
        if len(parts) >= 2:
            return f"{parts[0]} {parts[1]}"
    if name == "lang" and len(parts) >= 2:
        return parts[1]
    if name in ("nowrap", "nobr", "small") and parts:
        return parts[0]
    if name == "val" and parts:
        return " ".join(p for p in parts[:2] if "=" not in p)
    return m.group(0)


def clean(title: str, raw: str, markdown: bool) -> str:
    """Wiki markup -> plain text (``markdown``: headings as ``##``)."""
    from gensim.corpora.wikicorpus import filter_wiki

    raw = re.sub(r"\{\{\s*(convert|cvt|lang|nowrap|nobr|small|val)\s*\|([^{}]*)\}\}", _template, raw, flags=re.I)
    t = filter_wiki(raw)
    m = STOP.search(t)
    if m:
        t = t[: m.start()]
    t = t.replace("'''", "").replace("''", "")
    t = re.sub(r"\(\s*[,;]?\s*\)", "", t)  # parentheses emptied by removed templates
    t = re.sub(r"[ \t]+", " ", t)
    t = re.sub(r" ([,.;:])", r"\1", t)
    lines: list[str] = []
    for line in t.split("\n"):
        line = line.strip()
        h = re.match(r"^(=+)\s*(.*?)\s*=+$", line)
        if h:
            lines += ["", ("#" * len(h.group(1)) + " " + h.group(2)) if markdown else h.group(2), ""]
            continue
        if line in ("*", "#", ":") or line.startswith(("|", "{|", "!")):
            continue  # empty list items and table rows left by filter_wiki
        lines.append(line)
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return (f"# {title}" if markdown else title) + "\n\n" + body + "\n"


def to_html(title: str, markdown_text: str) -> str:
    parts = []
    for block in markdown_text.split("\n\n"):
        h = re.match(r"^(#+) (.*)$", block)
        if h:
            n = len(h.group(1))
            parts.append(f"<h{n}>{html.escape(h.group(2))}</h{n}>")
        else:
            parts.append("<p>" + html.escape(block).replace("\n", "<br>\n") + "</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def main(out_dir: str, articles: dict[str, str] = ARTICLES) -> None:
    import gensim
    from gensim.corpora.wikicorpus import extract_pages

    dump = os.path.join(os.path.dirname(gensim.__file__), DUMP)
    for title, text, page_id in extract_pages(bz2.open(dump)):
        name = articles.get(title)
        if name is None:
            continue
        body = clean(title, text, markdown=not name.endswith(".txt"))
        if name.endswith(".html"):
            body = to_html(title, body)
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(body)
        print(f"page {page_id}: {title} -> {name} ({len(body)} chars)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--set" and a not in SETS]
    chosen = sys.argv[sys.argv.index("--set") + 1] if "--set" in sys.argv else "default"
    main(args[0] if args else os.path.join(os.path.dirname(__file__), "corpus"), SETS[chosen])
