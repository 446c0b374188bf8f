"""Real files for the ingestion tests: PDFs made with reportlab (text, image-only, encrypted), odd text files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

PAGES = [
    "The mitochondria is the powerhouse of the cell. It produces ATP through respiration.",
    "Photosynthesis in chloroplasts turns light, water and carbon dioxide into glucose.",
    "Ribosomes translate messenger RNA into proteins, one amino acid at a time.",
]


def write_pdf(path: Path, pages: Sequence[str]) -> Path:
    """A real PDF with a text layer: one page per string (long strings wrap over lines)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        y = 800
        words = text.split()
        for i in range(0, len(words), 12):
            c.drawString(40, y, " ".join(words[i : i + 12]))
            y -= 14
            if y < 40:
                c.showPage()
                y = 800
        c.showPage()
    c.save()
    return path


def write_image_only_pdf(path: Path) -> Path:
    """A 'scanned' PDF: two pages of drawings, no text layer."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for _ in range(2):
        c.rect(50, 50, 300, 400, fill=1)
        c.circle(200, 600, 80, fill=1)
        c.showPage()
    c.save()
    return path


def write_encrypted_pdf(path: Path, user_password: str, source: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(source).pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    with path.open("wb") as f:
        writer.write(f)
    return path


@pytest.fixture
def make_pdf(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "doc.pdf", pages: Sequence[str] = PAGES, folder: Path | None = None) -> Path:
        target = (folder or tmp_path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return write_pdf(target, pages)

    return make


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A folder like a user's: a PDF, Markdown, text, HTML, an unsupported file, and a nested folder."""
    root = tmp_path / "my docs"
    (root / "nested ünïcode").mkdir(parents=True)
    write_pdf(root / "biology.pdf", PAGES)
    (root / "notes.md").write_text(
        "# Rivers\n\nThe Danube flows through ten countries and ends in the Black Sea.\n\n"
        "## Deltas\n\nA delta forms where a river deposits sediment at its mouth.\n",
        encoding="utf-8",
    )
    (root / "nested ünïcode" / "café menu.txt").write_text(
        "Espresso is brewed by forcing hot water through finely ground coffee.\n", encoding="utf-8"
    )
    (root / "page.html").write_text(
        "<html><head><title>Volcanoes</title><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><nav>Home</nav><p>Magma that reaches the surface is called lava.</p></body></html>",
        encoding="utf-8",
    )
    (root / "slides.key").write_bytes(b"PK\x03\x04 a Keynote deck: not a type we read")
    return root


@pytest.fixture
def kit() -> object:
    """The helpers above, for test modules (conftest is not importable under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        PAGES=PAGES, write_pdf=write_pdf, write_image_only_pdf=write_image_only_pdf,
        write_encrypted_pdf=write_encrypted_pdf,
    )
