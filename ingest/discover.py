"""Which files a run ingests: walk the given paths, skip hidden entries and what ``.ragignore`` excludes, and sort
every other path into exactly one of three lists: files a loader reads, ``skipped`` (by policy: an unsupported
type, a symlink that is not followed, something that is not a regular file) and ``failed`` (cannot be read: a
folder without permission, a broken symlink, a symlink loop, a name that is not UTF-8).

The walk is iterative (an explicit stack, so a folder nested 10,000 levels deep is one more entry, not a
``RecursionError``), and an unreadable folder costs only that folder.

**Symlinks** follow one policy for files and folders alike: a link whose target is outside the folder being
ingested is not followed (``passwd.txt -> /etc/passwd`` must not put ``/etc/passwd`` in the index) unless
``RAG_INGEST__FOLLOW_SYMLINKS_OUTSIDE=true``; a link whose target is inside it is not followed either, because the
target is read under its own path (no document twice). Either way the link is listed in ``skipped`` with the
reason. Followed folders are walked under the link's path; a folder reached twice (a link to an ancestor) is a
loop and is skipped. Paths named on the command line are taken as given (resolved), links included.

Example::

    >>> found = discover(["docs/samples"], ["*.pdf", "*.md", "*.txt"])  # doctest: +SKIP
    >>> [f.name for f in found.files][:2], found.skipped[:1], found.failed  # doctest: +SKIP
    (['Aardwolf.txt', 'lppl.pdf'], [], [])
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ingest.load import LOADERS
from rag.errors import UsageError

FOLLOW_HINT = "set RAG_INGEST__FOLLOW_SYMLINKS_OUTSIDE=true to follow links that leave it"


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


class Discovery(NamedTuple):
    """What a walk found: every path seen ends in exactly one of these (hidden and ``.ragignore``d ones aside)."""

    files: list[Path]
    skipped: list[FailedFile]
    failed: list[FailedFile]


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _utf8(name: str) -> bool:
    """Whether a name read from the file system is text (undecodable bytes arrive as surrogate escapes)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown(path: Path | str) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\xe9`` escapes (JSON and terminals accept it).

    >>> shown(Path(os.fsdecode(b"/docs/caf\\xe9.txt")))
    '/docs/caf\\\\xe9.txt'
    """
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):  # fmt: skip
        if test(mode):
            return what
    return "not a regular file"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Walk:
    """One discovery: the buckets, and what was already seen (so no file or folder is read twice)."""

    def __init__(self, include: Sequence[str], follow_outside: bool) -> None:
        self.patterns = [p.lower() for p in include]
        self.follow_outside = follow_outside
        self.files: dict[str, Path] = {}
        self.skipped: dict[str, FailedFile] = {}
        self.failed: dict[str, FailedFile] = {}
        self.file_ids: dict[tuple[int, int], str] = {}  # (device, inode) -> the path it was found under

    def seen(self, key: str) -> bool:
        return key in self.files or key in self.skipped or key in self.failed

    def skip(self, path: Path, reason: str) -> None:
        if not self.seen(str(path)):
            self.skipped[str(path)] = FailedFile(shown(path), reason)

    def fail(self, path: Path, reason: str) -> None:
        if not self.seen(str(path)):
            self.failed[str(path)] = FailedFile(shown(path), reason)

    def consider(self, path: Path, st: os.stat_result, *, via_link: bool) -> None:
        """A regular file (``st`` is its own stat, links followed)."""
        key = str(path)
        if self.seen(key):
            return
        if not _utf8(key):
            self.fail(path, "the file name is not valid UTF-8: rename the file (e.g. with convmv)")
            return
        identity = (st.st_dev, st.st_ino)
        if via_link and identity in self.file_ids:
            self.skip(path, f"the same file as {self.file_ids[identity]} (through a symlink); read once")
            return
        ok = path.suffix.lower() in LOADERS and any(fnmatch.fnmatchcase(path.name.lower(), p) for p in self.patterns)
        if not ok:
            self.skip(path, f"unsupported file type {path.suffix or '(no suffix)'!r}; skipped")
            return
        self.file_ids.setdefault(identity, key)
        self.files[key] = path

    def walk(self, root: Path) -> None:
        """Every entry under the folder ``root`` (already resolved), depth first, in name order."""
        visited: set[tuple[int, int]] = set()
        try:
            st = root.stat()
            visited.add((st.st_dev, st.st_ino))
        except OSError as e:
            self.fail(root, f"cannot read folder: {e.strerror}")
            return
        stack: list[tuple[Path, list[tuple[Path, str]], bool]] = [(root, [], False)]
        while stack:
            folder, inherited, via_link = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
                rules = inherited + _ragignore(folder)
            except OSError as e:
                self.fail(folder, _folder_error(e))
                continue
            subfolders: list[tuple[Path, list[tuple[Path, str]], bool]] = []
            for entry in entries:
                path = folder / entry.name
                if _hidden(entry.name) or _ignored(path, rules):
                    continue  # the user's own exclusions: not reported
                try:
                    if entry.is_symlink():
                        followed = self._link(path, root, visited)
                        if followed is not None:
                            subfolders.append((path, rules, True))
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if not _utf8(str(path)):
                            self.fail(path, "the folder name is not valid UTF-8: rename it (e.g. with convmv)")
                            continue
                        st = entry.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) in visited:  # reached again through a followed link
                            self.skip(path, "a folder already read through another path: not read twice")
                            continue
                        visited.add((st.st_dev, st.st_ino))
                        subfolders.append((path, rules, via_link))
                    elif entry.is_file(follow_symlinks=False):
                        self.consider(path, entry.stat(follow_symlinks=False), via_link=via_link)
                    else:
                        self.skip(path, f"{_kind(entry.stat(follow_symlinks=False).st_mode)}, not a file; skipped")
                except OSError as e:  # vanished or unreadable between listing and looking
                    self.fail(path, f"cannot read: {e.strerror}")
            stack.extend(reversed(subfolders))  # popped in name order

    def _link(self, path: Path, root: Path, visited: set[tuple[int, int]]) -> Path | None:
        """Apply the symlink policy to ``path``; the target folder to walk (under ``path``), or None."""
        try:
            target = Path(os.path.realpath(path, strict=True))
        except FileNotFoundError:
            self.fail(path, f"broken symlink: its target {_readlink(path)} does not exist")
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                self.fail(path, "symlink loop: the link leads back to itself")
            else:
                self.fail(path, f"cannot follow symlink: {e.strerror}")
            return None
        if _inside(target, root):
            self.skip(path, f"symlink to {target}, inside the folder being ingested: read there, not twice")
            return None
        if not self.follow_outside:
            self.skip(path, f"symlink to {target}, outside the folder being ingested: not followed ({FOLLOW_HINT})")
            return None
        try:
            st = target.stat()
        except OSError as e:
            self.fail(path, f"cannot follow symlink: {e.strerror}")
            return None
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in visited:
                self.skip(path, f"symlink to {target}, a folder already read through another path (a loop or a "
                          "second link): not read twice")
                return None
            visited.add((st.st_dev, st.st_ino))
            return target
        if stat.S_ISREG(st.st_mode):
            self.consider(path, st, via_link=True)
        else:
            self.skip(path, f"symlink to {_kind(st.st_mode)}, not a file; skipped")
        return None


def discover(
    paths: Sequence[str | Path], include: Sequence[str], *, follow_symlinks_outside: bool = False
) -> Discovery:
    """Files to ingest under ``paths`` (recursively, hidden entries skipped), and what was skipped or failed.

    Raises ``UsageError`` when a given path does not exist (nothing is done then).
    """
    walk = _Walk(include, follow_symlinks_outside)
    roots = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            dangling = " (a broken symlink)" if p.is_symlink() else ""
            raise UsageError(f"path not found: {raw}{dangling}")
        roots.append(p.resolve())
    for root in roots:
        try:
            st = root.stat()
        except OSError as e:
            walk.fail(root, f"cannot read: {e.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            walk.walk(root)
        elif stat.S_ISREG(st.st_mode):
            walk.consider(root, st, via_link=False)
        else:
            walk.skip(root, f"{_kind(st.st_mode)}, not a file; skipped")
    return Discovery(
        sorted(walk.files.values()),
        sorted(walk.skipped.values(), key=lambda f: f.path),
        sorted(walk.failed.values(), key=lambda f: f.path),
    )


def _folder_error(e: OSError) -> str:
    if isinstance(e, _RagignoreError):
        return str(e)
    if e.errno == errno.ENAMETOOLONG:
        return "cannot read folder: its path is longer than the system allows (nested too deep)"
    return f"cannot read folder: {e.strerror or e}"


class _RagignoreError(OSError):
    pass


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _ragignore(folder: Path) -> list[tuple[Path, str]]:
    """Patterns of ``folder/.ragignore`` (one glob a line, ``#`` comments), like a small ``.gitignore``.

    A pattern matches a file or folder name (``*.log``, ``drafts``) or a path relative to the folder that holds the
    ``.ragignore`` (``notes/private/*.md``); it applies to that folder and everything below it. Files named on the
    command line are always ingested. A ``.ragignore`` that exists but cannot be read keeps its whole folder out
    (what it excludes may be private): the folder is reported as failed.
    """
    path = folder / ".ragignore"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        return []
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise  # the folder itself is too deep to read anything in it
        raise _RagignoreError(
            f"cannot read its .ragignore ({e.strerror}): the folder is not read, so nothing it excludes is indexed"
        ) from e
    lines = os.fsdecode(raw).splitlines()  # names and patterns decode alike, undecodable bytes included
    return [(folder, line.strip().strip("/")) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(path: Path, rules: list[tuple[Path, str]]) -> bool:
    for base, pattern in rules:
        rel = path.relative_to(base).as_posix()
        if fnmatch.fnmatchcase(path.name, pattern) or fnmatch.fnmatchcase(rel, pattern):
            return True
    return False


def included(path: Path, roots: Sequence[Path], include: Sequence[str], *,
             follow_symlinks_outside: bool = False) -> bool:  # fmt: skip
    """Would ``discover(roots, include)`` list ``path``? For one changed file (``rag ingest --watch``) without
    walking the whole tree: the same hidden-name, ``.ragignore``, type and symlink rules, read along the path from its
    root (a ``.ragignore`` that cannot be read keeps its folder out, as in a walk).
    """
    path = Path(path)
    patterns = [p.lower() for p in include]
    if path.suffix.lower() not in LOADERS or not any(fnmatch.fnmatchcase(path.name.lower(), p) for p in patterns):
        return False
    for root in roots:
        if path == root:
            return True  # named on the command line
        if root not in path.parents:
            continue
        rules: list[tuple[Path, str]] = []
        here = root
        try:
            for part in path.relative_to(root).parts:
                rules = rules + _ragignore(here)
                here = here / part
                if _hidden(part) or _ignored(here, rules):
                    return False
                if here.is_symlink() and not _follows(here, root, follow_symlinks_outside):
                    return False
        except OSError:
            return False
        return True
    return False


def _follows(link: Path, root: Path, follow_outside: bool) -> bool:
    """Whether a walk of ``root`` reads what the symlink ``link`` points to (see the module docstring)."""
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError:
        return False
    return follow_outside and not _inside(target, root)
