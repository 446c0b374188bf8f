"""The fakes of ``tests/fakes.py`` for the eval tests, as a fixture (``fakes.AnsweringLLM``, ``fakes.chunk``)."""

from __future__ import annotations

import pytest

from tests import fakes as _fakes


@pytest.fixture
def fakes():  # type: ignore[no-untyped-def]
    class F:
        AnsweringLLM = _fakes.AnsweringLLM
        JudgeLLM = _fakes.JudgeLLM
        chunk = staticmethod(_fakes.make_chunk)

    return F
