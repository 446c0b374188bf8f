"""The ingestion manifest: which file (by content hash) is in the collection, with how many chunks.

A small SQLite database beside the index (its path is decided by ``rag.collection.Collection``). A file is
marked ``pending`` *before* its old chunks are touched and ``done`` only after its new chunks are committed to the
store, so a crash at any point leaves either a ``done`` file whose chunks are all in the store, or a
``pending``/missing one that the next run ingests again. Size and mtime let an unchanged file be recognised without
hashing it (like ``git status``); the content hash decides when they differ.

Example::

    >>> m = Manifest(Path(tmp) / "manifest.sqlite")  # doctest: +SKIP
    >>> m.mark_pending("/a.txt"); m.mark_done(FileRecord("/a.txt", "h", 10, 1, "cfg", 3))  # doctest: +SKIP
    >>> m.get("/a.txt").chunks  # doctest: +SKIP
    3
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import StoreError
from rag.transactions import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source      TEXT PRIMARY KEY,
    file_hash   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    config_key  TEXT NOT NULL,
    chunks      INTEGER NOT NULL,
    status      TEXT NOT NULL,          -- 'done' or 'pending'
    updated_at  REAL NOT NULL
);
"""


@dataclass(frozen=True)
class FileRecord:
    source: str
    file_hash: str
    size: int
    mtime_ns: int
    config_key: str  # hash of what shaped the chunks (model, chunk size, loader version): a change re-ingests
    chunks: int
    status: str = "done"


class Manifest:
    """Per-collection record of ingested files; every write commits at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.Lock()  # one connection shared by a UI's sessions: one query at a time
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the ingestion manifest {path}: {e}; is the data directory writable?") from e

    def get(self, source: str) -> FileRecord | None:
        row = self._db.execute(
            "SELECT source, file_hash, size, mtime_ns, config_key, chunks, status FROM files WHERE source = ?",
            (source,),
        ).fetchone()
        return FileRecord(*row) if row else None

    def all(self) -> dict[str, FileRecord]:
        rows = self._db.execute(
            "SELECT source, file_hash, size, mtime_ns, config_key, chunks, status FROM files"
        ).fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    def index(self) -> dict[str, tuple[str, str, int, int, str, int]]:
        """source -> (status, config_key, size, mtime_ns, file_hash, chunks) of every file: what a scan compares
        against, as plain tuples (building 100,000 ``FileRecord`` objects costs more than the query)."""
        rows = self._db.execute("SELECT source, status, config_key, size, mtime_ns, file_hash, chunks FROM files")
        return {r[0]: r[1:] for r in rows}

    def done_chunks(self) -> int:
        """Chunks of all committed files (the collection's size without opening the store)."""
        return int(self._db.execute("SELECT COALESCE(SUM(chunks), 0) FROM files WHERE status = 'done'").fetchone()[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    def pending(self, among: Iterable[str] | None = None) -> list[str]:
        """Files marked pending (being changed, or left half-done by a stopped run), optionally among ``among``."""
        with self._mutex:
            if among is None:
                rows = self._db.execute("SELECT source FROM files WHERE status != 'done' ORDER BY source").fetchall()
                return [r[0] for r in rows]
            wanted = list(dict.fromkeys(among))
            out: list[str] = []
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                out += [r[0] for r in self._db.execute(
                    f"SELECT source FROM files WHERE status != 'done' AND source IN ({','.join('?' * len(part))})",
                    part)]  # fmt: skip
            return out

    def mark_pending(self, source: str) -> None:
        """Say "this file's chunks are being replaced" before touching them (crash-safe ordering)."""
        self._db.execute(
            "INSERT INTO files VALUES (?, '', 0, 0, '', 0, 'pending', ?) "
            "ON CONFLICT(source) DO UPDATE SET status = 'pending', updated_at = excluded.updated_at",
            (source, time.time()),
        )

    def mark_done(self, record: FileRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, 'done', ?)",
            (record.source, record.file_hash, record.size, record.mtime_ns, record.config_key, record.chunks,
             time.time()),
        )

    # -- many files in one transaction (a group commit of a batch: 100k small files must not mean 100k commits) --
    def mark_pending_many(self, sources: Sequence[str]) -> None:
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT INTO files VALUES (?, '', 0, 0, '', 0, 'pending', ?) "
                "ON CONFLICT(source) DO UPDATE SET status = 'pending', updated_at = excluded.updated_at",
                [(s, now) for s in sources],
            )

    def mark_done_many(self, records: Sequence[FileRecord]) -> None:
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, 'done', ?)",
                [(r.source, r.file_hash, r.size, r.mtime_ns, r.config_key, r.chunks, now) for r in records],
            )

    def touch_many(self, items: Sequence[tuple[str, int, int]]) -> None:
        """(source, size, mtime_ns) of files whose content hash did not change."""
        with self._transaction():
            self._db.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE source = ?",
                                 [(size, mtime, source) for source, size, mtime in items])

    def remove_many(self, sources: Sequence[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM files WHERE source = ?", [(s,) for s in sources])

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # under the mutex: the connection is shared by threads (ingestion's writer thread, a server's readers), and
        # a second BEGIN on it while one is open would fail
        with self._mutex, transaction(self._db):
            yield

    def touch(self, source: str, size: int, mtime_ns: int) -> None:
        """Remember a new size/mtime for a file whose content hash did not change."""
        self._db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE source = ?", (size, mtime_ns, source))

    def remove(self, source: str) -> None:
        self._db.execute("DELETE FROM files WHERE source = ?", (source,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
