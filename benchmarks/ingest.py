"""Ingestion benchmarks: ``rag ingest`` against the plain LangChain recipe, at scale, and on Ray.

Every measured run is a fresh subprocess (its own data directory and embedding cache; the one-time ONNX export is
made by an unmeasured warm-up run), and the variants of one mode run interleaved, in alternating order (A, B, C,
C, B, A, ...) so that the load of a shared machine, and its trend, hits them alike; the load average is recorded
beside each run. CPU seconds and memory are sampled from ``/proc`` for every process of the run's session (the
ingesting process, its parse workers, a local Ray instance), so parallel variants are charged for all they use.

Modes:

``recipe`` (default): the corpus of the original benchmark (the smallest text-bearing PDFs of Debian's
``texlive-latex-base-doc`` up to ``--pages`` PDF pages, plus the package's Markdown and text files), ingested by
the LangChain recipe a user would write (``PyPDFLoader``/``TextLoader`` + ``RecursiveCharacterTextSplitter`` with
the model's tokenizer + ``HuggingFaceEmbeddings`` + ``FAISS.from_documents`` + ``save_local``) and by ``rag ingest``
variants ``RUNTIME/WORKERS`` (``--variants``): pages/s, chunks/s, CPU seconds, peak memory, the share of time per
stage (read, chunk, embed, write), and how close each runtime's vectors are to the recipe's.

``scale``: ``--files`` small files of real text (paragraphs of Python's documentation, ``python3.11-doc``, two per
file: about one chunk each, distinct texts): first ingest, peak memory, the unchanged re-scan (a whole command, and
in process), a re-ingest after 1% of the files changed, and one after only their mtimes changed.

``ray``: the ``--files`` corpus through a local Ray instance against the local pipeline (parse processes, and one
parse thread), on the same cores.

    $ .venv/bin/python benchmarks/ingest.py recipe --reps 3 --json build/bench-recipe.json
    $ .venv/bin/python benchmarks/ingest.py scale --files 10000,100000 --json build/bench-scale.json
    $ .venv/bin/python benchmarks/ingest.py ray --files 10000 --reps 2

Corpora are fetched with ``apt-get download`` + ``dpkg -x`` into ``~/.cache/rag-bench`` (not committed).
"pages" are PDF pages plus one per text file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # run as a script: this file's name must not hide the ``ingest`` package
PACKAGE = "texlive-latex-base-doc"
PYDOC = "python3.11-doc"
TEXT_SUFFIXES = (".txt", ".md")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# ---------------------------------------------------------------------------------------------------------- corpora
def _extract(cache: Path, package: str) -> Path:
    extracted = cache / f"x-{package}"
    if not extracted.exists():
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        deb = next(debs.glob(f"{package}_*.deb"))
        tmp = cache / f".x-{package}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(extracted)
    return extracted


def ensure_corpus(cache: Path, pages: int) -> tuple[Path, int, int]:
    """A folder with the smallest PDFs of the package summing to ``pages`` pages, plus its text files."""
    corpus = cache / f"corpus-{pages}"
    stamp = corpus / ".complete.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        return corpus, info["pdf_pages"], info["text_files"]
    extracted = _extract(cache, PACKAGE)
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


def pydoc_paragraphs(cache: Path) -> list[str]:
    """Prose paragraphs (15-120 words) of Python's documentation sources (reST), whitespace collapsed."""
    root = _extract(cache, PYDOC)
    paragraphs = []
    for f in sorted(root.rglob("_sources/**/*.txt")):
        for block in re.split(r"\n\s*\n", f.read_text(errors="ignore")):
            words = block.split()
            if 15 <= len(words) <= 120 and not block.lstrip().startswith(("..", "::", ">>>", "|", "+-", "=")):
                paragraphs.append(" ".join(words))
    return paragraphs


def ensure_small_files(cache: Path, n: int) -> Path:
    """``n`` small files (two paragraphs each, about one chunk, distinct texts) in folders of 500, 1 in 5 Markdown."""
    corpus = cache / f"small-{n}"
    if (corpus / ".complete").exists():
        return corpus
    paragraphs = pydoc_paragraphs(cache)
    rng = random.Random(n)
    order = list(range(len(paragraphs)))
    rng.shuffle(order)
    shutil.rmtree(corpus, ignore_errors=True)
    for i in range(n):
        a = order[i % len(order)]
        b = order[(i * 7919 + 13) % len(order)]
        if a == b:
            b = (b + 1) % len(paragraphs)
        folder = corpus / f"d{i // 500:04d}"
        if i % 500 == 0:
            folder.mkdir(parents=True)
        suffix = ".md" if i % 5 == 0 else ".txt"
        (folder / f"f{i:06d}{suffix}").write_text(f"{paragraphs[a]}\n\n{paragraphs[b]}\n", encoding="utf-8")
    (corpus / ".complete").write_text("ok")
    return corpus


