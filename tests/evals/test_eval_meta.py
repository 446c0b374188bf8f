"""Judge meta-evaluation on the Lee human similarity judgments shipped in gensim."""

from __future__ import annotations

import pytest

from evals.judge import GEvalJudge, JudgeConfig
from evals.meta import judge_meta, load_lee, sample_pairs


def test_lee_set_is_read_as_gensim_reads_it():
    docs, human = load_lee()
    assert len(docs) == 50 and human.shape == (50, 50)
    assert docs[0].startswith("The national executive of the strife-torn Democrats")
    assert (human.diagonal() == 1).all() and human[1, 0] == 0 and human[0, 1] == pytest.approx(0.3)


def test_sample_is_stratified_over_human_scores():
    _, human = load_lee()
    pairs = sample_pairs(human, 20, seed=1)
    assert len(pairs) == 20 and all(i < j for i, j, _ in pairs)
    scores = [h for _, _, h in pairs]
    assert scores == sorted(scores) and scores[-1] > 0.7  # similar pairs are rare; stratifying keeps some
    assert pairs == sample_pairs(human, 20, seed=1)


def test_a_judge_that_agrees_with_humans_correlates_perfectly(fakes, fake_embedder):
    docs, human = load_lee()
    index = {d: i for i, d in enumerate(docs)}

    class OracleLLM(fakes.JudgeLLM):
        """Splits probability between two adjacent score tokens so the expected score is 1 + 4 * human score."""

        def complete(self, messages, **kw):
            text = messages[-1].content
            if "Document 1:" not in text:
                return super().complete(messages, **kw)
            d1 = text.split("Document 1:\n", 1)[1].split("\n\nDocument 2:", 1)[0]
            d2 = text.split("Document 2:\n", 1)[1].split("\n\nEvaluation Form", 1)[0]
            h = human[min(index[d1], index[d2]), max(index[d1], index[d2])]
            x = 1 + 4 * h
            lo = min(int(x), 4)
            self.dist = {str(lo): max(1e-9, lo + 1 - x), str(lo + 1): max(1e-9, x - lo)}
            return super().complete(messages, **kw)

    judge = GEvalJudge(OracleLLM(), JudgeConfig(criteria=("similarity",)))
    result = judge_meta(judge, pairs=15, embedder=fake_embedder)
    assert result["judge_correlation"]["spearman"] == pytest.approx(1.0) and result["unparsable"] == 0
    assert -1 <= result["embedding_correlation_all_1225"]["kendall"] <= 1
    assert result["pairs"] == 15 and result["judge_model"] == "fake-judge"
