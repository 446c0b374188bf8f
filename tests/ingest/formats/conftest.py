"""Real files of every new type, made here: python-docx, python-pptx, openpyxl, reportlab tables, PIL scans, e-mail.

The helpers are handed to test modules through the ``make`` fixture (conftest modules are not importable under
``--import-mode=importlib``).
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

SALES_ROWS = [
    ["Region", "Q1 revenue", "Q2 revenue", "Manager"],
    ["North", "1,204", "1,377", "Ingrid Olsen"],
    ["South", "2,518", "2,106", "Marco Bellini"],
    ["East", "988", "1,042", "Aiko Tanaka"],
    ["West", "3,391", "3,740", "Dmitri Volkov"],
]


def write_docx(path: Path, *, table: Sequence[Sequence[str]] = SALES_ROWS) -> Path:
    """Title, two levels of headings, paragraphs, a captioned table and text after it."""
    import docx

    d = docx.Document()
    d.add_heading("Annual report", level=0)
    d.add_heading("Operations", level=1)
    d.add_paragraph("The warehouse in Tromsø ships frozen cod to eleven countries.")
    d.add_heading("Sales", level=1)
    d.add_heading("By region", level=2)
    d.add_paragraph("Table 4: Revenue by region in thousands of euros")
    t = d.add_table(rows=len(table), cols=len(table[0]))
    for i, row in enumerate(table):
        for j, value in enumerate(row):
            t.cell(i, j).text = value
    d.add_paragraph("Revenue grew fastest where the manager had been in post longest.")
    d.add_heading("Outlook", level=1)
    d.add_paragraph("Next year the company plans a second warehouse in Bodø.")
    d.save(str(path))
    return path


def write_pptx(path: Path, slides: Sequence[dict[str, Any]]) -> Path:
    """One slide per dict: ``title``, ``body`` (lines), optional ``notes`` and ``table`` (rows)."""
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    for spec in slides:
        layout = prs.slide_layouts[5] if spec.get("table") else prs.slide_layouts[1]
        slide = prs.slides.add_slide(layout)
        slide.shapes.title.text = spec["title"]
        if spec.get("table"):
            rows = spec["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(0.5), Inches(1.5), Inches(9), Inches(3))
            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    shape.table.cell(i, j).text = value
        else:
            slide.placeholders[1].text_frame.text = "\n".join(spec.get("body", []))
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    prs.save(str(path))
    return path


def write_xlsx(path: Path, sheets: dict[str, Sequence[Sequence[Any]]]) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(list(row))
    wb.save(str(path))
    return path


def write_table_pdf(path: Path, grid: bool = True) -> Path:
    """A text PDF with a heading, a paragraph, a ruled table with a caption, and a paragraph after it.

    ``grid=False`` rules the table with three horizontal lines only (top, under the header, bottom), as LaTeX's
    booktabs does.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    story = [
        Paragraph("Fleet maintenance", styles["Heading1"]),
        Paragraph("Every lorry is inspected twice a year at the depot in Linz.", styles["Normal"]),
        Spacer(1, 12),
        Paragraph("Table 2: Inspection costs per vehicle", styles["Normal"]),
        Table(SALES_ROWS, style=TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)] if grid else [
            ("LINEABOVE", (0, 0), (-1, 0), 1, colors.black), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
            ("LINEBELOW", (0, -1), (-1, -1), 1, colors.black)])),
        Spacer(1, 12),
        Paragraph("Tyres are replaced after forty thousand kilometres.", styles["Normal"]),
    ]
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return path


def write_text_pdf(path: Path, pages: Sequence[str]) -> Path:
    """A PDF with a text layer, one page per string (wrapped at 80 characters, Helvetica 14)."""
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        c.setFont("Helvetica", 14)
        y = 780
        for line in textwrap.wrap(text, 70):
            c.drawString(60, y, line)
            y -= 22
        c.showPage()
    c.save()
    return path


def rasterise(pdf: Path, dpi: int = 150) -> list[Any]:
    """The pages of a PDF as greyscale PIL images (PDFium)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        return [doc[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for i in range(len(doc))]
    finally:
        doc.close()


def write_scanned_pdf(path: Path, pages: Sequence[str], dpi: int = 150, stamp: str | None = None) -> Path:
    """An image-only PDF: the text pages rendered at ``dpi`` and embedded as pictures (a scanner's output).

    ``stamp`` adds a thin real text layer (a header line) above the picture, as some scanners do.
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    images = rasterise(write_text_pdf(path.with_suffix(".src.pdf"), pages), dpi)
    path.with_suffix(".src.pdf").unlink()
    c = canvas.Canvas(str(path), pagesize=A4)
    for img in images:
        c.drawImage(ImageReader(img), 0, 0, width=A4[0], height=A4[1])
        if stamp:
            c.setFont("Helvetica", 8)
            c.drawString(20, A4[1] - 12, stamp)
        c.showPage()
    c.save()
    return path


def write_png(path: Path, text: str, dpi: int = 150) -> Path:
    rasterise(write_text_pdf(path.with_suffix(".src.pdf"), [text]), dpi)[0].crop((0, 0, 1240, 500)).save(path)
    path.with_suffix(".src.pdf").unlink()
    return path


def write_eml(path: Path, subject: str, body: str, attachments: Sequence[Path] = ()) -> Path:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Hanna Berg <hanna@example.org>"
    msg["To"] = "team@example.org"
    msg["Date"] = "Tue, 04 Mar 2025 09:30:00 +0100"
    msg.set_content(body)
    for a in attachments:
        msg.add_attachment(a.read_bytes(), maintype="application", subtype="octet-stream", filename=a.name)
    path.write_bytes(bytes(msg))
    return path


@pytest.fixture
def make() -> SimpleNamespace:
    return SimpleNamespace(
        SALES_ROWS=SALES_ROWS, docx=write_docx, pptx=write_pptx, xlsx=write_xlsx, table_pdf=write_table_pdf,
        text_pdf=write_text_pdf, scanned_pdf=write_scanned_pdf, png=write_png, eml=write_eml, rasterise=rasterise,
    )
