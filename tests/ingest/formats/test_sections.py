"""Section paths from headings (Markdown, HTML, DOCX, PPTX titles, PDF outlines): stored on each chunk, embedded with
its text but not shown in it, and no chunk straddles two sections."""

from __future__ import annotations

from pathlib import Path

from ingest.chunk import Chunker
from ingest.load import load_file
from rag.types import Chunk


def _words(text: str) -> int:
    return len(text.split())


def _chunks(path: Path, size: int = 60) -> list[Chunk]:
    return list(Chunker(_words, size_tokens=size, overlap_tokens=5).split_all(load_file(path, "h")))


MARKDOWN = """# Training

Models learn from data.

## Optimisers

### Adam

Adam keeps running averages of the gradient and its square. Use a learning rate near 3e-4.

### SGD

Plain stochastic gradient descent with momentum 0.9 still wins on some vision tasks.

# Evaluation

Hold out ten percent of the data.
"""


def test_markdown_section_paths_are_stored_embedded_and_not_shown(tmp_path: Path) -> None:
    md = tmp_path / "notes.md"
    md.write_text(MARKDOWN)
    chunks = _chunks(md)
    by_section = {c.section: c for c in chunks}
    assert list(by_section) == ["Training", "Training › Optimisers › Adam", "Training › Optimisers › SGD",
                                "Evaluation"]  # "Optimisers" holds only its heading: no chunk of its own
    adam = by_section["Training › Optimisers › Adam"]
    assert adam.text.startswith("### Adam") and "Training ›" not in adam.text  # shown text: the document's own
    assert adam.embedding_text == "Training › Optimisers › Adam\n\n" + adam.text
    assert "momentum" not in adam.text and "Adam" not in by_section["Training › Optimisers › SGD"].text
    # ids are stable for unchanged content, and spans point into the file
    assert [c.id for c in _chunks(md)] == [c.id for c in chunks]
    text = md.read_text()
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_a_long_section_is_split_but_never_mixed_with_the_next(tmp_path: Path) -> None:
    md = tmp_path / "long.md"
    body = " ".join(f"Sentence {i} about glaciers." for i in range(60))
    md.write_text(f"# Glaciers\n\n{body}\n\n# Deserts\n\nDunes move with the wind.\n")
    chunks = _chunks(md, size=40)
    glacier = [c for c in chunks if c.section == "Glaciers"]
    assert len(glacier) > 3 and all("Dunes" not in c.text for c in glacier)
    assert [c.text.strip() for c in chunks if c.section == "Deserts"] == ["# Deserts\n\nDunes move with the wind."]


def test_html_headings_give_sections(tmp_path: Path) -> None:
    page = tmp_path / "guide.html"
    page.write_text("<title>Guide</title><h1>Setup</h1><p>Install the package.</p><h2>On Linux</h2>"
                    "<p>Use apt.</p><h1>Usage</h1><p>Run it.</p>")
    assert [(d.section, d.text) for d in load_file(page, "h")] == [
        ("Setup", "Guide\n\nSetup\nInstall the package."), ("Setup › On Linux", "On Linux\nUse apt."),
        ("Usage", "Usage\nRun it."),
    ]


def _pdf_with_outline(path: Path) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    c.bookmarkPage("intro")
    c.addOutlineEntry("Introduction", "intro", level=0)
    c.drawString(60, 780, "Introduction")
    c.drawString(60, 750, "Glaciers cover a tenth of the land on Earth.")
    c.showPage()
    c.bookmarkPage("methods")
    c.addOutlineEntry("Methods", "methods", level=0)
    c.drawString(60, 780, "Methods")
    c.drawString(60, 750, "We flew a drone over the ice sheet every week.")
    c.bookmarkHorizontal("sampling", 0, 520)
    c.addOutlineEntry("Ice sampling", "sampling", level=1)
    c.drawString(60, 500, "Ice sampling")
    c.drawString(60, 470, "Cores were drilled to a depth of forty metres.")
    c.showPage()
    c.save()
    return path


def test_pdf_outline_gives_sections_and_splits_a_page_at_a_heading(tmp_path: Path) -> None:
    docs = list(load_file(_pdf_with_outline(tmp_path / "paper.pdf"), "h"))
    assert [(d.page, d.section) for d in docs] == [
        (1, "Introduction"), (2, "Methods"), (2, "Methods › Ice sampling"),
    ]
    assert "drone" in docs[1].text and "Cores" not in docs[1].text
    assert docs[2].text.startswith("Ice sampling") and "forty metres" in docs[2].text
