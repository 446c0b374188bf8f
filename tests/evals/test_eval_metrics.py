"""Metrics against their reference implementations, and retrieval metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from evals.dataset import DatasetError, GoldSource, load_dataset
from evals.metrics.refusal import is_refusal, refusal_correct
from evals.metrics.retrieval import retrieval_metrics
from evals.metrics.rouge import for_lsum, rouge, split_sentences
from evals.stats import mean_ci, paired_diff

PREDS = [
    "The cats were sitting on the mat. They looked happy! Then they left.",
    "Paris is the capital of France [1].",
    "Running runners ran quickly.\nA second line here.",
]
REFS = [
    "A cat sat on the mat. It was happy.",
    "The capital of France is Paris.",
    "The runner runs quickly. Second line.",
]


def test_rouge_is_identical_to_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    ours = rouge(PREDS, REFS)
    for o, p, r in zip(ours, PREDS, REFS, strict=True):
        plain = scorer.score(r, p)  # 1/2/L ignore sentence boundaries
        for k in ("rouge1", "rouge2", "rougeL"):
            assert o[k] == plain[k].fmeasure
        # Lsum on the same newline-joined sentences rouge-score's NLTK splitter would give
        assert (
            o["rougeLsum"]
            == scorer.score("\n".join(split_sentences(r)), "\n".join(split_sentences(p)))["rougeLsum"].fmeasure
        )
    assert ours[0]["rouge1"] > 0.3 and rouge(["x y"], ["a b"])[0]["rouge1"] == 0.0


def test_lsum_splits_sentences_and_stemming_is_on():
    assert for_lsum("One. Two! Three?\nFour") == "One.\nTwo!\nThree?\nFour"
    assert rouge(["cats running"], ["cat runs"])[0]["rouge1"] == 1.0  # Porter stemming


def test_bertscore_matches_bert_score_within_1e4():
    import bert_score

    from evals.metrics.bertscore import BertScoreConfig, BertScorer
    from rag.embedders import resolve_model_path

    # (bert-score's padding mask turns a negative best cosine into 0, depending on the batch; MiniLM's cosines
    # between real words are positive, so these texts compare the metric itself, not that quirk.)
    cands = [p for p in PREDS] + ["The volcano near the city erupted last year."]
    refs = [r for r in REFS] + ["The capital of France is Paris."]
    path = resolve_model_path("all-MiniLM-L6-v2")
    for idf in (False, True):
        ours = BertScorer(BertScoreConfig(idf=idf)).score(cands, refs)
        P, R, F = bert_score.score(cands, refs, model_type=path, num_layers=6, idf=idf, nthreads=0)
        for (p, r, f), p2, r2, f2 in zip(ours, P.tolist(), R.tolist(), F.tolist(), strict=True):
            assert abs(p - p2) < 1e-4 and abs(r - r2) < 1e-4 and abs(f - f2) < 1e-4
    assert ours[1][2] > ours[3][2]  # a paraphrase beats an unrelated sentence


def test_bertscore_long_answers_use_sliding_windows_not_truncation():
    from evals.metrics.bertscore import BertScorer

    scorer = BertScorer()
    head = " ".join(f"Sentence number {i} is about cats and dogs." for i in range(80))  # > 510 word pieces
    tail = "The final sentence says the treasure is buried under the old oak tree."
    long = head + " " + tail
    assert len(scorer._ids(long)) > scorer.window
    ((emb, ids),) = scorer.embed([long])
    assert emb.shape[0] == len(ids) == len(scorer._ids(long)) + 2  # every token embedded
    # the tail beyond the window still counts, where bert-score's truncation loses it
    import bert_score

    _, r, _ = scorer.score([long], [tail])[0]
    _, r_truncated, _ = bert_score.score([long], [tail], model_type=scorer.path, num_layers=6)
    assert r > float(r_truncated[0]) + 0.1
    # short texts go through one window, identical to a direct single pass
    assert scorer.score([tail], [tail])[0][2] == pytest.approx(1.0, abs=1e-6)


def test_bertscore_rescaling_without_baseline_is_refused_loudly():
    from evals.metrics.bertscore import BertScoreConfig, BertScorer
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="baseline"):
        BertScorer(BertScoreConfig(rescale=True))
    s = BertScorer(BertScoreConfig(rescale=True, baseline=(0.5, 0.5, 0.5)))
    raw = BertScorer().score(["a cat"], ["the cat"])[0][2]
    assert s.score(["a cat"], ["the cat"])[0][2] == pytest.approx((raw - 0.5) / 0.5)
    with pytest.raises(ConfigError, match="two references"):
        BertScorer(BertScoreConfig(idf=True)).score(["a"], ["b"])


def test_retrieval_metrics_hand_computed():
    ranked = [("/d/x.pdf", 1), ("/d/a.pdf", 2), ("/d/a.pdf", 3), ("/d/b.md", None), ("/d/a.pdf", 3)]
    m = retrieval_metrics(ranked, ["a.pdf#3", "b.md"], ks=(1, 2, 3, 4, 5))
    assert [m[f"hit@{k}"] for k in (1, 2, 3, 4)] == [0.0, 0.0, 1.0, 1.0]
    assert [m[f"recall@{k}"] for k in (1, 3, 4)] == [0.0, 0.5, 1.0]
    assert m["mrr"] == pytest.approx(1 / 3)
    # gains at ranks 3 and 4 (the repeat at 5 earns nothing); ideal: ranks 1 and 2
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / ideal)
    # a gold without page matches any page; a page-specific gold does not match another page
    assert retrieval_metrics([("/d/a.pdf", 7)], ["a.pdf"], ks=(1,))["hit@1"] == 1.0
    assert retrieval_metrics([("/d/a.pdf", 7)], ["a.pdf#3"], ks=(1,))["hit@1"] == 0.0
    assert retrieval_metrics([("/d/sub/a.md", None)], ["sub/a.md"], ks=(1,))["hit@1"] == 1.0
    assert retrieval_metrics([("/d/xa.md", None)], ["a.md"], ks=(1,))["mrr"] == 0.0
    assert retrieval_metrics(ranked, [], ks=(1,))["mrr"] is None  # unanswerable: not applicable


def test_dataset_errors_name_the_line(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text('{"question": "Q1?", "reference": "A.", "sources": ["a.pdf#2"]}\n\n{"question": "Q2?"}\n')
    with pytest.raises(DatasetError, match=r"g.jsonl:3: missing key\(s\) reference, sources"):
        load_dataset(p)
    p.write_text('{"question": "Q1?", "reference": "A.", "sources": ["a.pdf#x"]}\n')
    with pytest.raises(DatasetError, match=r":1: bad source 'a.pdf#x'"):
        load_dataset(p)
    p.write_text('{"question": "Q1?", "reference": "", "sources": []}\nnot json\n')
    with pytest.raises(DatasetError, match=r":2: invalid JSON"):
        load_dataset(p)
    p.write_text(
        '{"question": "Q1?", "reference": "", "sources": []}\n{"question": "Q1?", "reference": "", "sources": []}\n'
    )
    with pytest.raises(DatasetError, match=r":2: duplicate question \(first on line 1\)"):
        load_dataset(p)
    p.write_text(
        '{"question": "Q1?", "reference": "", "sources": []}\n'
        '{"question": "Q2", "reference": "B", "sources": ["b.md"]}\n'
    )
    ex = load_dataset(p)
    assert not ex[0].answerable and ex[1].gold_sources == (GoldSource("b.md"),)


def test_refusal_detection():
    assert is_refusal("I don't know: the documents do not contain the answer.")
    assert is_refusal("The sources do not mention the boiling point.")
    assert not is_refusal("Mercury boils at 356.7 °C [1].")
    assert refusal_correct("I don't know.", answerable=False) == 1.0
    assert refusal_correct("I don't know.", answerable=True) == 0.0


def test_bootstrap_ci_and_paired_difference():
    m = mean_ci([0.0, 1.0] * 20)
    assert m["mean"] == 0.5 and 0.3 < m["ci_low"] < 0.5 < m["ci_high"] < 0.7
    assert mean_ci([None, None])["n"] == 0
    d = paired_diff([0.2] * 10, [0.8] * 10)
    assert d["mean"] == pytest.approx(-0.6) and d["significant"]
    assert not paired_diff([0.5, 0.6], [0.6, 0.5])["significant"]
