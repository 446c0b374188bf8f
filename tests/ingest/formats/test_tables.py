"""Tables in every format become Markdown table chunks under their caption, the header repeated when split."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.chunk import Chunker
from ingest.formats.tables import split_table, table_document
from ingest.load import load_file
from rag.types import Document


def _words(text: str) -> int:
    return len(text.split())


def _tables(docs: list[Document]) -> list[Document]:
    return [d for d in docs if d.table_header is not None]


def test_a_split_table_repeats_caption_and_header_in_every_chunk() -> None:
    rows = [["City", "Population", "Country"]] + [[f"City{i}", str(1000 + i), f"Land{i % 3}"] for i in range(40)]
    doc = table_document(rows, "Table 7: Cities", source="/t.csv", file_type="csv", file_hash="h")
    assert doc is not None
    chunks = list(Chunker(_words, size_tokens=40, overlap_tokens=4).split(doc))
    assert len(chunks) > 3
    header = "Table 7: Cities\n| City | Population | Country |\n| --- | --- | --- |\n"
    for c in chunks:
        assert c.text.startswith(header)
        body = c.text[len(header):].splitlines()
        assert body and all(line.startswith("| City") and line.count("|") == 4 for line in body)  # whole rows
    # every row is in exactly one chunk, in order
    rows_out = [line for c in chunks for line in c.text[len(header):].splitlines()]
    assert rows_out == [f"| City{i} | {1000 + i} | Land{i % 3} |" for i in range(40)]
    assert len({c.id for c in chunks}) == len(chunks)


def test_an_oversized_row_is_cut_and_still_carries_the_header() -> None:
    text = "Cap\n| a | b |\n| --- | --- |\n| " + " ".join(f"w{i}" for i in range(100)) + " | end |"
    pieces = split_table(text, "Cap\n| a | b |\n| --- | --- |\n", _words, 30)
    assert len(pieces) > 3
    assert all(p[2].startswith("Cap\n| a | b |") for p in pieces)
    assert "w99" in pieces[-1][2] or "end" in pieces[-1][2]


@pytest.mark.parametrize("grid", [True, False], ids=["grid", "rules-only"])
def test_pdf_table_is_its_own_chunk_with_caption_and_cells_not_duplicated(
    tmp_path: Path, make: SimpleNamespace, grid: bool
) -> None:
    docs = list(load_file(make.table_pdf(tmp_path / "fleet.pdf", grid=grid), "h"))
    (table,) = _tables(docs)
    lines = table.text.splitlines()
    assert lines[0] == "Table 2: Inspection costs per vehicle"
    assert lines[1] == "| Region | Q1 revenue | Q2 revenue | Manager |"
    assert "| South | 2,518 | 2,106 | Marco Bellini |" in lines
    text = "\n".join(d.text for d in docs if d.table_header is None)
    assert "inspected twice a year" in text and "forty thousand kilometres" in text
    assert "Marco Bellini" not in text and "2,518" not in text  # cells only in the table chunk
    assert "Table 2" not in text  # and its caption too


def test_html_and_markdown_tables(tmp_path: Path) -> None:
    html = tmp_path / "p.html"
    html.write_text(
        "<h1>Prices</h1><p>Our list prices.</p><table><caption>Table 1: Coffee</caption>"
        "<thead><tr><th>Drink</th><th>Price</th></tr></thead><tbody><tr><td>Flat white</td><td>3.40</td></tr>"
        "<tr><td>Cortado</td><td>2.90</td></tr></tbody></table><p>Prices include tax.</p>",
        encoding="utf-8",
    )
    docs = list(load_file(html, "h"))
    (table,) = _tables(docs)
    assert table.text.splitlines()[:2] == ["Table 1: Coffee", "| Drink | Price |"]
    assert table.section == "Prices"
    assert "Cortado" not in "".join(d.text for d in docs if d.table_header is None)

    md = tmp_path / "n.md"
    md.write_text("# Tools\n\nTable 3: Flags\n\n| flag | meaning |\n|---|---|\n| -q | quiet |\n\nMore text.\n")
    docs = list(load_file(md, "h"))
    (table,) = _tables(docs)
    assert table.text == "Table 3: Flags\n| flag | meaning |\n| --- | --- |\n| -q | quiet |"
    assert table.section == "Tools"
    assert "Table 3" not in "".join(d.text for d in docs if d.table_header is None)


def test_layout_tables_in_html_stay_text(tmp_path: Path) -> None:
    page = tmp_path / "layout.html"
    page.write_text("<table><tr><td>" + "A long paragraph of body text. " * 30 + "</td><td>menu</td></tr>"
                    "<tr><td>more</td><td>x</td></tr></table>")
    docs = list(load_file(page, "h"))
    assert not _tables(docs) and "long paragraph" in docs[0].text


def test_text_between_two_rules_is_not_a_table(tmp_path: Path) -> None:
    """A paragraph boxed by two horizontal rules has one column: it stays text."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path = tmp_path / "boxed.pdf"
    c = canvas.Canvas(str(path), pagesize=A4)
    c.line(60, 700, 500, 700)
    for i, line in enumerate(["Note: the depot closes at noon on Fridays", "and all day on public holidays,",
                              "so plan inspections for Monday to Thursday."]):
        c.drawString(60, 680 - 16 * i, line)
    c.line(60, 620, 500, 620)
    c.showPage()
    c.save()
    docs = list(load_file(path, "h"))
    assert not _tables(docs) and "public holidays" in docs[0].text
