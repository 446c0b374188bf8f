"""Property-based tests (hypothesis): random hostile trees, random races between processes, random chunks and
filters through every store. The ``ci`` profile (tests/conftest.py) bounds and derandomises them; run
``HYPOTHESIS_PROFILE=dev pytest tests/test_properties.py`` to explore ten times more.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ingest.discover import shown  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.filters import matches  # noqa: E402
from rag.retrieve import _bag, remove_near_duplicates, text_similarity  # noqa: E402
from rag.types import Chunk, ScoredChunk  # noqa: E402
from rag.wiring import Wiring  # noqa: E402
from tests.fakes import FakeEmbedder, store_for  # noqa: E402
from tests.reliability import RagRunner, write_corpus  # noqa: E402

DEV = settings.default.max_examples > 50
IS_ROOT = os.geteuid() == 0


def budget(ci: int) -> int:
    """Examples for a test: ``ci`` in CI, ten times more with the dev profile."""
    return ci * 10 if DEV else ci


# --------------------------------------------------------------------------------------------- random trees
_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x00")
names = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda n: not n.startswith(".") and n.strip() == n)
CONTENT = st.sampled_from(["utf8", "utf16", "latin1", "binary", "empty", "whitespace", "pdf-garbage"])
SUFFIX = st.sampled_from([".md", ".txt", ".html", ".pdf", ".bin", ""])
LINK = st.sampled_from(["file_in", "dir_in", "outside_file", "outside_dir", "dangling", "self", "ancestor"])


@dataclass(frozen=True)
class Node:
    kind: str  # file | dir | link | fifo
    name: str
    bad_name: bool = False  # not UTF-8 on disk
    content: str = "utf8"
    text: str = ""
    suffix: str = ".md"
    link: str = ""
    locked: bool = False  # chmod 000 (only unreadable when not root)
    children: tuple[Node, ...] = ()


leaf = st.one_of(
    st.builds(Node, kind=st.just("file"), name=names, bad_name=st.booleans(),
              content=CONTENT, text=st.text(min_size=0, max_size=200), suffix=SUFFIX),
    st.builds(Node, kind=st.just("link"), name=names, link=LINK),
    st.builds(Node, kind=st.just("fifo"), name=names),
)  # fmt: skip
tree = st.recursive(
    leaf,
    lambda kids: st.builds(Node, kind=st.just("dir"), name=names, bad_name=st.booleans(), locked=st.booleans(),
                           children=st.lists(kids, max_size=5).map(tuple)),  # fmt: skip
    max_leaves=25,
)


def _content(node: Node) -> bytes:
    text = node.text or "some words"
    return {
        "utf8": text.encode("utf-8", "surrogatepass"),
        "utf16": text.encode("utf-16-le", "surrogatepass"),
        "latin1": text.encode("latin-1", "replace"),
        "binary": bytes(random.Random(len(text)).randrange(256) for _ in range(300)),
        "empty": b"",
        "whitespace": b" \n\t \n",
        "pdf-garbage": b"%PDF-1.4\n" + text.encode("utf-8", "surrogatepass"),
    }[node.content]


class _Built:
    """The tree on disk, and what discovery must say about each path (a path -> the bucket it must land in)."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root, self.outside = root, outside
        # shown path -> "ingested-or-failed" | "skipped" | "failed" | "skipped-or-failed"
        self.expect: dict[str, str] = {}
        self.files: list[Path] = []
        self.dirs: list[Path] = []
        self.locked: list[Path] = []

    def build(self, nodes: tuple[Node, ...], folder: Path) -> None:
        used: set[str] = set()
        for node in nodes:
            name = node.name + (node.suffix if node.kind == "file" else "")
            fs_name = os.fsdecode(os.fsencode(name) + b"\xff") if node.bad_name else name
            if fs_name in used or len(os.fsencode(fs_name)) > 250:
                continue
            used.add(fs_name)
            path = folder / fs_name
            key = shown(path)
            if node.kind == "file":
                path.write_bytes(_content(node))
                self.files.append(path)
                supported = node.suffix in (".md", ".txt", ".html", ".pdf")
                self.expect[key] = ("failed" if node.bad_name else "ingested-or-failed") if supported else (
                    "skipped-or-failed")  # an unsupported type with a bad name: either report is fair
            elif node.kind == "fifo":
                os.mkfifo(path)
                self.expect[key] = "skipped"
            elif node.kind == "link":
                self._link(node, path, key)
            else:
                path.mkdir()
                if node.bad_name:
                    self.expect[key] = "failed"
                    continue
                self.dirs.append(path)
                self.build(node.children, path)
                if node.locked and not IS_ROOT:
                    self.locked.append(path)
                    for sub in list(self.expect):  # nothing below it can be seen
                        if sub.startswith(key + "/"):
                            del self.expect[sub]
                    self.expect[key] = "failed"

    def _link(self, node: Node, path: Path, key: str) -> None:
        target = {
            "file_in": self.files[0] if self.files else self.root / "missing",
            "dir_in": self.dirs[0] if self.dirs else self.root,
            "outside_file": self.outside / "far.md",
            "outside_dir": self.outside,
            "dangling": self.root / f"nowhere-{uuid.uuid4().hex}",
            "self": path,
            "ancestor": self.root.parent,
        }[node.link]
        path.symlink_to(target)
        broken = node.link in ("dangling", "self") or (node.link == "file_in" and not self.files)
        self.expect[key] = "failed" if broken else "skipped"  # the default policy follows no link


