"""Validate the support scorer of ``rag.verify`` on planted errors before it may gate anything.

Built from the gold sets and their indexed corpora, with the real retriever:

- **supported** pairs: a gold reference answer and a passage of its gold source that holds its answer (its key
  ``facts`` when the question lists them, else every number and 60% of the content words of the reference);
- **wrong citation** (planted): the same reference paired with the best-ranked *other* passage the retriever gave
  (what a model does when it cites the wrong number);
- **altered fact** (planted): the reference with one number or name changed, paired with its supporting passage
  (right topic, wrong fact: what a small model invents);
- **other fact** (planted): the reference of another question on the same document, paired with a passage that
  does not hold it.

For each scorer and threshold the script reports precision and recall of "supported" (positives = supported pairs)
and the share of each planted kind caught. It then checks the whole verifier on gold answers written with a citation
(``reference [n]``): kept when right, moved when the number was swapped to another given source, and a planted
unsupported sentence appended to the answer marked as such.

    $ RAG_DATA_DIR=/work/data/i11 python -m evals.support_check \\
        --set evals/data/gold.jsonl=gold --set evals/data/gold_hard.jsonl=hard --out support-check.json

The collections must exist (``rag ingest evals/data/corpus --collection gold`` etc.).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from evals.dataset import GoldExample, GoldSource, load_dataset

CE_THRESHOLDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
EVIDENCE_THRESHOLDS = (0.5, 0.67, 0.75, 1.0)


@dataclass
class Pair:
    kind: str  # "supported", "wrong_citation", "altered_fact", "other_fact"
    claim: str
    passage: str
    question: str
    ce: float = 0.0
    evidence: float = 1.0  # share of the claim's evidence terms in the passage
    any_evidence: bool = True


def _matches(source: str, page: int | None, gold: Sequence[GoldSource]) -> bool:
    name = PurePath(source).name
    return any(g.file == name and (g.page is None or g.page == page) for g in gold)


def _fact_in(fact: str, norm_passage: str) -> bool:
    from rag.verify import normalize

    return any(normalize(alt).strip() in norm_passage for alt in fact.split("|"))


_NORM: dict[str, str] = {}


def _norm(text: str) -> str:
    from rag.verify import normalize

    if text not in _NORM:
        _NORM[text] = normalize(text)
    return _NORM[text]


def holds_answer(ex: GoldExample, passage: str) -> bool:
    """Whether ``passage`` states the answer of ``ex`` (its facts; else the reference's numbers and most words)."""
    from rag.verify import _content_words, normalize

    norm = _norm(passage)
    if ex.facts:
        return all(_fact_in(f, norm) for f in ex.facts)
    numbers = set(re.findall(r"\d+(?:\.\d+)?", normalize(ex.reference)))
    if not numbers <= set(re.findall(r"\d+(?:\.\d+)?", norm)):
        return False
    words = set(_content_words(ex.reference))
    return bool(words) and len([w for w in words if w in norm]) >= 0.6 * len(words)


_MONTHS = "january february march april may june july august september october november december".split()


def alter_fact(reference: str, rng: random.Random, names: Sequence[str]) -> str | None:
    """The reference with one checkable fact changed: a number shifted, or a name swapped for another one."""
    nums = list(re.finditer(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])", reference))
    if nums:
        m = rng.choice(nums)
        value = m.group(0)
        if "." in value:
            new = f"{float(value) + rng.choice([1.5, -0.5, 2.0]):g}"
        else:
            n = int(value)
            new = str(n + rng.choice([3, 7, -2] if n > 10 else [1, 2]) if n > 2 else n + 2)
        return reference[: m.start()] + new + reference[m.end() :]
    caps = [m for m in re.finditer(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]{2,}\b", reference) if m.group(0).lower()
            not in _MONTHS]  # fmt: skip
    others = [n for n in names if n not in reference]
    if caps and others:
        m = rng.choice(caps)
        return reference[: m.start()] + rng.choice(others) + reference[m.end() :]
    return None


def build_pairs(sets: Sequence[tuple[Path, Any]], k: int, seed: int = 0) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Pairs for the scorer and gold answers (with their retrieved sources) for the verifier check."""
    from rag.verify import _content_words, evidence_terms

    rng = random.Random(seed)
    pairs: list[Pair] = []
    answers: list[dict[str, Any]] = []
    for dataset, pipeline in sets:
        examples = [e for e in load_dataset(dataset) if e.answerable]
        # names to swap in: capitalised words that are evidence (not the first word, not a stop word)
        names = sorted({w for e in examples for w in re.findall(r"(?<=\s)[A-Z][a-z]{3,}\b", e.reference)
                        if w.lower() in evidence_terms(e.reference)})  # fmt: skip
        chunks = list(pipeline.retriever.store.chunks())
        for ex in examples:
            gold = ex.gold_sources
            supporting = [c for c in chunks if _matches(c.source, c.page, gold) and holds_answer(ex, c.text)]
            hits = pipeline.retrieve(ex.question, k=k)
            if not supporting:
                continue  # a two-passage answer, or the label rule cannot tell: left out of the pair-level check
            words = set(_content_words(ex.reference))  # the passage that says most of the reference
            pos = max(supporting, key=lambda c: len(words & set(_content_words(c.text))))
            pairs.append(Pair("supported", ex.reference, pos.text, ex.question))
            wrong = [h for h in hits if not _matches(h.chunk.source, h.chunk.page, gold)
                     and not holds_answer(ex, h.chunk.text)]  # fmt: skip
            if wrong:
                pairs.append(Pair("wrong_citation", ex.reference, wrong[0].chunk.text, ex.question))
            altered = alter_fact(ex.reference, rng, names)
            if altered:
                pairs.append(Pair("altered_fact", altered, pos.text, ex.question))
            same_doc = [o for o in examples if o is not ex and {g.file for g in o.gold_sources} & {g.file for g in gold}
                        and not holds_answer(o, pos.text)]  # fmt: skip
            if same_doc:
                pairs.append(Pair("other_fact", rng.choice(same_doc).reference, pos.text, ex.question))
            # the verifier check: a gold answer citing its retrieved supporting source
            idx = [i for i, h in enumerate(hits) if h.chunk.id in {c.id for c in supporting}]
            if idx:
                answers.append({"question": ex.question, "reference": ex.reference, "hits": hits, "gold": idx[0],
                                "altered": altered})  # fmt: skip
    return pairs, answers


def score_pairs(pairs: list[Pair], reranker: Any) -> None:
    from rag.verify import CrossEncoderSupport, evidence_found, evidence_terms, normalize

    ce = CrossEncoderSupport(reranker)
    for p in pairs:
        p.ce = ce.score(p.claim, [p.passage])[0]
        terms = evidence_terms(p.claim)
        found = evidence_found(terms, normalize(p.passage))
        p.evidence = len(found) / len(terms) if terms else 1.0
        p.any_evidence = bool(found) or not terms


def _decide(p: Pair, scorer: str, t_ce: float, t_ev: float) -> bool:
    ce_ok = p.ce >= t_ce
    ev_ok = p.any_evidence and p.evidence >= t_ev
    return {"cross-encoder": ce_ok, "lexical": ev_ok, "cross-encoder+lexical": ce_ok and ev_ok}[scorer]


def evaluate(pairs: Sequence[Pair], scorer: str, t_ce: float, t_ev: float) -> dict[str, Any]:
    pos = [p for p in pairs if p.kind == "supported"]
    neg = [p for p in pairs if p.kind != "supported"]
    tp = sum(_decide(p, scorer, t_ce, t_ev) for p in pos)
    fp = sum(_decide(p, scorer, t_ce, t_ev) for p in neg)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / len(pos) if pos else 0.0
    caught = {}
    for kind in ("wrong_citation", "altered_fact", "other_fact"):
        ks = [p for p in neg if p.kind == kind]
        caught[kind] = round(sum(not _decide(p, scorer, t_ce, t_ev) for p in ks) / len(ks), 3) if ks else None
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"scorer": scorer, "min_score": t_ce, "min_evidence": t_ev, "precision": round(precision, 3),
            "recall": round(recall, 3), "f1": round(f1, 3), "caught": caught}  # fmt: skip


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def check_verifier(answers: Sequence[dict[str, Any]], scorer: Any, t_ce: float, t_ev: float,
                   rng: random.Random) -> dict[str, Any]:  # fmt: skip
    """The whole verifier on gold answers: right citations kept, swapped ones corrected, planted sentences marked."""
    from rag.verify import verify_answer

    kept = moved = swapped_total = removed = planted_marked = planted_total = gold_supported = 0
    for a in answers:
        hits, g = a["hits"], a["gold"]
        right = verify_answer(f"{a['reference']} [{g + 1}]", hits, scorer, min_score=t_ce, min_evidence=t_ev)
        s = right.sentences[0] if right.sentences else None
        gold_supported += bool(s and s.supported)
        kept += bool(s and (g + 1) in s.citations)
        others = [i for i in range(len(hits)) if i != g]
        if others:
            j = rng.choice(others)
            swapped_total += 1
            v = verify_answer(f"{a['reference']} [{j + 1}]", hits, scorer, min_score=t_ce, min_evidence=t_ev)
            s = v.sentences[0] if v.sentences else None
            cites = s.citations if s else ()
            # j may itself hold the answer (a near-duplicate); count removal only where j does not support it
            removed += (j + 1) not in cites
            moved += (g + 1) in cites
        if a["altered"]:
            planted_total += 1
            v = verify_answer(f"{a['reference']} [{g + 1}] {a['altered']} [{g + 1}]", hits, scorer, min_score=t_ce,
                              min_evidence=t_ev)  # fmt: skip
            planted_marked += len(v.sentences) > 1 and v.sentences[-1].supported is False
    n = len(answers)
    return {
        "gold_answers": n,
        "gold_sentence_supported": round(gold_supported / n, 3) if n else None,
        "right_citation_kept": round(kept / n, 3) if n else None,
        "swapped_citation_removed": round(removed / swapped_total, 3) if swapped_total else None,
        "swapped_citation_moved_to_gold": round(moved / swapped_total, 3) if swapped_total else None,
        "planted_sentence_marked_unsupported": round(planted_marked / planted_total, 3) if planted_total else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.support_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True, metavar="DATASET=COLLECTION")
    parser.add_argument("--k", type=int, default=5, help="sources per question, as the prompt gets them")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rag.config import load_settings
    from rag.rerank import load_reranker
    from rag.verify import CrossEncoderSupport
    from rag.wiring import Wiring

    t0 = time.perf_counter()
    sets = []
    for item in args.set:
        dataset, _, collection = item.partition("=")
        sets.append((Path(dataset), Wiring(load_settings(collection=collection)).pipeline()))
    pairs, answers = build_pairs(sets, args.k, args.seed)
    reranker = load_reranker(load_settings().verify.model)
    t = time.perf_counter()
    score_pairs(pairs, reranker)
    seconds_per_pair = (time.perf_counter() - t) / max(1, len(pairs))
    counts = {kind: sum(p.kind == kind for p in pairs) for kind in ("supported", "wrong_citation", "altered_fact",
                                                                     "other_fact")}  # fmt: skip
    pos = [p.ce for p in pairs if p.kind == "supported"]
    aucs = {kind: round(auc(pos, [p.ce for p in pairs if p.kind == kind]), 3) for kind in counts if kind != "supported"}
    grid = [evaluate(pairs, "cross-encoder", t, 0.0) for t in CE_THRESHOLDS]
    grid += [evaluate(pairs, "lexical", 0.0, e) for e in EVIDENCE_THRESHOLDS]
    grid += [evaluate(pairs, "cross-encoder+lexical", t, e) for t in CE_THRESHOLDS for e in EVIDENCE_THRESHOLDS]
    best = {s: max((g for g in grid if g["scorer"] == s), key=lambda g: (g["f1"], g["precision"]))
            for s in ("cross-encoder", "lexical", "cross-encoder+lexical")}  # fmt: skip
    settings = load_settings().verify
    chosen = evaluate(pairs, "cross-encoder+lexical", settings.min_score, settings.min_evidence)
    verifier = check_verifier(answers, CrossEncoderSupport(reranker), settings.min_score, settings.min_evidence,
                              random.Random(args.seed))  # fmt: skip
    result = {
        "pairs": counts,
        "ce_auc_supported_vs": aucs,
        "seconds_per_pair": round(seconds_per_pair, 4),
        "best_f1": best,
        "defaults": chosen,
        "verifier_at_defaults": verifier,
        "grid": grid,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
