"""Walking hostile trees: any depth, symlinks of every kind, pipes, unreadable folders, names that are not UTF-8.

Every path ends in exactly one of ingested / skipped / failed, with a reason; one bad corner never stops the batch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingest.discover import discover, shown
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.wiring import Wiring

INCLUDE = ["*.md", "*.txt"]
REPO = Path(__file__).resolve().parents[2]


def _reasons(items: list[Any]) -> dict[str, str]:
    return {Path(f.path).name: f.reason for f in items}


def test_a_folder_nested_1100_levels_is_walked_and_its_sibling_ingested(tmp_path: Path, fake_embedder: Any) -> None:
    """Before: RecursionError from the walk, the whole batch stopped and the top-level sibling was never read."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "top.md").write_text("# Top\n\nThe sibling at the top of a very deep tree.")
    deep = root
    for _ in range(1100):  # one level at a time (Path.mkdir(parents=True) itself recurses that deep)
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("The file at the bottom of the well.")
    try:
        summary = ingest_paths([root], Settings(), embedder=fake_embedder)
        assert summary.new == 2 and not summary.failed, summary.failed
        with Wiring(Settings(), embedder=fake_embedder).collection() as c:
            assert sorted(Path(s).name for s, _ in c.documents()) == ["bottom.txt", "top.md"]
    finally:
        _remove_deep(root / "d")  # shutil.rmtree (and pytest's clean-up of old temp dirs) would recurse 1100 deep


def _remove_deep(top: Path) -> None:
    chain = [top]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for entry in folder.iterdir():
            entry.unlink()
        folder.rmdir()