@settings(max_examples=budget(20))
@given(nodes=st.lists(tree, min_size=1, max_size=6).map(tuple), depth=st.integers(0, 300))
def test_random_trees_never_stop_the_batch_and_every_path_lands_in_one_bucket(nodes: tuple[Node, ...],
                                                                              depth: int) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        outside = base / "outside"
        outside.mkdir()
        (outside / "far.md").write_text("# Far\n\nOutside the ingested folder.")
        root = base / "docs"
        root.mkdir()
        built = _Built(root, outside)
        built.build(nodes, root)
        deep = root
        for _ in range(depth):
            deep = deep / "d"
            deep.mkdir()
        if depth:
            (deep / "bottom.md").write_text("# Bottom\n\nAt the bottom of a deep folder.")
            built.expect[shown(deep / "bottom.md")] = "ingested-or-failed"
        for path in built.locked:
            path.chmod(0o000)
        try:
            settings_ = Settings(data_dir=base / "data", store={"backend": "memory"})
            summary = ingest_paths([root], settings_, embedder=FakeEmbedder())  # must not raise
            with Wiring(settings_, embedder=FakeEmbedder()).collection() as c:
                ingested = [shown(s) for s, _ in c.documents()]
        finally:
            for path in built.locked:
                path.chmod(0o755)
    buckets = Counter([*ingested, *(f.path for f in summary.failed), *(f.path for f in summary.skipped)])
    assert [p for p, n in buckets.items() if n > 1] == []  # no path in two buckets
    assert set(buckets) == set(built.expect), (set(buckets) ^ set(built.expect))
    where = {**{p: "ingested" for p in ingested}, **{f.path: "failed" for f in summary.failed},
             **{f.path: "skipped" for f in summary.skipped}}  # fmt: skip
    for path, expected in built.expect.items():
        assert where[path] in expected, (path, expected, where[path])
    assert summary.new == len(ingested) and summary.files_seen == summary.new + sum(
        1 for f in summary.failed if where.get(f.path) == "failed" and built.expect[f.path] == "ingested-or-failed")


# ------------------------------------------------------------------------------------- dedup = the quadratic loop
words = st.sampled_from("river stone moss fern owl elk pine lake snow wind ash oak".split())
texts = st.lists(words, min_size=0, max_size=30).map(" ".join)