# --------------------------------------------------------------------------------------------------- measuring
class TreeSampler:
    """CPU seconds and memory of every process in a session, sampled from /proc every ``interval`` seconds."""

    def __init__(self, sid: int, interval: float = 0.1) -> None:
        self.sid, self.interval = sid, interval
        self.cpu: dict[tuple[int, int], float] = {}  # (pid, start time) -> last seen utime+stime
        self.peak_total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        rss_kb = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            f = stat.rsplit(")", 1)[1].split()
            if int(f[3]) != self.sid:
                continue
            self.cpu[(int(entry.name), int(f[19]))] = (int(f[11]) + int(f[12])) / CLK_TCK
            rss_kb += int(f[21]) * PAGE_KB
        self.peak_total_mb = max(self.peak_total_mb, rss_kb / 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.cpu.values())


def run_child(*args: str, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """``_child`` with ``args`` in its own session: its JSON, plus process wall, tree CPU and tree peak memory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    load = _load()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "_child", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    sampler = TreeSampler(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    cpu = sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {args[:2]} failed:\n{err[-4000:]}")
    result = dict(json.loads(out.strip().splitlines()[-1]))
    result.update({"process_wall_s": wall, "cpu_s": cpu, "peak_tree_mb": sampler.peak_total_mb, "load": load})
    return result


def child_ours(corpus: str, data_dir: str, runtime: str, workers: str, mode: str = "local") -> dict[str, Any]:
    from rag.config import Settings

    settings = Settings(data_dir=Path(data_dir), collection="bench", embedding={"runtime": runtime},
                        ingest={"workers": int(workers)})
    t0 = time.perf_counter()
    if mode == "ray":
        from ingest.ray_ingest import ingest_with_ray

        summary = ingest_with_ray([corpus], settings, address="local")
    else:
        from ingest.pipeline import ingest_paths

        summary = ingest_paths([corpus], settings)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "chunks": summary.chunks_added, "failed": len(summary.failed),
            "new": summary.new, "changed": summary.changed, "unchanged": summary.unchanged,
            "embedded": summary.embedded, "stages": summary.stages,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_recipe(corpus: str, data_dir: str, size_tokens: int, overlap_tokens: int) -> dict[str, Any]:
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
    return {"seconds": seconds, "chunks": len(chunks), "failed": failed, "stages": {},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def parity(reference: Path, other: Path, samples: int = 200, k: int = 10) -> dict[str, float]:
    """The same chunks embedded two ways (two ``rag ingest`` data dirs): per-chunk cosine and neighbour overlap@k."""
    import sqlite3

    import numpy as np

    def vectors(d: Path) -> dict[str, np.ndarray]:
        db = sqlite3.connect(d / "collections" / "bench" / "faiss" / "chunks.sqlite")
        return {i: np.frombuffer(v, dtype=np.float32) for i, v in db.execute("SELECT id, vector FROM chunks")}

    a, b = vectors(reference), vectors(other)
    ids = sorted(set(a) & set(b))
    A, B = np.stack([a[i] for i in ids]), np.stack([b[i] for i in ids])
    cos = (A * B).sum(axis=1)
    picks = np.random.default_rng(0).choice(len(ids), size=min(samples, len(ids)), replace=False)
    overlaps = [len(set(np.argsort(-(A @ A[p]))[1 : k + 1]) & set(np.argsort(-(B @ B[p]))[1 : k + 1])) / k
                for p in picks]
    return {"chunks_compared": len(ids), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            f"neighbour_overlap_at_{k}": float(np.mean(overlaps))}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _shares(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per stage, and each of read/chunk/embed/write as a share of their sum."""
    keys = sorted({k for r in runs for k in r.get("stages", {})})
    med = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in keys}
    work = sum(med.get(k, 0.0) for k in ("read", "chunk", "embed", "write"))
    return {**{k: round(v, 2) for k, v in med.items()},
            **{f"{k}_share": round(med.get(k, 0.0) / work, 3) for k in ("read", "chunk", "embed", "write") if work}}


def _warm(runtime: str, cache: Path, work: Path) -> None:
    """One unmeasured run so the runtime's one-time ONNX export is in the shared cache."""
    tiny = work / "warm-corpus"
    tiny.mkdir(exist_ok=True)
    (tiny / "w.txt").write_text("Warm up the embedding model export once.")
    run_child("ours", str(tiny), str(work / f"warm-{runtime}"), runtime, "0", env_extra={"RAG_CACHE_DIR": str(cache)})


