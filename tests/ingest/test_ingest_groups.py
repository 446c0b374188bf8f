"""Access groups at ingestion: ``--groups`` and ``.raggroups`` label every chunk; changing them re-indexes the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ingest.access import file_groups
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.errors import IngestError
from rag.wiring import Wiring, overriding


def _tree(root: Path) -> Path:
    (root / "hr" / "pay").mkdir(parents=True)
    (root / "open").mkdir()
    (root / "readme.md").write_text("# Handbook\n\nThe office opens at nine in the morning.\n")
    (root / "hr" / "salaries.md").write_text("# Salaries\n\nThe salary band for engineers is confidential.\n")
    (root / "hr" / "pay" / "bonus.txt").write_text("Bonus payments happen in March every year.\n")
    (root / "open" / "lunch.txt").write_text("Lunch is served at noon in the canteen.\n")
    (root / "hr" / ".raggroups").write_text("# only HR staff\nHR, payroll\n")
    (root / "open" / ".raggroups").write_text("")  # public, whatever --groups says
    return root


def _groups_by_file(settings: Settings, emb: Any) -> dict[str, tuple[str, ...]]:
    with Wiring(settings, embedder=emb).collection() as collection:
        return {Path(c.source).name: c.groups for c in collection.store.chunks()}


def test_nearest_raggroups_wins_and_groups_flag_covers_the_rest(tmp_path: Path, fake_embedder: Any) -> None:
    root = _tree(tmp_path / "docs")
    settings = Settings(collection="g")
    summary = ingest_paths([root], settings, embedder=fake_embedder, groups=["staff"])
    assert summary.new == 4 and not summary.failed
    assert _groups_by_file(settings, fake_embedder) == {
        "readme.md": ("staff",),
        "salaries.md": ("hr", "payroll"),
        "bonus.txt": ("hr", "payroll"),  # inherited from hr/.raggroups
        "lunch.txt": (),  # an empty .raggroups: public
    }


def test_changing_groups_reindexes_the_file_even_with_the_same_bytes(tmp_path: Path, fake_embedder: Any) -> None:
    root = _tree(tmp_path / "docs")
    settings = Settings(collection="g")
    ingest_paths([root], settings, embedder=fake_embedder)
    again = ingest_paths([root], settings, embedder=fake_embedder)
    assert again.unchanged == 4 and again.chunks_added == 0
    (root / "hr" / ".raggroups").write_text("hr\n")  # payroll loses access
    changed = ingest_paths([root], settings, embedder=fake_embedder)
    assert changed.changed == 2 and changed.unchanged == 2
    groups = _groups_by_file(settings, fake_embedder)
    assert groups["salaries.md"] == ("hr",) and groups["bonus.txt"] == ("hr",)


def test_raggroups_above_the_ingested_folder_is_ignored_and_bad_names_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    (tmp_path / ".raggroups").write_text("everyone-above\n")
    files = [root / "readme.md"]
    assert file_groups(files, [root]) == {root / "readme.md": ()}
    (root / "hr" / ".raggroups").write_text("Bad Group!\n")
    with pytest.raises(IngestError, match="invalid group name"):
        file_groups([root / "hr" / "salaries.md"], [root])
    with pytest.raises(IngestError, match="--groups"):
        file_groups(files, [root], ["no spaces allowed"])


def test_rag_ingest_groups_flag(tmp_path: Path, fake_embedder: Any) -> None:
    from rag.cli import app

    doc = tmp_path / "memo.md"
    doc.write_text("# Memo\n\nThe merger closes in May.\n")
    with overriding(embedder=fake_embedder):
        result = CliRunner().invoke(app, ["ingest", str(doc), "--groups", "Finance,legal", "--json", "-c", "m"])
    assert result.exit_code == 0, result.output
    assert _groups_by_file(Settings(collection="m"), fake_embedder) == {"memo.md": ("finance", "legal")}
