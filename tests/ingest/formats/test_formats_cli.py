"""The documents people really have, through the real ``rag`` command and the packaged MiniLM: a scanned page is
found by its sentence, a table cell question finds the table under its header, a slide is cited as "slide N", a
corrupt DOCX is named while the batch goes on, and a second run adds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.formats.ocr import resolve_engine

RAG = [sys.executable, "-c", "from rag.cli import main; main()"]
STORM = "The lighthouse keeper logged a violent storm on the ninth of November, with waves breaking over the pier."
DECK = [
    {"title": "Kickoff", "body": ["Budget approved for the Arctic survey"], "notes": "The Oslo office pays the boat."},
    {"title": "Timeline", "body": ["Fieldwork starts in June", "Report due in December"]},
    {"title": "Risks", "body": ["Sea ice may close the harbour at Longyearbyen in February"]},
]


def _rag(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **env}
    repo = str(Path(__file__).resolve().parents[3])
    full["PYTHONPATH"] = repo + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([*RAG, *args], capture_output=True, text=True, env=full, timeout=600)


@pytest.mark.skipif(resolve_engine("auto") is None, reason="no OCR engine installed (docs extra)")
def test_scans_tables_slides_and_a_corrupt_docx_through_the_cli(tmp_path: Path, make: SimpleNamespace) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    make.scanned_pdf(folder / "logbook.pdf", [STORM])
    make.pptx(folder / "survey.pptx", DECK)
    make.docx(folder / "report.docx")
    (folder / "broken.docx").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    env: dict[str, str] = {}

    done = _rag("ingest", str(folder), "--json", "--collection", "real", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["files_seen"], summary["new"], summary["ocr_pages"]) == (4, 3, 1)
    assert [(Path(f["path"]).name, "corrupt DOCX" in f["reason"]) for f in summary["failed"]] == [
        ("broken.docx", True)
    ]

    def search(query: str) -> list[dict[str, object]]:
        out = _rag("search", query, "--json", "--k", "5", "--collection", "real", env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["hits"]

    scanned = search("what did the lighthouse keeper log in November")
    assert Path(str(scanned[0]["source"])).name == "logbook.pdf"
    assert scanned[0]["ocr"] is True and scanned[0]["page"] == 1 and "violent storm" in str(scanned[0]["text"])

    cell = search("Q2 revenue of the South region")
    table = next(h for h in cell if "Marco Bellini" in str(h["text"]))
    assert "| Region | Q1 revenue | Q2 revenue | Manager |" in str(table["text"])
    assert table["section"] == "Annual report › Sales › By region"
    assert cell.index(table) == 0

    shown = _rag("search", "Could sea ice close the harbour?", "--k", "3", "--collection", "real", env=env)
    assert shown.returncode == 0, shown.stderr
    first = shown.stdout.splitlines()[0]
    assert "survey.pptx, slide 3 · Risks" in first

    again = json.loads(_rag("ingest", str(folder), "--json", "--collection", "real", env=env).stdout)
    assert (again["new"], again["changed"], again["unchanged"], again["chunks_added"], again["ocr_pages"]) == (
        0, 0, 3, 0, 0
    )
