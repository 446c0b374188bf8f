"""Near-duplicate removal: the quadratic loop a user would write against ``rag.retrieve.remove_near_duplicates``.

    $ .venv/bin/python benchmarks/dedup.py [--sizes 500 1000 2000] [--big 100000] [--reps 2]

Hits are real text: 120-word windows (stride 60, so neighbours overlap like chunks do) of the evaluation corpus
(``evals/data/corpus``) and of the Debian ``copyright`` files under ``/usr/share/doc`` (the same licence texts
repeated with small changes: real near-duplicates). Both variants run on the same hits, interleaved (A, B, A, B),
and must return the same hits; the quadratic one is skipped above ``--quadratic-max``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections import Counter
from pathlib import Path

from rag.retrieve import _bag, remove_near_duplicates, text_similarity
from rag.types import Chunk, ScoredChunk

ROOT = Path(__file__).resolve().parent.parent


def quadratic(hits: list[ScoredChunk], threshold: float) -> list[ScoredChunk]:
    """The obvious loop (what rag did before): every hit against every kept one."""
    kept: list[ScoredChunk] = []
    bags: list[Counter[str]] = []
    hashes: set[str] = set()
    for hit in hits:
        if hit.chunk.content_hash in hashes:
            continue
        bag = _bag(hit.chunk.text)
        if threshold < 1.0 and any(text_similarity(bag, other) >= threshold for other in bags):
            continue
        kept.append(hit)
        bags.append(bag)
        hashes.add(hit.chunk.content_hash)
    return kept


def corpus_windows(limit: int) -> list[str]:
    texts = [p.read_text(errors="replace") for p in sorted((ROOT / "evals/data/corpus").glob("*")) if p.is_file()]
    for folder in sorted(Path("/usr/share/doc").iterdir()) if Path("/usr/share/doc").is_dir() else []:
        copyright_file = folder / "copyright"
        if copyright_file.is_file():
            texts.append(copyright_file.read_text(errors="replace"))
    windows: list[str] = []
    for text in texts:
        words = text.split()
        for i in range(0, max(1, len(words) - 60), 60):
            windows.append(" ".join(words[i : i + 120]))
    out: list[str] = []
    while len(out) < limit:  # a big hit list repeats the corpus; repeats are exact duplicates (hash) as in a store
        out.extend(windows[: limit - len(out)])
    return out


def hits_of(texts: list[str]) -> list[ScoredChunk]:
    hits = []
    for i, t in enumerate(texts):
        h = hashlib.sha256(t.encode()).hexdigest()
        chunk = Chunk(id=str(i), text=t, source=f"/d/{i}", page=None, start=0, end=len(t), content_hash=h,
                      file_hash="f", file_type="txt")  # fmt: skip
        hits.append(ScoredChunk(chunk, 1.0 - i / (len(texts) + 1)))
    return hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--big", type=int, default=100_000, help="a size run with the new code only")
    ap.add_argument("--quadratic-max", type=int, default=20_000)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions (the fastest is reported)")
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()}")
    distinct = len(set(corpus_windows(10**7 // 100)))
    print(f"distinct real windows available: {distinct}")
    for n in args.sizes:
        hits = hits_of(corpus_windows(n))
        times: dict[str, list[float]] = {"quadratic": [], "prefix-filtered": []}
        results = {}
        for _ in range(args.reps):  # interleaved: A, B, A, B
            for name, fn in (("quadratic", quadratic), ("prefix-filtered", remove_near_duplicates)):
                if name == "quadratic" and n > args.quadratic_max:
                    continue
                t = time.perf_counter()
                results[name] = [h.chunk.id for h in fn(hits, args.threshold)]
                times[name].append(time.perf_counter() - t)
        same = len(set(map(tuple, results.values()))) == 1
        q, p = min(times["quadratic"], default=float("nan")), min(times["prefix-filtered"])
        print(f"n={n:>7}: quadratic {q:8.2f} s  prefix-filtered {p:7.3f} s  ratio {q / p:7.1f}x  kept "
              f"{len(results['prefix-filtered'])}  same result: {same}")  # fmt: skip
    if args.big:
        hits = hits_of(corpus_windows(args.big))
        t = time.perf_counter()
        kept = remove_near_duplicates(hits, args.threshold)
        print(f"n={args.big:>7}: prefix-filtered {time.perf_counter() - t:.2f} s, kept {len(kept)}")
        t = time.perf_counter()
        kept = remove_near_duplicates(hits, args.threshold, limit=1000)
        print(f"n={args.big:>7}, stop at 1000 kept (--k 1000): {time.perf_counter() - t:.3f} s")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
