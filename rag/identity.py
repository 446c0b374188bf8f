"""Users, groups, collection grants and API keys, in one SQLite file under the data directory.

* **Passwords** are hashed with Argon2id (``argon2-cffi``'s defaults: the OWASP-recommended memory-hard hash); a
  sign-in for an unknown user still runs one hash, so timing does not tell which names exist; five wrong passwords
  lock the account for a few minutes.
* **API keys** are 256 random bits, shown once (``rag keys create``) and stored as SHA-256 digests. A fast digest is
  right for a random key (nothing to brute-force, unlike a password), and a slow one would cost every request
  ~50 ms of CPU. A key reads ``rag_<id>_<secret>``: the id finds the row, the secret is compared in constant time.
* **Grants** give a user, or every member of a group (``@hr``), ``reader`` or ``editor`` on one collection or on
  ``*``. What that allows is decided by ``rag.policy``; this module only stores facts.

Example::

    >>> ids = IdentityStore(Path(tmp) / "identity.sqlite")  # doctest: +SKIP
    >>> ids.add_user("alice", "a long passphrase", role="editor", groups=["hr"])  # doctest: +SKIP
    >>> ids.grant("alice", "papers", "reader")  # doctest: +SKIP
    >>> key = ids.create_key("alice", "laptop")  # doctest: +SKIP
    >>> ids.principal_for_key(key.secret).grants  # doctest: +SKIP
    {'papers': 'reader'}
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, RagError, UsageError
from rag.policy import ALL_COLLECTIONS, GRANTS, ROLES, Principal, Role, parse_groups
from rag.transactions import transaction

MIN_PASSWORD_LENGTH = 10
MAX_FAILED_LOGINS = 5
LOCKOUT_S = 300.0
KEY_PREFIX = "rag_"
LAST_USED_EVERY_S = 60.0  # how stale a key's "last used" may be
_USER_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT,                 -- NULL: API keys only
    role          TEXT NOT NULL,
    groups        TEXT NOT NULL DEFAULT '[]',
    disabled      INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    locked_until  REAL NOT NULL DEFAULT 0,
    created       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    grantee    TEXT NOT NULL,           -- a user name, or @group
    collection TEXT NOT NULL,           -- a collection name, or *
    level      TEXT NOT NULL,
    PRIMARY KEY (grantee, collection)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id        TEXT PRIMARY KEY,
    user      TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    digest    TEXT NOT NULL,
    created   REAL NOT NULL,
    last_used REAL,
    revoked   INTEGER NOT NULL DEFAULT 0
);
"""


class AuthError(RagError):
    """Wrong or missing credentials (HTTP 401). The message never says whether the user exists."""


