"""The gated CI evaluation (``python -m evals.ci``) on the session's embedded LLM: the same run `make test` gates on.

It ingests the packaged gold corpus into a fresh collection, answers ``gold_ci.jsonl`` and fails under the
thresholds of ``evals/ci.py``; the report lands in ``test-artifacts/eval-ci/`` (report.html, summary.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import ci

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def test_the_ci_evaluation_passes_its_thresholds(llm_server: str, artifacts_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = artifacts_dir / "eval-ci"
    code = ci.main(["--out", str(out), "--llm-url", llm_server])
    printed = capsys.readouterr()
    with capsys.disabled():  # the metric lines belong in the CI log whether it passes or not
        print("\n" + printed.out + printed.err)
    assert code == 0, printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert set(ci.THRESHOLDS) <= set(summary["metrics"]) and (out / "report.html").exists()
