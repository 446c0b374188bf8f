"""The import contract holds, and would catch a core module reaching up into a face.

``make lint`` runs ``lint-imports`` (the contract is in ``pyproject.toml``); this test also plants a forbidden
import in a copy of the tree and checks that the linter fails on it, so the contract cannot silently stop working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's packages shadow the installed (editable) ones
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (bash .ci/setup)")
    for name in ("rag", "ingest", "evals", "ui", "server"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contract_is_kept(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_core_module_importing_a_face_breaks_the_contract(tree: Path) -> None:
    retrieve = tree / "rag" / "retrieve.py"
    retrieve.write_text(retrieve.read_text().replace("import logging\n", "import logging\n\nimport ingest\n", 1))
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "rag.retrieve -> ingest" in result.stdout


def test_the_app_and_the_api_do_not_import_each_other(tree: Path) -> None:
    """ui and server are siblings: what both need (who may see what, file names) lives in the core."""
    docs = tree / "server" / "documents.py"
    docs.write_text(docs.read_text().replace("import hashlib\n", "import hashlib\n\nimport ui.uploads\n", 1))
    result = _lint(tree)
    assert result.returncode != 0 and "server.documents -> ui.uploads" in result.stdout
