"""Backups: SAVE TO / BGSAVE TO write a consistent snapshot while the server keeps writing;
a second server started with --data on it holds every write acknowledged before it began;
a server killed during a snapshot leaves only a .partial folder, and the last complete
snapshot still restores."""
import math
import random
import threading
import time
from pathlib import Path

from conftest import Server

DIM = 16


def vector(i, version=0):
    rnd = random.Random(i * 1000 + version)
    v = [rnd.uniform(-1, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def vadd(c, key, i, version=0):
    c.execute_command("VADD", "items", "VALUES", DIM, *vector(i, version), key,
                      "SETATTR", '{"i": %d, "v": %d}' % (i, version))


class Writer(threading.Thread):
    """Writes new items and rewrites old ones until stopped; `acked` holds, in order, every
    (key, i, version) acknowledged, with the time it was acknowledged."""

    def __init__(self, server, start_at):
        super().__init__(daemon=True)
        self.c = server.client()
        self.next = start_at
        self.acked = []
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                i = self.next
                self.next += 1
                vadd(self.c, f"k{i}", i)
                self.acked.append((f"k{i}", i, 0))
                if i % 7 == 0:  # an update of an older item: a new vector and attributes
                    old = i // 2
                    vadd(self.c, f"k{old}", old, i)
                    self.acked.append((f"k{old}", old, i))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def load(c, n):
    p = c.pipeline(transaction=False)
    for i in range(n):
        vadd(p, f"k{i}", i)
    p.execute()


def wait_snapshot_done(c, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = c.info("persistence")
        if info["lookalike_snapshot_in_progress"] == 0:
            return info
        time.sleep(0.05)
    raise AssertionError("the snapshot did not finish")


def expected_state(acked):
    state = {}
    for key, i, version in acked:
        state[key] = (i, version)
    return state


def check_holds(c, state, rewritten_later):
    """Every item of `state` is in the restored server with its vector and attributes (or, for
    keys rewritten after the snapshot began, with one of the versions written)."""
    for key, (i, version) in state.items():
        attrs = c.execute_command("VGETATTR", "items", key)
        assert attrs is not None, f"{key} acknowledged before the snapshot is missing"
        got = __import__("json").loads(attrs)
        assert got["i"] == i
        if key not in rewritten_later:
            assert got["v"] == version, f"{key}: version {got['v']}, expected {version}"
        emb = [float(x) for x in c.execute_command("VEMB", "items", key)]
        want = vector(i, got["v"])
        assert max(abs(a - b) for a, b in zip(emb, want)) < 1e-4, key


def test_snapshot_while_writing_restores_every_acknowledged_item(tmp_path):
    primary = Server(tmp_path / "data", "--seal-threshold", "300", "--merge-factor", "2",
                     "--snapshot-rate-mb", "2").start()
    try:
        c = primary.client()
        load(c, 6000)
        writer = Writer(primary, 6000)
        writer.start()
        time.sleep(0.3)
        before = list(writer.acked)  # acknowledged before BGSAVE was sent
        snap = tmp_path / "backup"
        assert c.execute_command("BGSAVE", "TO", str(snap)) in (True, "Background saving started")
        seen_progress = False
        while True:
            info = c.info("persistence")
            if info["lookalike_snapshot_in_progress"] == 0:
                break
            seen_progress |= info["lookalike_snapshot_bytes_written"] > 0
            time.sleep(0.02)
        writer.stopping.set()
        writer.join()
        assert writer.error is None, writer.error
        info = c.info("persistence")
        assert info["lookalike_last_snapshot_status"] == "ok", info
        assert seen_progress, "INFO never showed the snapshot's bytes while it ran"
        assert len(writer.acked) > len(before), "the writer wrote nothing during the snapshot"
        assert snap.is_dir() and not Path(str(snap) + ".partial").exists()
        assert list(snap.glob("segments/c*/seg-*.faiss")), "no sealed segment files copied"

        initial = [(f"k{i}", i, 0) for i in range(6000)]
        state = expected_state(initial + before)
        rewritten_later = {k for k, _, v in writer.acked[len(before):] if v}
        restored = Server(snap).start()
        try:
            r = restored.client()
            check_holds(r, state, rewritten_later)
            # Nothing that was never written, and nothing beyond what was acknowledged by the end.
            n = r.execute_command("VCARD", "items")
            assert len(state) <= n <= len(expected_state(initial + writer.acked))
        finally:
            restored.stop()
        # The live server kept every write.
        assert c.execute_command("VCARD", "items") == len(expected_state(initial + writer.acked))
    finally:
        primary.stop()


def test_kill_during_snapshot_leaves_the_last_complete_one(tmp_path):
    primary = Server(tmp_path / "data", "--seal-threshold", "500", "--snapshot-rate-mb", "1").start()
    c = primary.client()
    load(c, 3000)
    good = tmp_path / "good"
    assert c.execute_command("SAVE", "TO", str(good)) in ("OK", True)
    load_more = [(f"k{i}", i, 0) for i in range(3000, 9000)]
    p = c.pipeline(transaction=False)
    for key, i, _ in load_more:
        vadd(p, key, i)
    p.execute()
    bad = tmp_path / "bad"
    c.execute_command("BGSAVE", "TO", str(bad))
    deadline = time.time() + 60
    while c.info("persistence")["lookalike_snapshot_bytes_written"] == 0:
        assert time.time() < deadline
        time.sleep(0.01)
    primary.kill9()
    assert not bad.exists(), "a snapshot cut short must not look complete"
    assert Path(str(bad) + ".partial").is_dir()

    restored = Server(good).start()
    try:
        r = restored.client()
        assert r.execute_command("VCARD", "items") == 3000
        check_holds(r, expected_state([(f"k{i}", i, 0) for i in range(3000)]), set())
    finally:
        restored.stop()
    # The killed server's own folder is intact, and a new snapshot to the same path works.
    primary.start()
    try:
        c = primary.client()
        assert c.execute_command("VCARD", "items") == 9000
        assert c.execute_command("SAVE", "TO", str(bad)) in ("OK", True)
        assert bad.is_dir() and not Path(str(bad) + ".partial").exists()
    finally:
        primary.stop()


def test_snapshot_refuses_bad_targets(tmp_path):
    s = Server(tmp_path / "data").start()
    try:
        c = s.client()
        load(c, 10)
        existing = tmp_path / "exists"
        existing.mkdir()
        try:
            c.execute_command("SAVE", "TO", str(existing))
            raise AssertionError("SAVE TO an existing folder must fail")
        except Exception as e:  # noqa: BLE001
            assert "exists" in str(e)
        assert list(existing.iterdir()) == []
        try:
            c.execute_command("BGSAVE", "TO")
            raise AssertionError("BGSAVE TO without a folder must fail")
        except Exception as e:  # noqa: BLE001
            assert "syntax" in str(e)
    finally:
        s.stop()
