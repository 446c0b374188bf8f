"""``rag ingest --watch``: a real watcher (watchfiles, inotify) on a real folder picks up an add, a change and a delete,
and skips what discovery skips; the CLI runs it as a user would and stops on Ctrl-C with a consistent index."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ingest.watch import WatchBatch, watch_paths
from rag.config import Settings
from rag.wiring import Wiring

REPO = Path(__file__).resolve().parents[2]


class Watcher:
    """``watch_paths`` in a thread; batches and log lines arrive on queues."""

    def __init__(self, folder: Path, settings: Settings, embedder: Any, groups: tuple[str, ...] = ()) -> None:
        self.batches: queue.Queue[WatchBatch] = queue.Queue()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        wiring = Wiring(settings, embedder=embedder)

        def run() -> None:
            try:
                watch_paths([folder], wiring, log=self.lines.append, stop=self.stop, debounce_ms=300,
                            on_batch=self.batches.put, on_ready=lambda _s: self.ready.set(), groups=groups)
            except BaseException as e:  # surfaced by the test
                self.error = e
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(120) and self.error is None, self.error
        time.sleep(0.5)  # the watch is armed right after the first ingest

    def next_batch(self, timeout: float = 60) -> WatchBatch:
        return self.batches.get(timeout=timeout)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def documents(settings: Settings, embedder: Any) -> dict[str, int]:
    with Wiring(settings, embedder=embedder).collection() as c:
        return dict(c.documents())


def test_watch_picks_up_an_add_a_change_and_a_delete(tmp_path: Path, fake_embedder: Any) -> None:
    folder = tmp_path / "notes"
    (folder / "deep").mkdir(parents=True)
    (folder / "rivers.md").write_text("# Rivers\n\nThe Danube flows into the Black Sea.\n")
    (folder / "deep" / "lakes.txt").write_text("Lake Baikal is the deepest lake on Earth.")
    (folder / ".ragignore").write_text("drafts/\n")
    settings = Settings()
    w = Watcher(folder, settings, fake_embedder)
    try:
        assert "watching" in w.lines[0] and "2 files, 2 new" in w.lines[0]

        (folder / "deep" / "comets.txt").write_text("Halley's comet returns every 76 years.")
        b = w.next_batch()
        assert b.added == (str(folder / "deep" / "comets.txt"),) and b.chunks_added >= 1
        assert any(line.split(" ", 2)[2].startswith("added   ") and "comets.txt" in line for line in w.lines)

        (folder / "rivers.md").write_text("# Rivers\n\nThe Rhine flows into the North Sea.\n")
        b = w.next_batch()
        assert b.changed == (str(folder / "rivers.md"),) and b.chunks_removed >= 1
        assert any("changed " in line and "rivers.md" in line for line in w.lines)

        (folder / "deep" / "lakes.txt").unlink()
        b = w.next_batch()
        assert b.deleted == (str(folder / "deep" / "lakes.txt"),)
        assert any("deleted " in line and "lakes.txt" in line and "removed" in line for line in w.lines)

        (folder / "drafts").mkdir()  # ignored by .ragignore, hidden, unsupported: no batch at all
        (folder / "drafts" / "d.md").write_text("a draft")
        (folder / ".hidden.md").write_text("hidden")
        (folder / "slides.pptx").write_bytes(b"PK")
        (folder / "moons.md").write_text("# Moons\n\nEuropa has an ocean under its ice.")  # this one counts
        b = w.next_batch()
        assert b.added == (str(folder / "moons.md"),)
    finally:
        w.close()
    docs = documents(settings, fake_embedder)
    assert sorted(Path(s).name for s in docs) == ["comets.txt", "moons.md", "rivers.md"]
    with Wiring(settings, embedder=fake_embedder).collection() as c:
        assert c.check().clean
        assert any("Rhine" in ch.text for ch in c.store.chunks()) and not any("Danube" in ch.text
                                                                               for ch in c.store.chunks())


def groups_by_file(settings: Settings, embedder: Any) -> dict[str, set[tuple[str, ...]]]:
    with Wiring(settings, embedder=embedder).collection() as c:
        out: dict[str, set[tuple[str, ...]]] = {}
        for ch in c.store.chunks():
            out.setdefault(Path(ch.source).name, set()).add(ch.groups)
        return out


def test_watched_files_carry_their_access_groups_and_a_raggroups_change_relabels_them(
    tmp_path: Path, fake_embedder: Any
) -> None:
    """A file added two folders below a ``.raggroups`` gets its groups (not ``--groups``), as a full ingest would
    give it; editing the ``.raggroups`` re-indexes the files it covers with the new groups."""
    folder = tmp_path / "docs"
    (folder / "hr" / "deep").mkdir(parents=True)
    (folder / "hr" / ".raggroups").write_text("hr\n")
    (folder / "canteen.md").write_text("# Canteen\n\nThe canteen opens at noon.")
    settings = Settings()
    w = Watcher(folder, settings, fake_embedder, groups=("staff",))
    try:
        (folder / "hr" / "deep" / "pay.md").write_text("# Pay\n\nSalaries rise in April.")
        assert w.next_batch().added == (str(folder / "hr" / "deep" / "pay.md"),)
        assert groups_by_file(settings, fake_embedder) == {"canteen.md": {("staff",)}, "pay.md": {("hr",)}}
        (folder / "hr" / ".raggroups").write_text("hr\nfinance\n")
        w.next_batch()
        assert groups_by_file(settings, fake_embedder) == {"canteen.md": {("staff",)}, "pay.md": {("finance", "hr")}}
        assert any("rules changed" in line and ".raggroups" in line for line in w.lines)
    finally:
        w.close()
    with Wiring(settings, embedder=fake_embedder).collection() as c:
        assert c.check().clean


def test_a_deleted_folder_removes_its_files(tmp_path: Path, fake_embedder: Any) -> None:
    folder = tmp_path / "notes"
    (folder / "old").mkdir(parents=True)
    for i in range(3):
        (folder / "old" / f"n{i}.txt").write_text(f"Old note number {i} about lighthouses.")
    (folder / "keep.txt").write_text("A note to keep.")
    settings = Settings()
    w = Watcher(folder, settings, fake_embedder)
    try:
        for f in (folder / "old").iterdir():
            f.unlink()
        (folder / "old").rmdir()
        deleted: set[str] = set()
        while len(deleted) < 3:
            deleted |= set(w.next_batch().deleted)
    finally:
        w.close()
    assert list(documents(settings, fake_embedder)) == [str(folder / "keep.txt")]


def test_cli_watch_logs_changes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """The real command with the packaged model: a change while it watches, then SIGINT: exit 130, clean index."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nThe first note.")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from rag.cli import main; main()", "ingest", str(folder),
                             "--watch", "--collection", "w"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def wait_for(text: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}")

    try:
        assert "1 new" in wait_for("watching")
        time.sleep(1)
        (folder / "b.txt").write_text("The second note, written while the watcher runs.")
        assert "b.txt" in wait_for("added")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130
    with Wiring(Settings(collection="w")).collection() as c:
        report = c.check()
        assert report.clean and report.files == 2
