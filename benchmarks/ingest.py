"""Ingestion benchmark: ``rag ingest`` against the plain LangChain recipe, same corpus, model and chunk size.

The corpus is real: the PDFs of Debian's ``texlive-latex-base-doc`` (smallest first, until ``--pages`` PDF pages)
plus the package's Markdown and text files. It is downloaded with ``apt-get download`` into a cache folder outside
the repository (``~/.cache/rag-bench`` by default) the first time.

Each measurement runs in a fresh subprocess, so peak RSS is that run's own. Measured:

* first ingest, ``rag ingest`` (``ingest_paths``) vs the recipe: ``PyPDFLoader``/``TextLoader`` +
  ``RecursiveCharacterTextSplitter.from_huggingface_tokenizer`` (the same token size) + ``HuggingFaceEmbeddings`` on
  the same packaged MiniLM folder + ``FAISS.from_documents`` + ``save_local``;
* re-ingest of the unchanged corpus (``rag ingest`` again on the same data directory);
* peak RSS at 1x and at ``--scale`` x the corpus (the corpus copied into ``--scale`` folders);
* quality of the ONNX runtimes against torch on the same chunks: cosine per chunk and neighbour overlap@10.

    $ .venv/bin/python benchmarks/ingest.py                 # a few minutes on 2 idle cores
    $ .venv/bin/python benchmarks/ingest.py --runtimes torch,onnx,onnx-int8 --recipe-scaled --json out.json

"pages" below are PDF pages plus one per text file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # run as a script: this file's name must not hide the ``ingest`` package
PACKAGE = "texlive-latex-base-doc"
TEXT_SUFFIXES = (".txt", ".md")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------------- corpus
def ensure_corpus(cache: Path, pages: int) -> tuple[Path, int, int]:
    """A folder with the smallest PDFs of the package summing to ``pages`` pages, plus its text files."""
    extracted = cache / "x"
    if not extracted.exists():
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=debs, check=True)
        deb = next(debs.glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(extracted)], check=True)
    corpus = cache / f"corpus-{pages}"
    stamp = corpus / ".complete.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        return corpus, info["pdf_pages"], info["text_files"]
    from pypdf import PdfReader

    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    total = 0
    for pdf in sorted(extracted.rglob("*.pdf"), key=lambda p: (p.stat().st_size, p.name)):
        if total >= pages:
            break
        try:
            reader = PdfReader(pdf)
            n = len(reader.pages)
            if not (reader.pages[0].extract_text() or "").strip():
                continue  # keep pages both pipelines can read
        except Exception:
            continue
        shutil.copy(pdf, corpus / f"{pdf.parent.name}-{pdf.name}")
        total += n
    texts = 0
    for t in sorted(extracted.rglob("*")):
        if t.suffix in TEXT_SUFFIXES and t.is_file():
            shutil.copy(t, corpus / f"{t.parent.name}-{t.name}")
            texts += 1
    stamp.write_text(json.dumps({"pdf_pages": total, "text_files": texts}))
    return corpus, total, texts


def scaled(corpus: Path, scale: int, work: Path) -> Path:
    """``scale`` copies of the corpus in sibling folders (real copies: different paths, same bytes)."""
    if scale == 1:
        return corpus
    out = work / f"corpus-x{scale}"
    for i in range(scale):
        shutil.copytree(corpus, out / f"copy{i}", ignore=shutil.ignore_patterns(".complete.json"))
    return out


# --------------------------------------------------------------------------------------------------- the two runs
def child_ours(corpus: str, data_dir: str, runtime: str) -> dict[str, float]:
    from ingest.pipeline import ingest_paths
    from rag.config import Settings

    settings = Settings(data_dir=Path(data_dir), collection="bench", embedding={"runtime": runtime})
    t0 = time.perf_counter()
    summary = ingest_paths([corpus], settings)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "chunks": summary.chunks_added,
        "failed": len(summary.failed),
        "unchanged": summary.unchanged,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_recipe(corpus: str, data_dir: str, size_tokens: int, overlap_tokens: int) -> dict[str, float]:
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from langchain_community.document_loaders import PyPDFLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    from rag.embedders import resolve_model_path

    t0 = time.perf_counter()
    model_path = resolve_model_path("all-MiniLM-L6-v2")
    docs, failed = [], 0
    for f in sorted(Path(corpus).rglob("*")):
        if f.name.startswith(".") or not f.is_file():
            continue
        try:
            if f.suffix == ".pdf":
                docs += PyPDFLoader(str(f)).load()
            elif f.suffix in TEXT_SUFFIXES:
                docs += TextLoader(str(f), autodetect_encoding=True).load()
        except Exception:
            failed += 1
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        AutoTokenizer.from_pretrained(model_path), chunk_size=size_tokens, chunk_overlap=overlap_tokens
    )
    chunks = splitter.split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=model_path, encode_kwargs={"normalize_embeddings": True})
    db = FAISS.from_documents(chunks, embeddings)
    db.save_local(data_dir)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "chunks": len(chunks), "failed": failed, "unchanged": 0, "peak_rss_mb": _peak_rss_mb()}


def run_child(*args: str) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"benchmark child {args[0]} failed:\n{done.stderr[-4000:]}")
    out = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    out["process_wall_s"] = wall  # interpreter start and imports included
    return out


def parity(torch_dir: Path, other_dir: Path, samples: int = 200, k: int = 10) -> dict[str, float]:
    """Same chunks embedded by torch and by another runtime: per-chunk cosine, and neighbour overlap@k.

    Each sampled chunk's vector is used as a query in both spaces; overlap@k is the share of its torch top-k
    neighbours that the other runtime also returns in its top-k.
    """
    import sqlite3

    import numpy as np

    def vectors(d: Path) -> dict[str, np.ndarray]:
        db = sqlite3.connect(d / "collections" / "bench" / "faiss" / "chunks.sqlite")
        return {i: np.frombuffer(v, dtype=np.float32) for i, v in db.execute("SELECT id, vector FROM chunks")}

    a, b = vectors(torch_dir), vectors(other_dir)
    ids = sorted(set(a) & set(b))
    A, B = np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])
    cos = (A * B).sum(axis=1)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(ids), size=min(samples, len(ids)), replace=False)
    overlaps = []
    for p in picks:
        top_a = set(np.argsort(-(A @ A[p]))[1 : k + 1])
        top_b = set(np.argsort(-(B @ B[p]))[1 : k + 1])
        overlaps.append(len(top_a & top_b) / k)
    return {"chunks_compared": len(ids), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            f"neighbour_overlap_at_{k}": float(np.mean(overlaps))}


# ----------------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200, help="PDF pages in the 1x corpus (at least)")
    ap.add_argument("--scale", type=int, default=4, help="size of the large corpus, in copies of the 1x one")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "rag-bench")
    ap.add_argument("--runtimes", default="torch,onnx-int8", help="embedding runtimes of rag ingest to measure")
    ap.add_argument("--scale-runtime", default="onnx-int8", help="runtime for the 1x vs Nx peak-RSS runs")
    ap.add_argument("--recipe-scaled", action="store_true", help="also run the recipe on the large corpus (slow)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    corpus, pdf_pages, text_files = ensure_corpus(args.cache_dir, args.pages)
    units = pdf_pages + text_files
    print(f"corpus: {pdf_pages} PDF pages in {len(list(corpus.glob('*.pdf')))} PDFs + {text_files} text files "
          f"({sum(f.stat().st_size for f in corpus.iterdir()) / 2**20:.1f} MiB); pages = PDF pages + text files "
          f"= {units}", flush=True)
    from rag.config import ChunkSettings

    chunk = ChunkSettings()
    size = min(chunk.size_tokens, 256 - 2)  # what rag ingest uses with MiniLM (max_seq_length 256, minus CLS/SEP)
    runtimes = [r for r in args.runtimes.split(",") if r]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        work = Path(tmp)
        big = scaled(corpus, args.scale, work)
        recipe = ("recipe", str(corpus), str(work / "recipe1"), str(size), str(chunk.overlap_tokens))
        steps: list[tuple[str, tuple[str, ...], int]] = [("recipe 1x", recipe, 1)]
        for rt in runtimes:
            steps.append((f"rag ingest 1x ({rt})", ("ours", str(corpus), str(work / f"ours-{rt}"), rt), 1))
        rt0 = runtimes[0]
        steps.append((f"rag ingest 1x ({rt0}), unchanged", ("ours", str(corpus), str(work / f"ours-{rt0}"), rt0), 1))
        srt = args.scale_runtime
        if srt not in runtimes:
            steps.append((f"rag ingest 1x ({srt})", ("ours", str(corpus), str(work / f"ours-{srt}"), srt), 1))
        steps.append((f"rag ingest {args.scale}x ({srt})", ("ours", str(big), str(work / "oursN"), srt), args.scale))
        if args.recipe_scaled:
            steps.append((f"recipe {args.scale}x", ("recipe", str(big), str(work / "recipeN"), str(size),
                                                    str(chunk.overlap_tokens)), args.scale))
        for name, child_args, scale in steps:
            r = run_child(*child_args)
            r["pages_per_s"] = units * scale / r["seconds"]
            results[name] = r
            print(f"{name:38s} {r['seconds']:8.2f} s (process {r['process_wall_s']:6.1f} s) "
                  f"{r['pages_per_s']:8.2f} pages/s {r['chunks']:6.0f} chunks  peak RSS {r['peak_rss_mb']:6.0f} MiB",
                  flush=True)
        quality = {rt: parity(work / "ours-torch", work / f"ours-{rt}") for rt in runtimes
                   if rt != "torch" and "torch" in runtimes}
    base = results["recipe 1x"]
    print()
    for rt in runtimes:
        r = results[f"rag ingest 1x ({rt})"]
        print(f"speed-up of rag ingest ({rt}) vs the recipe: {base['seconds'] / r['seconds']:.2f}x "
              f"(process wall {base['process_wall_s'] / r['process_wall_s']:.2f}x; target >= 1.5x)")
    first, again = results[f"rag ingest 1x ({rt0})"], results[f"rag ingest 1x ({rt0}), unchanged"]
    print(f"re-ingest of the unchanged corpus: {first['seconds'] / again['seconds']:.0f}x faster in-process, "
          f"{first['process_wall_s'] / again['process_wall_s']:.0f}x as whole commands (target >= 20x)")
    print(f"peak RSS rag ingest ({srt}): {results[f'rag ingest 1x ({srt})']['peak_rss_mb']:.0f} MiB at 1x, "
          f"{results[f'rag ingest {args.scale}x ({srt})']['peak_rss_mb']:.0f} MiB at {args.scale}x")
    for rt, q in quality.items():
        print(f"quality {rt} vs torch: " + ", ".join(f"{k} {v:.4f}" for k, v in q.items()))
    if args.json:
        args.json.write_text(json.dumps({"pdf_pages": pdf_pages, "text_files": text_files, "results": results,
                                         "quality": quality}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "ours":
            out = child_ours(*rest)
        else:
            out = child_recipe(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(out))
    else:
        main()