@settings(max_examples=budget(60))
@given(pool=st.lists(texts, min_size=1, max_size=8), picks=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 3)),
       max_size=40), threshold=st.sampled_from([0.3, 0.6, 0.8, 0.9, 0.95, 1.0]), limit=st.none() | st.integers(0, 10))
def test_near_duplicate_removal_equals_the_quadratic_loop(pool: list[str], picks: list[tuple[int, int]],
                                                          threshold: float, limit: int | None) -> None:  # fmt: skip
    hits = []
    for i, (which, mutation) in enumerate(picks):
        text = pool[which % len(pool)] + " extra" * mutation
        chunk = Chunk(id=str(i), text=text, source="/s.md", page=None, start=0, end=len(text),
                      content_hash=str(hash(text)), file_hash="f", file_type="md")  # fmt: skip
        hits.append(ScoredChunk(chunk, 1.0))
    kept: list[str] = []
    bags: list[Counter[str]] = []
    hashes: set[str] = set()
    for h in hits:  # the obvious loop, the reference
        if limit is not None and len(kept) >= limit:
            break
        if h.chunk.content_hash in hashes:
            continue
        bag = _bag(h.chunk.text)
        if threshold < 1.0 and any(text_similarity(bag, b) >= threshold for b in bags):
            continue
        kept.append(h.chunk.id)
        bags.append(bag)
        hashes.add(h.chunk.content_hash)
    assert [h.chunk.id for h in remove_near_duplicates(hits, threshold, limit=limit)] == kept


# ------------------------------------------------------------------------------------ every store, the contract
STORE_SPECS = {
    "memory": {"backend": "memory"},
    "faiss-flat": {"backend": "faiss", "faiss_index": "flat", "use_gpu": "never"},
    "qdrant-embedded": {"backend": "qdrant", "qdrant_mode": "embedded"},  # exact below its full-scan threshold
    "qdrant-local": {"backend": "qdrant", "qdrant_mode": "local"},
}
DIM = 8
chunk_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
SOURCES = ["/docs/a.md", "/docs/b.pdf", "/docs/ünï cødé.txt", "/docs/c.html"]
filters_st = st.fixed_dictionaries({}, optional={
    "source": st.lists(st.sampled_from(SOURCES), max_size=3) | st.sampled_from(SOURCES),
    "file_type": st.lists(st.sampled_from(["md", "pdf", "txt", "html", "PDF"]), max_size=2),
    "page": st.lists(st.integers(1, 4), max_size=2) | st.integers(1, 4),
})  # fmt: skip


def _available(name: str) -> bool:
    import importlib.util

    needs = {"faiss-flat": "faiss", "qdrant-embedded": "qdrant_edge", "qdrant-local": "qdrant_client"}.get(name)
    return needs is None or importlib.util.find_spec(needs) is not None