# ---------------------------------------------------------------------------------------------------------- modes
def mode_recipe(args: argparse.Namespace) -> dict[str, Any]:
    corpus, pdf_pages, text_files = ensure_corpus(args.cache_dir, args.pages)
    units = pdf_pages + text_files
    print(f"corpus: {pdf_pages} PDF pages in {len(list(corpus.glob('*.pdf')))} PDFs + {text_files} text files; "
          f"pages = {units}; cores {os.cpu_count()}", flush=True)
    from rag.config import ChunkSettings

    chunk = ChunkSettings()
    size = min(chunk.size_tokens, 256 - 2)  # what rag ingest uses with MiniLM (max_seq_length 256, minus CLS/SEP)
    variants = [v for v in args.variants.split(",") if v]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="rag-bench-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        onnx_cache = work / "cache"
        for rt in {v.split("/")[0] for v in variants if v != "recipe"}:
            _warm(rt, onnx_cache, work)
        for rep in range(args.reps):
            # A, B, C then C, B, A: a load that rises or falls during a rep hits every variant alike
            for v in variants if rep % 2 == 0 else variants[::-1]:
                data = work / f"{v.replace('/', '-')}-{rep}"
                if v == "recipe":
                    r = run_child("recipe", str(corpus), str(data), str(size), str(chunk.overlap_tokens))
                else:
                    rt, workers = v.split("/")
                    r = run_child("ours", str(corpus), str(data), rt, workers,
                                  env_extra={"RAG_CACHE_DIR": str(onnx_cache),  # the ONNX export, made once
                                             "RAG_EMBEDDING__CACHE_DIR": str(data / "embedding-cache")})
                r["pages_per_s"] = units / r["seconds"]
                r["chunks_per_s"] = r["chunks"] / r["seconds"]
                runs[v].append(r)
                print(f"rep {rep} {v:18s} {r['seconds']:7.1f} s in process, {r['process_wall_s']:7.1f} s command, "
                      f"CPU {r['cpu_s']:6.1f} s, {r['pages_per_s']:6.2f} pages/s, {r['chunks']} chunks, "
                      f"peak {r['peak_rss_mb']:.0f} MiB (tree {r['peak_tree_mb']:.0f}), load {r['load']:.1f}",
                      flush=True)
        quality = {}
        ref = next((v for v in variants if v.startswith("onnx/") or v.startswith("auto/")), None)
        if ref:
            for v in variants:
                if v != "recipe" and v != ref and v.split("/")[0] != ref.split("/")[0]:
                    quality[v] = parity(work / f"{ref.replace('/', '-')}-0", work / f"{v.replace('/', '-')}-0")
    base = runs.get("recipe")
    summary: dict[str, Any] = {"pdf_pages": pdf_pages, "text_files": text_files, "pages": units, "variants": {}}
    print()
    for v, rs in runs.items():
        row = {"seconds": _median(rs, "seconds"), "command_s": _median(rs, "process_wall_s"),
               "cpu_s": _median(rs, "cpu_s"), "pages_per_s": units / _median(rs, "seconds"),
               "chunks_per_s": _median(rs, "chunks") / _median(rs, "seconds"), "chunks": _median(rs, "chunks"),
               "peak_rss_mb": _median(rs, "peak_rss_mb"), "peak_tree_mb": _median(rs, "peak_tree_mb"),
               "loads": [r["load"] for r in rs], "stages": _shares(rs)}
        if base and v != "recipe":
            row["speedup"] = _median(base, "seconds") / row["seconds"]
            row["speedup_command"] = _median(base, "process_wall_s") / row["command_s"]
            row["cpu_ratio"] = _median(base, "cpu_s") / row["cpu_s"]
        summary["variants"][v] = row
        print(f"{v:18s} " + ", ".join(f"{k} {val:.2f}" if isinstance(val, float) else f"{k} {val}"
                                      for k, val in row.items() if k not in ("stages", "loads")))
        if row["stages"]:
            print(f"{'':18s} stages: {row['stages']}")
    for v, q in quality.items():
        print(f"vectors of {v} against {ref}: " + ", ".join(f"{k} {val:.4f}" for k, val in q.items()))
    summary["quality"] = quality
    summary["runs"] = runs
    return summary


def _mutate(corpus: Path, fraction: float, seed: int) -> list[Path]:
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith("."))
    picked = random.Random(seed).sample(files, max(1, int(len(files) * fraction)))
    for p in picked:
        p.write_text(p.read_text() + f"\nEdited on run {seed}: one more sentence about this file.\n")
    return picked


