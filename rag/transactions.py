"""One SQLite transaction on a connection opened with ``isolation_level=None`` (we issue BEGIN ourselves): committed
when the block ends, rolled back when it raises, whatever it raises (Ctrl-C included).

Example::

    >>> import sqlite3
    >>> db = sqlite3.connect(":memory:", isolation_level=None)
    >>> _ = db.execute("CREATE TABLE t (x)")
    >>> with transaction(db):
    ...     _ = db.execute("INSERT INTO t VALUES (1)")
    >>> db.execute("SELECT count(*) FROM t").fetchone()[0]
    1
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock up front, so two writers never deadlock upgrading) or, with
    ``write=False``, a plain ``BEGIN`` (a read snapshot that waits for no one)."""
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
