"""Parsing benchmark: scanned pages, tables, slides and Office files, ours against the plain LangChain recipe.

The ground truth is built here, from a seed, each run (no hand-kept fixtures):

* **text PDFs** (reportlab): headings, paragraphs of real English prose (the news articles of gensim's
  ``lee_background.cor``) and one ruled table with a caption per document, with made-up but unambiguous cells;
* **scanned pages**: other one-page documents of the same kind, rasterised with PDFium at 200 dpi (clean), 200 dpi
  with a little noise (Gaussian grain, speckles, a 0.3 degree tilt) and 150 dpi with the same noise, each embedded as
  an image-only PDF (what a scanner writes). The scans carry their own text, not a copy of the text PDFs, so a
  question about a scanned page has one right answer;
* **DOCX, XLSX and PPTX** files with known headings, paragraphs, tables, slides and speaker notes.

Measured:

* OCR **character error rate** (Levenshtein distance / reference length, whitespace collapsed; the reference is the
  text layer of the page before it was rasterised), per scan variant;
* **table cell recall**: cells recovered in the right row (found by its row label) and the right column, over every
  cell of every known table (header included), per source format;
* **retrieval hit@5** on questions whose answer is in a table cell (the row label and the value must be in the same
  retrieved chunk), a sentence of a scanned page (a chunk of that page), or a bullet of a slide (a chunk of that
  slide): ``rag`` (``ingest_paths`` + ``RagPipeline.retrieve`` from ``rag.wiring``, hybrid default and dense)
  against the recipe of ``benchmarks/ingest.py`` (``PyPDFLoader`` +
  ``RecursiveCharacterTextSplitter.from_huggingface_tokenizer`` at the same token size + ``HuggingFaceEmbeddings``
  on the same packaged MiniLM + ``FAISS``). The recipe reads PDFs only;
* **OCR speed**, pages/s, one process against the process pool (``--workers``), interleaved, and OCR's share of
  the corpus's ingest time;
* **real documents**: PDFs of Debian's ``texlive-latex-base-doc`` and ``texlive-science-doc`` (a fixed sample up to
  ``--debian-pages`` pages): parse time of our loader (text, outline sections, table detection, OCR of the pages
  that need it) against pypdf's text extraction alone, pages OCR'd, tables found.

    $ .venv/bin/python benchmarks/parsing.py                       # ~9 minutes on 2 cores at load 15-19
    $ .venv/bin/python benchmarks/parsing.py --skip-debian --json parsing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # run as a script: this file's name must not hide the ``ingest`` package

DEBIAN_PACKAGES = ("texlive-latex-base-doc", "texlive-science-doc")

SCHEMES = [  # caption topic, row header, columns, how a value of each column is made
    ("Water samples by site", "Site", ["Samples", "Mean nitrate (mg/l)", "Analyst"], ["int", "float", "person"]),
    ("Orders by supplier", "Supplier", ["Orders", "Late deliveries", "Account manager"], ["int", "int", "person"]),
    ("Energy use by building", "Building", ["Electricity (MWh)", "Heating (MWh)", "Caretaker"],
     ["float", "float", "person"]),
    ("Training hours by department", "Department", ["Staff", "Training hours", "Coordinator"],
     ["int", "int", "person"]),
    ("Clinic visits by clinic", "Clinic", ["Visits in May", "Visits in June", "Head nurse"], ["int", "int", "person"]),
    ("Fuel costs by vehicle", "Vehicle", ["Kilometres", "Fuel cost (EUR)", "Driver"], ["int", "money", "person"]),
]
PLACES = """Aberlour Ballina Carrick Dunmore Elgin Falkirk Galway Harwich Inverurie Jedburgh Kelso Lerwick Maldon
Nairn Oban Peebles Quorn Rothesay Selkirk Tain Ullapool Ventnor Whitby Yeovil Alnwick Brora Cromer Dornoch Ely Fowey
Girvan Hexham Ilkley Keswick Lanark Moffat Newlyn Otley Penrith Redcar Settle Thirsk Wigtown Buxton Appleby""".split()
SUFFIXES = ["North", "Depot", "Works", "Hall", "Yard", "Lab", "House", "Point", "Mill", "Gate"]
PEOPLE = """Ingrid Olsen;Marco Bellini;Aiko Tanaka;Dmitri Volkov;Priya Raman;Tomas Novak;Lena Fischer;Kwame Mensah;
Sofia Alves;Jonas Berg;Mei Lin;Omar Haddad;Elena Petrova;Lucas Moreau;Hana Kim;Pavel Dvorak;Amara Okafor;
Nils Lund;Chiara Russo;Yusuf Demir""".replace("\n", "").split(";")


# ---------------------------------------------------------------------------------------------- ground truth
@dataclass
class Table:
    file: str
    caption: str
    rows: list[list[str]]  # header first
    kind: str = ""  # what the recall is reported under: "pdf (grid)", "pdf (rules only)", "docx", ...


@dataclass
class Question:
    kind: str  # "table-pdf", "table-office", "scan", "slide"
    text: str
    file: str
    page: int | None = None
    must_contain: tuple[str, ...] = ()


@dataclass
class Truth:
    tables: list[Table] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    scan_sources: dict[str, Path] = field(default_factory=dict)  # scan stem -> the text PDF it was made from
    variants: dict[str, list[Path]] = field(default_factory=dict)  # variant -> scanned PDFs


def _articles(seed: int) -> list[list[str]]:
    """Real English prose: the sentences of gensim's Lee background corpus (300 news articles), article by article
    (in an order shuffled by ``seed``), so a document made of one article reads as one topic, as real ones do."""
    import gensim

    text = (Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor").read_text(errors="replace")
    out = []
    for article in text.splitlines():
        sentences = []
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", article):
            s = " ".join(s.split())
            if 60 <= len(s) <= 240 and not re.search(r"[<>&]", s):
                sentences.append(s)
        if len(sentences) >= 4:
            out.append(sentences)
    random.Random(seed).shuffle(out)
    return out


class _Maker:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.articles = _articles(seed)
        self.current: list[str] = []
        self.labels = [f"{p} {s}" for p in PLACES for s in SUFFIXES]
        self.rng.shuffle(self.labels)

    def new_document(self) -> None:
        """The next sentences come from a fresh article."""
        self.current = list(reversed(self.articles.pop()))

    def sentence(self) -> str:
        if not self.current:  # a long document continues with the next article
            self.new_document()
        return self.current.pop()

    def paragraph(self, n: int = 3) -> str:
        return " ".join(self.sentence() for _ in range(n))

    def heading(self) -> str:
        words = [w for w in re.findall(r"[A-Za-z]{5,}", self.sentence())][:3]
        return " ".join(w.capitalize() for w in words) or "Notes"

    def value(self, kind: str) -> str:
        if kind == "int":
            return f"{self.rng.randint(12, 9800):,}"
        if kind == "float":
            return f"{self.rng.uniform(1, 400):.1f}"
        if kind == "money":
            return f"{self.rng.randint(200, 40000):,}.{self.rng.randint(0, 99):02d}"
        return self.rng.choice(PEOPLE)

    def table(self, file: str, number: int, n_rows: int = 6) -> Table:
        topic, row_header, cols, kinds = self.rng.choice(SCHEMES)
        rows = [[row_header, *cols]]
        for _ in range(n_rows):
            rows.append([self.labels.pop(), *(self.value(k) for k in kinds)])
        return Table(file, f"Table {number}: {topic}", rows)


def _table_questions(truth: Truth, table: Table, kind: str, rng: random.Random, n: int = 2) -> None:
    body = table.rows[1:]
    for row in rng.sample(body, min(n, len(body))):
        j = rng.randrange(1, len(row))
        col = table.rows[0][j]
        topic = table.caption.split(": ", 1)[-1].lower()
        truth.questions.append(Question(kind, f"What is the {col} for {row[0]} in the {topic} table?", table.file,
                                        must_contain=(row[0], row[j])))


GRID = [("GRID", (0, 0), (-1, -1), 0.5, "black"), ("FONTSIZE", (0, 0), (-1, -1), 9)]
RULES_ONLY = [("LINEABOVE", (0, 0), (-1, 0), 1, "black"), ("LINEBELOW", (0, 0), (-1, 0), 0.5, "black"),
              ("LINEBELOW", (0, -1), (-1, -1), 1, "black"), ("FONTSIZE", (0, 0), (-1, -1), 9)]  # LaTeX booktabs


def _pdf_story(maker: _Maker, table: Table | None, sections: int, grid: bool = True) -> list[Any]:
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, Spacer, TableStyle
    from reportlab.platypus import Table as RLTable

    styles = getSampleStyleSheet()
    maker.new_document()
    story: list[Any] = [Paragraph(maker.heading(), styles["Heading1"])]
    for s in range(sections):
        story.append(Paragraph(maker.heading(), styles["Heading2"]))
        story.append(Paragraph(maker.paragraph(), styles["Normal"]))
        story.append(Spacer(1, 6))
        if table is not None and s == 0:
            story.append(Paragraph(table.caption, styles["Normal"]))
            story.append(RLTable(table.rows, style=TableStyle(GRID if grid else RULES_ONLY)))
            story.append(Spacer(1, 6))
        story.append(Paragraph(maker.paragraph(), styles["Normal"]))
    return story


def _write_pdf(path: Path, story: list[Any]) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import SimpleDocTemplate

    SimpleDocTemplate(str(path), pagesize=A4).build(story)


def _scan(source: Path, target: Path, dpi: int, noise: bool, rng: random.Random) -> None:
    """``source`` rasterised at ``dpi`` (optionally with grain, speckles and a slight tilt), as an image-only PDF."""
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    doc = pdfium.PdfDocument(str(source))
    c = canvas.Canvas(str(target), pagesize=A4)
    for i in range(len(doc)):
        img = doc[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
        if noise:
            img = img.rotate(rng.uniform(-0.3, 0.3), resample=Image.BICUBIC, fillcolor=255, expand=False)
            a = np.asarray(img, dtype=np.float32)
            nrng = np.random.default_rng(rng.randrange(1 << 30))
            a = a + nrng.normal(0, 12, a.shape)
            specks = nrng.random(a.shape) < 0.0008
            a[specks] = 0
            img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        c.drawImage(ImageReader(img), 0, 0, width=A4[0], height=A4[1])
        c.showPage()
    c.save()
    doc.close()


def build(work: Path, seed: int, n_pdfs: int, n_scans: int) -> Truth:
    """The corpus in ``work/corpus`` (what both systems index) and extra scan variants in ``work/scans``."""
    import docx
    import openpyxl
    from pptx import Presentation
    from pptx.util import Inches

    corpus, scans, sources = work / "corpus", work / "scans", work / "scan-sources"
    for d in (corpus, scans, sources):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    maker = _Maker(seed)
    rng = random.Random(seed + 1)
    truth = Truth()
    number = 1
    # text PDFs with a table: ruled as a grid (three of four), or with horizontal rules only (LaTeX booktabs style)
    for i in range(n_pdfs):
        name = f"report-{i + 1:02d}.pdf"
        table = maker.table(name, number)
        number += 1
        grid = i % 4 != 3
        table.kind = "pdf (grid)" if grid else "pdf (rules only)"
        truth.tables.append(table)
        _table_questions(truth, table, "table-pdf" if grid else "table-pdf-rules-only", rng)
        _write_pdf(corpus / name, _pdf_story(maker, table, sections=3, grid=grid))
    # scanned pages: their own text, three variants; the noisy 150 dpi one is indexed
    truth.variants = {"clean 200 dpi": [], "noisy 200 dpi": [], "noisy 150 dpi": []}
    for i in range(n_scans):
        stem = f"scan-{i + 1:02d}"
        src = sources / f"{stem}.pdf"
        story = _pdf_story(maker, None, sections=2)
        paragraphs = [p.text for p in story if type(p).__name__ == "Paragraph" and len(p.text) > 120]
        _write_pdf(src, story)  # (building consumes the story)
        truth.scan_sources[stem] = src
        for variant, dpi, noise in (("clean 200 dpi", 200, False), ("noisy 200 dpi", 200, True),
                                    ("noisy 150 dpi", 150, True)):
            out = scans / f"{stem} {variant.replace(' ', '-')}.pdf"
            _scan(src, out, dpi, noise, rng)
            truth.variants[variant].append(out)
        shutil.copy(truth.variants["noisy 150 dpi"][-1], corpus / f"{stem}.pdf")
        for para in rng.sample(paragraphs, min(2, len(paragraphs))):
            sentence = rng.choice(re.split(r"(?<=[.!?])\s+", para))
            # a hit is a chunk of that scanned page (the page is the whole document)
            truth.questions.append(Question("scan", sentence, f"{stem}.pdf", page=1))
    # DOCX with a captioned table
    for i in range(2):
        name = f"memo-{i + 1}.docx"
        d = docx.Document()
        maker.new_document()
        d.add_heading(maker.heading(), level=0)
        table = maker.table(name, number)
        number += 1
        for s in range(3):
            d.add_heading(maker.heading(), level=1)
            d.add_paragraph(maker.paragraph())
            if s == 1:
                d.add_paragraph(table.caption)
                t = d.add_table(rows=len(table.rows), cols=len(table.rows[0]))
                for r, row in enumerate(table.rows):
                    for c, value in enumerate(row):
                        t.cell(r, c).text = value
        d.save(str(corpus / name))
        truth.tables.append(table)
        _table_questions(truth, table, "table-office", rng)
    # XLSX, two sheets with a title row over each table
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for s in range(2):
        table = maker.table("figures.xlsx", number)
        number += 1
        ws = wb.create_sheet(f"Sheet {s + 1}")
        ws.append([table.caption])
        for row in table.rows:
            ws.append(row)
        truth.tables.append(table)
        _table_questions(truth, table, "table-office", rng)
    wb.save(str(corpus / "figures.xlsx"))
    # PPTX decks: bullets and notes; one slide of each deck holds a table
    for k in range(2):
        name = f"deck-{k + 1}.pptx"
        prs = Presentation()
        maker.new_document()
        for n in range(1, 7):
            if n == 4:
                table = maker.table(name, number)
                number += 1
                slide = prs.slides.add_slide(prs.slide_layouts[5])
                slide.shapes.title.text = table.caption
                shape = slide.shapes.add_table(len(table.rows), len(table.rows[0]), Inches(0.3), Inches(1.5),
                                               Inches(9.4), Inches(4))
                for r, row in enumerate(table.rows):
                    for c, value in enumerate(row):
                        shape.table.cell(r, c).text = value
                truth.tables.append(table)
                _table_questions(truth, table, "table-office", rng, n=1)
                continue
            slide = prs.slides.add_slide(prs.slide_layouts[1])
            slide.shapes.title.text = maker.heading()
            bullets = [maker.sentence() for _ in range(3)]
            slide.placeholders[1].text_frame.text = "\n".join(bullets)
            slide.notes_slide.notes_text_frame.text = maker.sentence()
            if n in (2, 5):
                truth.questions.append(Question("slide", rng.choice(bullets), name, page=n))
        prs.save(str(corpus / name))
    return truth


# ----------------------------------------------------------------------------------------------------- metrics
def _norm(text: str) -> str:
    return " ".join(text.split())


def cer(reference: str, hypothesis: str) -> float:
    from rapidfuzz.distance import Levenshtein

    ref, hyp = _norm(reference), _norm(hypothesis)
    return Levenshtein.distance(ref, hyp) / max(len(ref), 1)


def _markdown_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|(\s*---\s*\|)+$", line):
            rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return rows


def cell_recall(table: Table, recovered: list[list[list[str]]]) -> tuple[int, int]:
    """(cells found in the right row and column, cells) for one known table against the recovered tables."""
    total = sum(len(r) for r in table.rows)
    best = 0
    for rows in recovered:
        if not rows:
            continue
        header = rows[0]
        found = sum(1 for j, v in enumerate(table.rows[0]) if j < len(header) and _norm(header[j]) == _norm(v))
        by_label = {_norm(r[0]): r for r in rows[1:] if r}
        for want in table.rows[1:]:
            got = by_label.get(_norm(want[0]))
            if got:
                found += sum(1 for j, v in enumerate(want) if j < len(got) and _norm(got[j]) == _norm(v))
        best = max(best, found)
    return best, total


# --------------------------------------------------------------------------------------------------- the runs
def ocr_runs(truth: Truth, workers: int, repeats: int) -> dict[str, Any]:
    """CER per scan variant, and pages/s in one process vs the pool (interleaved A, B, A, B)."""
    from pypdf import PdfReader

    from ingest.formats.common import LoadOptions
    from ingest.formats.ocr import shutdown_pool
    from ingest.formats.pdf import load_pdf

    out: dict[str, Any] = {}
    timings: dict[str, list[float]] = {"1 process": [], f"pool of {workers}": []}
    pages = 0
    for v, (variant, files) in enumerate(truth.variants.items()):
        errors = []
        for rep in range(repeats):
            for mode in (["1 process", f"pool of {workers}"] if (rep + v) % 2 == 0 else
                         [f"pool of {workers}", "1 process"]):
                w = 1 if mode == "1 process" else workers
                t0 = time.perf_counter()
                texts = {}
                for f in files:
                    # the pool spans the files of a run, as it does in an ingestion run
                    docs = list(load_pdf(f, "h", LoadOptions(ocr_workers=w)))
                    texts[f] = "\n".join(d.text for d in docs)
                if w > 1:
                    shutdown_pool()
                timings[mode].append(time.perf_counter() - t0)
                if not errors:
                    for f in files:
                        stem = f.name.split(" ")[0]
                        ref = "\n".join(p.extract_text() or "" for p in PdfReader(truth.scan_sources[stem]).pages)
                        errors.append(cer(ref, texts[f]))
        pages += len(files) * repeats
        out[variant] = {"pages": len(files), "cer_mean": sum(errors) / len(errors), "cer_max": max(errors)}
    out["speed"] = {mode: {"seconds": sum(ts), "pages_per_s": pages / sum(ts)} for mode, ts in timings.items()}
    out["speed"]["pool_start_included"] = True
    return out


def table_recall(truth: Truth, corpus: Path) -> dict[str, Any]:
    from ingest.load import load_file

    by_file: dict[str, list[list[list[str]]]] = {}
    for name in {t.file for t in truth.tables}:
        docs = list(load_file(corpus / name, "h"))
        by_file[name] = [_markdown_rows(d.text) for d in docs if d.table_header is not None]
    per_type: dict[str, list[int]] = {}
    for t in truth.tables:
        found, total = cell_recall(t, by_file[t.file])
        acc = per_type.setdefault(t.kind or Path(t.file).suffix.lstrip("."), [0, 0])
        acc[0] += found
        acc[1] += total
    out = {k: {"cells": v[1], "recall": v[0] / v[1]} for k, v in sorted(per_type.items())}
    found_all = sum(v[0] for v in per_type.values())
    out["all"] = {"cells": sum(v[1] for v in per_type.values()), "recall": found_all / sum(v[1] for v in
                                                                                          per_type.values())}
    return out


def _hit(q: Question, hits: Sequence[tuple[str, int | None, str]]) -> bool:
    for source, page, text in hits:
        if Path(source).name != q.file:
            continue
        if q.page is not None and page != q.page:
            continue
        flat = _norm(text)
        if all(_norm(m) in flat for m in q.must_contain):
            return True
    return False


def retrieval(truth: Truth, corpus: Path, data_dir: Path, size: int, overlap: int) -> dict[str, Any]:
    from ingest.formats.ocr import shutdown_pool
    from ingest.pipeline import ingest_paths
    from rag.config import Settings
    from rag.wiring import Wiring

    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, collection="parsing",
                        chunk={"size_tokens": size, "overlap_tokens": overlap})
    t0 = time.perf_counter()
    summary = ingest_paths([corpus], settings)
    ours_s = time.perf_counter() - t0
    shutdown_pool()
    wiring = Wiring(settings)
    pipe = wiring.pipeline()  # the LLM is never asked: retrieval only
    ranked: dict[str, list[list[tuple[str, int | None, str]]]] = {"rag hybrid (default)": [], "rag dense": []}
    for q in truth.questions:
        for label, mode in (("rag hybrid (default)", None), ("rag dense", "dense")):
            hits = pipe.retrieve(q.text, k=5, mode=mode)
            ranked[label].append([(h.chunk.source, h.chunk.page, h.chunk.text) for h in hits])
    wiring.close()

    t0 = time.perf_counter()
    db, n_chunks, scan_chars = recipe_index(corpus, size, overlap)
    recipe_s = time.perf_counter() - t0
    ranked["LangChain recipe"] = []
    for q in truth.questions:
        docs = db.similarity_search(q.text, k=5)
        # PyPDFLoader pages are 0-based; ours and the questions count from 1
        ranked["LangChain recipe"].append([(d.metadata["source"], int(d.metadata.get("page", 0)) + 1,
                                            d.page_content) for d in docs])
    kinds = sorted({q.kind for q in truth.questions})
    table: dict[str, dict[str, float]] = {}
    for system, per_q in ranked.items():
        row = {}
        for kind in kinds:
            idx = [i for i, q in enumerate(truth.questions) if q.kind == kind]
            row[kind] = sum(_hit(truth.questions[i], per_q[i]) for i in idx) / len(idx)
        row["all"] = sum(_hit(q, per_q[i]) for i, q in enumerate(truth.questions)) / len(truth.questions)
        table[system] = row
    return {"hit_at_5": table, "questions": {k: sum(q.kind == k for q in truth.questions) for k in kinds},
            "ingest": {"rag_seconds": ours_s, "rag_chunks": summary.chunks_added, "rag_ocr_pages": summary.ocr_pages,
                       "rag_failed": [f.reason for f in summary.failed], "recipe_seconds": recipe_s,
                       "recipe_chunks": n_chunks, "recipe_chars_from_scans": scan_chars}}


def recipe_index(corpus: Path, size: int, overlap: int) -> tuple[Any, int, int]:
    """The plain LangChain recipe of ``benchmarks/ingest.py``, kept in memory to be searched."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    from rag.embedders import resolve_model_path

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    model_path = resolve_model_path("all-MiniLM-L6-v2")
    docs = []
    for f in sorted(corpus.glob("*.pdf")):
        docs += PyPDFLoader(str(f)).load()
    scan_chars = sum(len(d.page_content.strip()) for d in docs if Path(d.metadata["source"]).name.startswith("scan"))
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        AutoTokenizer.from_pretrained(model_path), chunk_size=size, chunk_overlap=overlap
    )
    chunks = splitter.split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=model_path, encode_kwargs={"normalize_embeddings": True})
    return FAISS.from_documents(chunks, embeddings), len(chunks), scan_chars


