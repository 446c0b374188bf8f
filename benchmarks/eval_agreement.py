"""Agreement of evals.metrics with the reference implementations on real text pairs.

    $ .venv/bin/python benchmarks/eval_agreement.py [--results RUN/results.jsonl]

Pairs: (answer, reference) from an eval run's results.jsonl when given, else (question, reference) from
evals/data/gold.jsonl (real, differently worded texts). Prints the share of ROUGE scores identical to
``rouge_score.RougeScorer`` and the largest BERTScore difference to ``bert_score.score`` with the same model/layer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pairs(results: Path | None) -> list[tuple[str, str]]:
    if results:
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        return [(r["answer"], r["reference"]) for r in rows if r.get("answer") and r["reference"]]
    rows = [json.loads(line) for line in (ROOT / "evals/data/gold.jsonl").read_text().splitlines() if line.strip()]
    return [(r["question"], r["reference"]) for r in rows if r["reference"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    import bert_score
    from rouge_score import rouge_scorer

    from evals.metrics.bertscore import BertScorer
    from evals.metrics.rouge import ROUGE_TYPES, for_lsum, rouge

    data = pairs(args.results)
    cands, refs = [c for c, _ in data], [r for _, r in data]
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    ours = rouge(cands, refs)
    same = total = 0
    for o, c, r in zip(ours, cands, refs, strict=True):
        ref = scorer.score(for_lsum(r), for_lsum(c))
        for k in ROUGE_TYPES:
            total += 1
            same += o[k] == ref[k].fmeasure
    print(f"pairs: {len(data)}")
    print(f"ROUGE identical: {same}/{total}")
    bs = BertScorer()
    t = time.perf_counter()
    mine = bs.score(cands, refs)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    P, R, F = bert_score.score(cands, refs, model_type=bs.path, num_layers=6, batch_size=16)
    t_ref = time.perf_counter() - t
    diffs = [max(abs(a - b) for a, b in zip(m, (p, r, f), strict=True))
             for m, p, r, f in zip(mine, P.tolist(), R.tolist(), F.tolist(), strict=True)]  # fmt: skip
    print(f"BERTScore max |ours - bert_score| over P/R/F: {max(diffs):.2e}; pairs above 1e-4: "
          f"{sum(d > 1e-4 for d in diffs)}")  # fmt: skip
    print(f"BERTScore time: ours {t_ours:.1f} s, bert_score {t_ref:.1f} s")


if __name__ == "__main__":
    main()