def test_a_tree_deeper_than_the_system_allows_fails_that_folder_only(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "ok.md").write_text("fine")
    fd = os.open(root, os.O_RDONLY)
    try:  # 30 * 201 characters, past PATH_MAX (4096): made relative to each folder, as the kernel allows
        for _ in range(30):
            os.mkdir("x" * 200, dir_fd=fd)
            fd, old = os.open("x" * 200, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        with open(os.open("bottom.md", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("unreachable by path")
    finally:
        os.close(fd)
    found = discover([root], INCLUDE)
    assert [f.name for f in found.files] == ["ok.md"]
    assert len(found.failed) == 1 and "longer than the system allows" in found.failed[0].reason
    shutil.rmtree(root)  # 30 levels: fine for rmtree, which works relative to each folder


def test_one_symlink_policy_for_files_and_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the ingested folder")
    (outside / "more.md").write_text("more outside text")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inside.md").write_text("inside")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "secret.txt").symlink_to(outside / "secret.txt")
    (root / "outside_dir").symlink_to(outside)
    (root / "alias.md").symlink_to(root / "sub" / "inside.md")
    (root / "sub_alias").symlink_to(root / "sub")
    (root / "up").symlink_to(tmp_path)  # outside, and contains root itself: a loop when followed
    (root / "dangling.md").symlink_to(root / "nowhere.md")
    (root / "self").symlink_to(root / "self")  # a link to itself
    os.mkfifo(root / "pipe.txt")  # opening it would block the batch forever

    found = discover([root], INCLUDE)
    assert [str(f.relative_to(root)) for f in found.files] == ["sub/inside.md"]
    skipped, failed = _reasons(found.skipped), _reasons(found.failed)
    for name in ("passwd.txt", "secret.txt", "outside_dir", "up"):
        assert "outside the folder being ingested: not followed" in skipped[name], name
        assert "RAG_INGEST__FOLLOW_SYMLINKS_OUTSIDE" in skipped[name]
    for name in ("alias.md", "sub_alias"):
        assert "inside the folder being ingested: read there, not twice" in skipped[name], name
    assert "named pipe" in skipped["pipe.txt"]
    assert "broken symlink" in failed["dangling.md"]
    assert "symlink loop" in failed["self"]
    everything = [f.path for f in (*found.skipped, *found.failed)] + [str(f) for f in found.files]
    assert len(everything) == len(set(everything)) == 10  # every entry once


def test_following_links_outside_is_a_setting_and_still_stops_at_loops(tmp_path: Path, fake_embedder: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.md").write_text("# Far\n\nA note that lives elsewhere.")
    (outside / "back").symlink_to(tmp_path / "docs")  # leads back into the ingested folder
    root = tmp_path / "docs"
    root.mkdir()
    (root / "near.md").write_text("# Near\n\nA note in the folder.")
    (root / "elsewhere").symlink_to(outside)
    (root / "far_again.md").symlink_to(outside / "far.md")
    (root / "up").symlink_to(tmp_path)  # an ancestor: the walk must not go round forever
    found = discover([root], INCLUDE, follow_symlinks_outside=True)
    names = sorted(str(f.relative_to(root)) for f in found.files)
    assert names == ["far_again.md", "near.md"]  # far.md once, under the first path that reached it
    skipped = {str(Path(f.path).relative_to(root)): f.reason for f in found.skipped}
    assert "the same file as" in skipped["elsewhere/far.md"]
    assert "inside the folder being ingested" in skipped["elsewhere/back"]
    assert "already read through another path" in skipped["up/docs"]  # the ancestor does not bring it back
    assert "already read through another path" in skipped["up/outside"]
    # the setting reaches discovery through ingestion
    settings = Settings(ingest={"follow_symlinks_outside": True})
    summary = ingest_paths([root], settings, embedder=fake_embedder)
    assert summary.new == len(found.files)


def test_pruning_drops_a_link_that_is_no_longer_followed(tmp_path: Path, fake_embedder: Any) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.md").write_text("# Far\n\nA note that lives elsewhere.")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "near.md").write_text("# Near\n\nA note in the folder.")
    (root / "far.md").symlink_to(outside / "far.md")
    following = Settings(ingest={"follow_symlinks_outside": True})
    assert ingest_paths([root], following, embedder=fake_embedder).new == 2
    summary = ingest_paths([root], Settings(), embedder=fake_embedder, prune=True)
    assert summary.pruned_files == 1
    with Wiring(Settings(), embedder=fake_embedder).collection() as c:
        assert [Path(s).name for s, _ in c.documents()] == ["near.md"]


def test_names_that_are_not_utf8_are_reported_not_fatal(tmp_path: Path, fake_embedder: Any) -> None:
    """Before: a file named b'caf\\xe9.txt' crashed the whole batch with UnicodeEncodeError (SQLite)."""
    root = tmp_path / "docs"
    root.mkdir()
    bad = os.fsdecode(b"caf\xe9.txt")
    (root / bad).write_text("a file whose name is Latin-1")
    (root / os.fsdecode(b"dossier-\xe9t\xe9")).mkdir()
    (root / "good.md").write_text("# Good\n\nA well-named file.")
    summary = ingest_paths([root], Settings(), embedder=fake_embedder)
    assert summary.new == 1
    reasons = {f.path: f.reason for f in summary.failed}
    assert reasons[shown(root / bad)].startswith("the file name is not valid UTF-8")
    assert any("folder name is not valid UTF-8" in r for r in reasons.values())
    summary.to_dict()  # printable as JSON
    import json

    json.dumps(summary.to_dict(), ensure_ascii=False).encode("utf-8")


def test_an_unreadable_ragignore_keeps_its_folder_out(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "private").mkdir(parents=True)
    (root / "private" / "diary.md").write_text("do not index me")
    (root / "private" / ".ragignore").mkdir()  # a folder: read as no rules
    (root / "ok.md").write_text("fine")
    assert len(discover([root], INCLUDE).files) == 2
    shutil.rmtree(root / "private" / ".ragignore")
    (root / "private" / ".ragignore").write_bytes(b"diary.md\n")
    assert [f.name for f in discover([root], INCLUDE).files] == ["ok.md"]


_AS_NOBODY = """
import json, sys
from ingest.discover import discover
found = discover([sys.argv[1]], ["*.md", "*.txt"])
print(json.dumps({"files": [str(f) for f in found.files], "failed": [[f.path, f.reason] for f in found.failed]}))
"""


def test_an_unreadable_folder_is_reported_and_the_rest_ingested(tmp_path: Path) -> None:
    """Before: silently missing from both failed and skipped. Run as an unprivileged user (root reads anything)."""
    root = tmp_path / "docs"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "hidden.md").write_text("cannot be listed")
    (root / "open.md").write_text("readable")
    (root / "locked").chmod(0o000)
    cmd = [sys.executable, "-c", _AS_NOBODY, str(root)]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
        for p in [tmp_path, *tmp_path.parents]:  # nobody must reach the folder to be told it cannot read it
            p.chmod(p.stat().st_mode | 0o005)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd="/")
    finally:
        (root / "locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout)
    assert [Path(f).name for f in result["files"]] == ["open.md"]
    assert result["failed"] == [[str(root / "locked"), "cannot read folder: Permission denied"]]
