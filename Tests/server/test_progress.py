"""Progress of long jobs: VCOMPACT key STATUS while a compaction runs (stage, items done out of
total, elapsed, ETA) and after it (the last run's report), lookalike-compact's progress lines,
and VNEWNEIGHBORS key STATUS's elapsed-seconds and eta-seconds."""
import threading
import time

import pytest
import redis

from conftest import Server, as_dict
from test_compact import compact, loaded

STAGES = {"waiting", "reading", "training", "building", "writing", "publishing"}
N = 30000


def status(r, *command):
    return as_dict(r.execute_command(*command, "STATUS"))


def number(v):
    return None if v is None else float(v)


def delete_every(r, step, start=0):
    """Deletes every step-th item from `start`; returns how many."""
    pipe = r.pipeline(transaction=False)
    for i in range(start, N, step):
        pipe.execute_command("VREM", "c", f"k{i}")
    assert all(x == 1 for x in pipe.execute())
    return len(range(start, N, step))


def watch(r, command, done, seen):
    """Polls a STATUS until `done` is set, keeping the replies that say the job runs."""
    while not done.is_set():
        st = status(r, *command)
        if st["running"] == 1:
            seen.append(st)
        time.sleep(0.005)


def run_watched(s, command, *job):
    """Runs `job` on one connection while another polls `command` STATUS; returns the job's
    reply and the STATUS replies seen while it ran."""
    done, seen = threading.Event(), []
    poller = threading.Thread(target=watch, args=(s.client(), command, done, seen))
    poller.start()
    try:
        return as_dict(s.client().execute_command(*job)), seen
    finally:
        done.set()
        poller.join()


def test_vcompact_status_while_it_runs_and_after(tmp_path):
    data, _ = loaded(tmp_path, n=N, d=32, segment=10000)
    s = Server(data).start()
    try:
        r = s.client()
        idle = status(r, "VCOMPACT", "c")
        assert idle["running"] == 0 and idle["stage"] is None and idle["last-run"] is None
        assert idle["elapsed-seconds"] is None and idle["eta-seconds"] is None
        gone = delete_every(r, 50)
        reply, seen = run_watched(s, ["VCOMPACT", "c"], "VCOMPACT", "c")
        assert seen, "the compaction ended before STATUS saw it run; make it larger"
        assert {x["stage"] for x in seen} <= STAGES and "building" in {x["stage"] for x in seen}
        for x in seen:
            assert 0 <= x["items-done"] <= x["items-total"] <= N - gone
            assert number(x["elapsed-seconds"]) >= 0
            assert x["eta-seconds"] is None or number(x["eta-seconds"]) >= 0
        elapsed = [number(x["elapsed-seconds"]) for x in seen]
        assert elapsed == sorted(elapsed), "elapsed only grows"
        counted = [x for x in seen if x["stage"] == "building" and 0 < x["items-done"] < x["items-total"]]
        assert counted and all(number(x["eta-seconds"]) > 0 for x in counted), "an estimate once items are counted"
        assert all(x["eta-seconds"] is None for x in seen if x["stage"] in ("waiting", "writing", "publishing"))
        after = status(r, "VCOMPACT", "c")
        assert after["running"] == 0 and after["stage"] is None
        assert after["elapsed-seconds"] is None and after["eta-seconds"] is None
        assert after["items-done"] == after["items-total"] == N - gone and float(after["progress"]) == 1.0
        assert as_dict(after["last-run"]) == reply and reply["items-kept"] == N - gone
        # STATUS is a form of its own: options still parse as before, and a typo says what there is.
        with pytest.raises(redis.ResponseError, match=r"VCOMPACT key STATUS"):
            r.execute_command("VCOMPACT", "c", "STATUS", "RETRAIN")
        with pytest.raises(redis.ResponseError, match="no such key"):
            r.execute_command("VCOMPACT", "nope", "STATUS")
    finally:
        s.stop()


def test_lookalike_compact_prints_progress_with_eta(tmp_path):
    data, _ = loaded(tmp_path, n=N, d=32, segment=10000)
    s = Server(data).start()
    try:
        gone = delete_every(s.client(), 50)
        online = compact("--collection", "c", "--server", f"127.0.0.1:{s.port}")
    finally:
        s.stop()
    lines = [l for l in online.stderr.splitlines() if l.startswith("progress ")]
    assert any("ETA" in l and "items/s" in l for l in lines), online.stderr
    assert lines[-1].startswith(f"progress 100.0% {N - gone}/{N - gone} "), online.stderr
    assert "segments 3 -> 1" in online.stdout and online.stdout.count("\n") == 1, "the summary alone on stdout"
    # Offline the counts come from the engine itself; the last line is the finished total.
    s = Server(data).start()
    try:
        more = delete_every(s.client(), 50, start=25)
    finally:
        s.stop()
    offline = compact("--collection", "c", "--data", data, "--retrain")
    lines = [l for l in offline.stderr.splitlines() if l.startswith("progress ")]
    kept = N - gone - more
    assert lines and lines[-1].startswith(f"progress 100.0% {kept}/{kept} ") and "ETA" in lines[-1], offline.stderr


def test_vnewneighbors_status_has_elapsed_and_eta(tmp_path):
    data, _ = loaded(tmp_path, n=N, d=32, segment=10000)
    s = Server(data).start()
    try:
        r = s.client()
        idle = status(r, "VNEWNEIGHBORS", "c")
        assert "elapsed-seconds" in idle and "eta-seconds" in idle
        assert idle["elapsed-seconds"] is None and idle["eta-seconds"] is None
        report, seen = run_watched(s, ["VNEWNEIGHBORS", "c"], "VNEWNEIGHBORS", "c", "SINCE", "ID", 0, "COUNT", 10, "INCLUDE-NEW")
        assert report["new-items"] == N
        assert seen, "the job ended before STATUS saw it run; make it larger"
        assert all(number(x["elapsed-seconds"]) >= 0 for x in seen)
        scoring = [x for x in seen if 0 < x["rows-scored"] < x["rows-total"]]
        assert scoring and all(number(x["eta-seconds"]) > 0 for x in scoring)
        after = status(r, "VNEWNEIGHBORS", "c")
        assert after["running"] == 0 and after["elapsed-seconds"] is None and after["eta-seconds"] is None
    finally:
        s.stop()