def mode_scale(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in [int(x) for x in args.files.split(",") if x]:
        corpus = ensure_small_files(args.cache_dir, n)
        with tempfile.TemporaryDirectory(prefix="rag-bench-scale-", dir=args.work_dir) as tmp:
            work = Path(tmp)
            copy = work / "corpus"  # a private copy: the 1% change edits it
            shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns(".complete"))
            data = str(work / "data")
            # the ONNX export is shared with the warm-up run; the embedding cache belongs to this collection's runs
            env = {"RAG_CACHE_DIR": str(work / "cache"), "RAG_EMBEDDING__CACHE_DIR": str(work / "embedding-cache")}
            _warm(args.runtime, work / "cache", work)
            steps: dict[str, dict[str, Any]] = {}
            steps["first ingest"] = run_child("ours", str(copy), data, args.runtime, args.workers, env_extra=env)
            steps["unchanged re-scan"] = run_child("ours", str(copy), data, args.runtime, args.workers, env_extra=env)
            _mutate(copy, 0.01, seed=1)
            steps["1% of files changed"] = run_child("ours", str(copy), data, args.runtime, args.workers,
                                                     env_extra=env)
            picked = random.Random(2).sample(sorted(p for p in copy.rglob("*") if p.is_file()), max(1, n // 100))
            for p in picked:
                os.utime(p)  # new mtime, same bytes
            steps["1% touched (mtime only)"] = run_child("ours", str(copy), data, args.runtime, args.workers,
                                                         env_extra=env)
            for name, r in steps.items():
                print(f"{n:>7} files  {name:26s} {r['seconds']:8.2f} s in process, {r['process_wall_s']:8.1f} s "
                      f"command, CPU {r['cpu_s']:7.1f} s, new {r['new']} changed {r['changed']} unchanged "
                      f"{r['unchanged']}, {r['chunks']} chunks ({r['embedded']} embedded), peak {r['peak_rss_mb']:.0f} "
                      f"MiB (tree {r['peak_tree_mb']:.0f}), load {r['load']:.1f}; stages "
                      + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()), flush=True)
            out[str(n)] = steps
    return out


def mode_ray(args: argparse.Namespace) -> dict[str, Any]:
    n = int(args.files.split(",")[0])
    corpus = ensure_small_files(args.cache_dir, n)
    variants = [("local, parse processes", "local", args.workers), ("local, one parse thread", "local", "0"),
                ("local Ray", "ray", args.workers)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="rag-bench-ray-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        env = {"RAG_CACHE_DIR": str(work / "cache")}
        _warm(args.runtime, work / "cache", work)
        for rep in range(args.reps):
            for name, mode, workers in variants if rep % 2 == 0 else variants[::-1]:
                data = str(work / f"{mode}-{workers}-{rep}")
                r = run_child("ours", str(corpus), data, args.runtime, workers, mode,
                              env_extra={**env, "RAG_EMBEDDING__CACHE_DIR": data + "-embedding-cache"})
                runs[name].append(r)
                print(f"rep {rep} {name:24s} {r['seconds']:8.1f} s in process, {r['process_wall_s']:8.1f} s command, "
                      f"CPU {r['cpu_s']:7.1f} s, {r['chunks']} chunks, peak tree {r['peak_tree_mb']:.0f} MiB, load "
                      f"{r['load']:.1f}; stages " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()),
                      flush=True)
    return {"files": n, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="recipe", choices=["recipe", "scale", "ray"])
    ap.add_argument("--pages", type=int, default=200, help="recipe: PDF pages in the corpus (at least)")
    ap.add_argument("--variants", default="recipe,onnx/0,onnx/1,onnx-int8/0,onnx-int8/1",
                    help="recipe: 'recipe' and rag ingest variants RUNTIME/WORKERS (-1 automatic, 0 one thread)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--files", default="10000", help="scale/ray: small-file corpus sizes")
    ap.add_argument("--runtime", default="auto", help="scale/ray: the embedding runtime")
    ap.add_argument("--workers", default="-1", help="scale/ray: RAG_INGEST__WORKERS")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "rag-bench")
    ap.add_argument("--work-dir", type=Path, default=None, help="where runs write (default: the system temp dir)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    print(f"load average at start: {_load():.2f}; cores: {os.cpu_count()}", flush=True)
    result = {"recipe": mode_recipe, "scale": mode_scale, "ray": mode_ray}[args.mode](args)
    result["command"] = " ".join(sys.argv)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))


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