# ------------------------------------------------------------------------------------------------------ Debian
def debian_pdfs(cache: Path, pages: int, seed: int) -> tuple[list[Path], int]:
    """A fixed random sample of the packages' PDFs (at most 60 pages each) summing to about ``pages`` pages."""
    from pypdf import PdfReader

    extracted = cache / "x"
    if not extracted.exists():
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for pkg in DEBIAN_PACKAGES:
            if not list(debs.glob(f"{pkg}_*.deb")):
                subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True)
            deb = next(debs.glob(f"{pkg}_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(extracted)], check=True)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    candidates = sorted(extracted.rglob("*.pdf"))
    random.Random(seed).shuffle(candidates)
    chosen, total = [], 0
    for f in candidates:
        try:
            n = len(PdfReader(f).pages)
        except Exception:
            continue
        if n > 60:
            continue
        chosen.append(f)
        total += n
        if total >= pages:
            break
    return chosen, total


def debian_run(files: list[Path], workers: int) -> dict[str, Any]:
    """Per file, interleaved: pypdf text alone vs our loader (sections, tables, OCR where needed)."""
    from pypdf import PdfReader

    from ingest.formats.common import LoadOptions
    from ingest.formats.ocr import shutdown_pool
    from ingest.load import load_file
    from rag.errors import IngestError

    plain_s = ours_s = 0.0
    ocr_pages: set[tuple[str, int | None]] = set()
    ocr_files: list[str] = []
    tables = 0
    failed: dict[str, str] = {}
    pages = 0
    for i, f in enumerate(files):
        def plain(f: Path = f) -> int:
            return sum(len(p.extract_text() or "") for p in PdfReader(f).pages)

        def ours(f: Path = f) -> list[Any]:
            try:
                return list(load_file(f, "h", LoadOptions(ocr_workers=workers)))
            except IngestError as e:
                failed[f.name] = str(e)
                return []

        order = (plain, ours) if i % 2 == 0 else (ours, plain)
        for fn in order:
            t0 = time.perf_counter()
            result = fn()
            dt = time.perf_counter() - t0
            if fn is plain:
                plain_s += dt
            else:
                ours_s += dt
                docs = result
        pages += len(PdfReader(f).pages)
        mine = {(f.name, d.page) for d in docs if d.ocr}
        if mine:
            ocr_files.append(f.name)
        ocr_pages |= mine
        tables += sum(1 for d in docs if d.table_header is not None)
    shutdown_pool()
    return {"files": len(files), "pages": pages, "pypdf_text_s": plain_s, "ours_s": ours_s,
            "ours_over_pypdf": ours_s / max(plain_s, 1e-9), "ocr_pages": len(ocr_pages), "ocr_files": ocr_files,
            "tables": tables, "failed": failed}


# -------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "rag-bench" / "parsing")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--pdfs", type=int, default=8, help="text PDFs with a table")
    ap.add_argument("--scans", type=int, default=6, help="scanned pages (each in three variants)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="OCR processes in the pool")
    ap.add_argument("--repeats", type=int, default=1, help="OCR speed runs per mode and scan variant (interleaved)")
    ap.add_argument("--debian-pages", type=int, default=400)
    ap.add_argument("--skip-debian", action="store_true")
    ap.add_argument("--only-ocr", action="store_true", help="build the corpus, then measure OCR (CER, speed) only")
    ap.add_argument("--json", type=Path, default=None, help="write every number here too")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rag.config import ChunkSettings

    chunk = ChunkSettings()
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    t0 = time.perf_counter()
    truth = build(args.work, args.seed, args.pdfs, args.scans)
    results["build_s"] = time.perf_counter() - t0
    print(f"corpus: {len(list((args.work / 'corpus').iterdir()))} files, {len(truth.tables)} tables, "
          f"{len(truth.questions)} questions ({results['build_s']:.0f} s)", flush=True)
    results["tables"] = table_recall(truth, args.work / "corpus")
    print("table cell recall:", json.dumps(results["tables"]), flush=True)
    results["ocr"] = ocr_runs(truth, args.workers, args.repeats)
    print("ocr:", json.dumps(results["ocr"]), flush=True)
    if args.only_ocr:
        results["load_after"] = os.getloadavg()
        print(json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    results["retrieval"] = retrieval(truth, args.work / "corpus", args.work / "data", chunk.size_tokens,
                                     chunk.overlap_tokens)
    ocr_pages_s = results["ocr"]["speed"][f"pool of {args.workers}"]["pages_per_s"]
    ingest = results["retrieval"]["ingest"]
    ingest["ocr_share_estimate"] = (ingest["rag_ocr_pages"] / ocr_pages_s) / ingest["rag_seconds"]
    print("retrieval:", json.dumps(results["retrieval"]), flush=True)
    if not args.skip_debian:
        files, pages = debian_pdfs(args.work.parent / "debian-docs", args.debian_pages, args.seed)
        results["debian"] = debian_run(files, args.workers)
        print("debian:", json.dumps(results["debian"]), flush=True)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