@settings(max_examples=budget(15))
@given(
    items=st.lists(st.tuples(chunk_texts, st.integers(0, 3), st.integers(1, 4)), min_size=1, max_size=25),
    filters=filters_st,
    k=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_random_chunks_and_filters_get_the_reference_answers_from_every_store(
    items: list[tuple[str, int, int]], filters: dict[str, Any], k: int, seed: int
) -> None:
    chunks = []
    for i, (text, s, page) in enumerate(items):
        source = SOURCES[s]
        file_type = source.rsplit(".", 1)[-1]
        page_ = page if file_type == "pdf" else None
        chunks.append(Chunk(id=f"c{i}", text=text, source=source, page=page_, start=0, end=len(text),
                            content_hash=f"h{i}", file_hash="f", file_type=file_type))  # fmt: skip
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = rng.normal(size=DIM).astype(np.float32)
    allowed = [i for i, c in enumerate(chunks) if matches(c, filters)]
    scores = vectors[allowed] @ (query / np.linalg.norm(query))
    want = [chunks[allowed[j]].id for j in np.argsort(-scores, kind="stable")[:k]]
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in STORE_SPECS.items():
            if not _available(name):
                continue
            store = store_for(Settings(data_dir=tmp, collection=f"p{name}", store=spec), DIM, "m")
            try:
                store.upsert(chunks, vectors)
                got = store.search(query, k, filters)
                assert [h.chunk.id for h in got] == want, name
                for h in got:  # the chunk comes back unchanged, unicode included, with its cosine score
                    assert h.chunk == chunks[int(h.chunk.id[1:])], name
                    assert h.score == pytest.approx(float(vectors[int(h.chunk.id[1:])] @ query
                                                          / np.linalg.norm(query)), abs=1e-4)  # fmt: skip
                assert sorted(c.id for c in store.chunks(filters)) == sorted(chunks[i].id for i in allowed), name
            finally:
                store.close()


# ------------------------------------------------------------------- two writers and a reader, as processes
WRITER_OPS = st.sampled_from([("ingest", "a"), ("ingest", "b"), ("ingest", "a", "--prune"), ("ingest", "b", "--prune")])
READER_OPS = st.sampled_from(["hybrid", "bm25", "dense"])


@pytest.mark.timeout(900)
@settings(max_examples=budget(4))
@given(
    first=st.lists(WRITER_OPS, min_size=1, max_size=2),
    second=st.lists(WRITER_OPS, min_size=1, max_size=2),
    reads=st.lists(READER_OPS, min_size=1, max_size=2),
    kill_after=st.none() | st.floats(0.0, 4.0),
    edit_after=st.floats(0.0, 3.0),
)
def test_random_interleavings_of_two_writers_and_a_reader_end_consistent(
    first: list[tuple[str, ...]], second: list[tuple[str, ...]], reads: list[str], kill_after: float | None,
    edit_after: float,
) -> None:
    """Real `rag` processes (the fake embedder at our seam) racing on one FAISS collection while files change;
    whatever the interleaving and wherever a writer is killed, a resumed run leaves exactly what a clean run of
    the final files leaves, and `rag doctor` is clean. A reader never sees a traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        folders = {"a": write_corpus(base / "a", 12, prefix="a"), "b": write_corpus(base / "b", 6, prefix="b", seed=3)}
        (base / "data").mkdir()
        runner = RagRunner(base / "data")
        outcomes: list[Any] = []
        lock = threading.Lock()

        def actor(ops: list[tuple[str, ...]], killable: bool) -> None:
            for i, op in enumerate(ops):
                args = [op[0], str(folders[op[1]]), *op[2:]]
                proc = runner.start(*args)
                timer = None
                if killable and i == 0 and kill_after is not None:
                    timer = threading.Timer(kill_after, proc.kill)
                    timer.start()
                out, err = proc.communicate(timeout=600)
                if timer:
                    timer.cancel()
                with lock:
                    outcomes.append((args, proc.returncode, err))

        def reader() -> None:
            for mode in reads:
                o = runner.run("search", "marker river glacier", "--mode", mode, "--json")
                with lock:
                    outcomes.append((["search", mode], o.returncode, o.stderr))

        def editor() -> None:
            threading.Event().wait(edit_after)
            (folders["a"] / "a0003.md").write_text("# a 3\n\nmarkera0003 edited while the writers run.\n")
            (folders["b"] / "b0001.md").unlink()

        threads = [threading.Thread(target=actor, args=(first, True)), threading.Thread(target=actor, args=(second,
                   False)), threading.Thread(target=reader), threading.Thread(target=editor)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for args, code, err in outcomes:
            assert "Traceback" not in err, (args, err)
            assert code in (0, -9) or err.strip().splitlines()[-1].startswith("error: "), (args, code, err)
        runner.check("ingest", str(folders["a"]), str(folders["b"]), "--prune")  # resume after any kill
        runner.assert_consistent()
        clean, _ = runner.clean_ids(["ingest", str(folders["a"]), str(folders["b"])])
        assert runner.chunk_ids() == clean
        shutil.rmtree(base / "data", ignore_errors=True)