class IdentityError(UsageError):
    """A user-management request that cannot be done (unknown user, weak password, duplicate name...)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    groups: tuple[str, ...]
    disabled: bool
    has_password: bool


@dataclass(frozen=True)
class ApiKey:
    id: str
    user: str
    name: str
    created: float
    last_used: float | None
    revoked: bool
    secret: str = ""  # only on the object create_key returns: shown once, never stored


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ConfigError("user passwords need argon2-cffi: pip install argon2-cffi") from e
    return PasswordHasher()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class IdentityStore:
    """The identity database (see the module docstring). Thread-safe: one short connection per call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ph = _hasher()
        self._dummy = self._ph.hash(secrets.token_hex(16))  # verified against for unknown users (same timing)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            finally:
                db.close()
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the identity database {self.path}: {e}") from e
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)  # password hashes and key digests: the owner only

    @contextlib.contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: ``write`` takes the write lock up front; reads share a snapshot and never wait for it
        (every API request reads here, so reads must not queue behind each other)."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
            with transaction(db, write=write):
                yield db
        finally:
            db.close()

    # ------------------------------------------------------------------------------------------------ users
    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise IdentityError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")

    def add_user(
        self, name: str, password: str | None, *, role: str = "reader", groups: Sequence[str] = ()
    ) -> User:
        import re

        if not re.match(_USER_RE, name):
            raise IdentityError(f"invalid user name {name!r}: letters, digits, '_', '.', '@' or '-' (64 at most)")
        if role not in ROLES:
            raise IdentityError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        try:
            labels = parse_groups(groups)
        except ValueError as e:
            raise IdentityError(str(e)) from e
        if password is not None:
            self._check_password(password)
        hashed = self._ph.hash(password) if password is not None else None
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise IdentityError(f"user {name!r} exists already")
            db.execute(
                "INSERT INTO users (name, password_hash, role, groups, created) VALUES (?, ?, ?, ?, ?)",
                (name, hashed, role, json.dumps(list(labels)), time.time()),
            )
        return self.user(name)

    def user(self, name: str) -> User:
        with self._db(write=False) as db:
            return self._user(db, name)

    @staticmethod
    def _user(db: sqlite3.Connection, name: str) -> User:
        row = db.execute(
            "SELECT name, role, groups, disabled, password_hash IS NOT NULL FROM users WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise IdentityError(f"no user {name!r}")
        return User(row[0], row[1], tuple(json.loads(row[2])), bool(row[3]), bool(row[4]))

    def users(self) -> list[User]:
        with self._db(write=False) as db:
            names = [r[0] for r in db.execute("SELECT name FROM users ORDER BY name")]
        return [self.user(n) for n in names]

    def has_users(self) -> bool:
        with self._db(write=False) as db:
            return db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        groups: Sequence[str] | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> User:
        self.user(name)
        sets: list[str] = []
        params: list[Any] = []
        if role is not None:
            if role not in ROLES:
                raise IdentityError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
            sets.append("role = ?")
            params.append(role)
        if groups is not None:
            try:
                params.append(json.dumps(list(parse_groups(groups))))
            except ValueError as e:
                raise IdentityError(str(e)) from e
            sets.append("groups = ?")
        if password is not None:
            self._check_password(password)
            sets += ["password_hash = ?", "failed = 0", "locked_until = 0"]
            params.append(self._ph.hash(password))
        if disabled is not None:
            sets.append("disabled = ?")
            params.append(int(disabled))
        if sets:
            with self._db() as db:
                db.execute(f"UPDATE users SET {', '.join(sets)} WHERE name = ?", (*params, name))
        return self.user(name)

    def remove_user(self, name: str) -> None:
        self.user(name)
        with self._db() as db:
            db.execute("DELETE FROM api_keys WHERE user = ?", (name,))
            db.execute("DELETE FROM grants WHERE grantee = ?", (name,))
            db.execute("DELETE FROM users WHERE name = ?", (name,))

    def ensure_admin(self, name: str, password: str) -> bool:
        """Create ``name`` as an admin when the database has no user yet (first start); True if it was created."""
        if self.has_users():
            return False
        self.add_user(name, password, role="admin")
        return True

    # ------------------------------------------------------------------------------------------------ grants
    def grant(self, grantee: str, collection: str, level: str) -> None:
        """``grantee`` (a user, or ``@group``) becomes ``level`` (reader/editor) on ``collection`` (or ``*``)."""
        if level not in GRANTS:
            raise IdentityError(f"unknown grant {level!r}; use reader or editor (admins reach every collection)")
        if grantee.startswith("@"):
            try:
                parse_groups(grantee[1:])
            except ValueError as e:
                raise IdentityError(str(e)) from e
        else:
            self.user(grantee)
        with self._db() as db:
            db.execute(
                "INSERT INTO grants VALUES (?, ?, ?) ON CONFLICT (grantee, collection) DO UPDATE SET level = ?",
                (grantee, collection, level, level),
            )

    def revoke(self, grantee: str, collection: str) -> bool:
        with self._db() as db:
            return db.execute(
                "DELETE FROM grants WHERE grantee = ? AND collection = ?", (grantee, collection)
            ).rowcount > 0

    def grants(self, grantee: str | None = None) -> list[tuple[str, str, str]]:
        """(grantee, collection, level) rows, all or one grantee's."""
        with self._db(write=False) as db:
            if grantee is None:
                rows = db.execute("SELECT grantee, collection, level FROM grants ORDER BY grantee, collection")
            else:
                rows = db.execute("SELECT grantee, collection, level FROM grants WHERE grantee = ?", (grantee,))
            return [tuple(r) for r in rows]  # type: ignore[misc]

    def principal(self, name: str) -> Principal:
        """Everything ``rag.policy`` needs to decide for ``name``: role, groups, own and group grants."""
        with self._db(write=False) as db:
            return self._principal(db, name)

    def _principal(self, db: sqlite3.Connection, name: str) -> Principal:
        user = self._user(db, name)
        rank = {"reader": 1, "editor": 2}
        grants: dict[str, Role] = {}
        grantees = [name, *(f"@{g}" for g in user.groups)]
        rows = db.execute(
            f"SELECT collection, level FROM grants WHERE grantee IN ({','.join('?' * len(grantees))})", grantees
        ).fetchall()
        for collection, lvl in rows:
            if rank[lvl] > rank.get(grants.get(collection, ""), 0):
                grants[collection] = lvl
        return Principal(
            name=user.name, role=user.role, groups=frozenset(user.groups), grants=grants,
            sees_everything=user.role == "admin",
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------- credentials
    def authenticate(self, name: str, password: str) -> Principal:
        """The principal for a correct password; ``AuthError`` (the same message for every failure) otherwise."""
        from argon2.exceptions import InvalidHashError, VerificationError

        failure = AuthError("wrong user name or password (or the account is locked for a few minutes)")
        with self._db(write=False) as db:
            row = db.execute(
                "SELECT password_hash, disabled, locked_until FROM users WHERE name = ?", (name,)
            ).fetchone()
        if row is None or row[0] is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._ph.verify(self._dummy, password)
            raise failure
        hashed, disabled, locked_until = row
        if disabled or locked_until > time.time():
            raise failure
        try:
            self._ph.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            with self._db() as db:
                failed = db.execute("SELECT failed FROM users WHERE name = ?", (name,)).fetchone()[0] + 1
                lock = time.time() + LOCKOUT_S if failed >= MAX_FAILED_LOGINS else 0
                db.execute("UPDATE users SET failed = ?, locked_until = ? WHERE name = ?",
                           (0 if lock else failed, lock, name))
            raise failure from None
        with self._db() as db:
            db.execute("UPDATE users SET failed = 0 WHERE name = ?", (name,))
            if self._ph.check_needs_rehash(hashed):
                db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (self._ph.hash(password), name))
        return self.principal(name)

    def create_key(self, user: str, name: str = "default") -> ApiKey:
        """A new API key for ``user``; its ``secret`` is returned here once and never again."""
        self.user(user)
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys (id, user, name, digest, created) VALUES (?, ?, ?, ?, ?)",
                (key_id, user, name, _digest(secret), now),
            )
        return ApiKey(key_id, user, name, now, None, False, secret=secret)

    def keys(self, user: str | None = None) -> list[ApiKey]:
        sql = "SELECT id, user, name, created, last_used, revoked FROM api_keys"
        with self._db(write=False) as db:
            rows = (db.execute(sql + " WHERE user = ? ORDER BY created", (user,)) if user
                    else db.execute(sql + " ORDER BY user, created")).fetchall()
        return [ApiKey(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self._db() as db:
            return db.execute("UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0", (key_id,)).rowcount > 0

    def principal_for_key(self, secret: str) -> Principal:
        """The principal behind an API key; ``AuthError`` for a malformed, unknown, revoked or disabled one."""
        failure = AuthError("invalid API key: send 'Authorization: Bearer rag_...' with a key from `rag keys create`")
        parts = secret.split("_", 2) if secret.startswith(KEY_PREFIX) else []
        if len(parts) != 3:
            raise failure
        with self._db(write=False) as db:
            row = db.execute(
                "SELECT k.user, k.digest, k.revoked, u.disabled, k.last_used FROM api_keys k "
                "JOIN users u ON u.name = k.user WHERE k.id = ?", (parts[1],)
            ).fetchone()
            if row is None or not hmac.compare_digest(row[1], _digest(secret)) or row[2] or row[3]:
                raise failure
            principal = self._principal(db, row[0])
        now = time.time()
        if row[4] is None or now - row[4] > LAST_USED_EVERY_S:  # a write per request would serialise them all
            with self._db() as db:
                db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, parts[1]))
        return principal


def ensure_initial_admin(settings: Settings) -> bool:
    """Create the admin named ``auth.initial_admin`` from ``auth.initial_admin_password`` (or the file
    ``auth.initial_admin_password_file``, e.g. a Docker secret) when the identity database has no user yet."""
    a = settings.auth
    password = a.initial_admin_password.get_secret_value() if a.initial_admin_password else None
    if password is None and a.initial_admin_password_file is not None:
        try:
            password = a.initial_admin_password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read the initial admin password file: {e}") from e
    if not password:
        return False
    return IdentityStore(settings.identity_path).ensure_admin(a.initial_admin, password)


__all__ = ["ALL_COLLECTIONS", "ApiKey", "AuthError", "IdentityError", "IdentityStore", "User"]
