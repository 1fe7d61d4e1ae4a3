"""lookalike-compact and VCOMPACT end to end: offline on a data folder, online while queries
run, killed part way (the collection is as before or as after), and refusals that cron sees."""
import signal
import subprocess
import threading
import time

from conftest import BIN, Server
from test_ingest import ingest, vectors, write_jsonl, write_npy

COMPACT = BIN / "lookalike-compact"


def compact(*args, check=True):
    out = subprocess.run([str(COMPACT), *map(str, args)], capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"lookalike-compact failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    return out


def loaded(tmp_path, n=6000, d=16, segment=1000):
    rows = vectors(n, d, seed=4)
    write_npy(tmp_path / "v.npy", rows)
    write_jsonl(tmp_path / "m.jsonl", [{"id": f"k{i}", "category": f"c{i % 4}"} for i in range(n)])
    data = tmp_path / "data"
    ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / "m.jsonl", "--data", data,
           "--metric", "l2", "--segment-items", segment)
    return data, rows


def delete_some(server, n, step=3):
    r = server.client()
    for i in range(0, n, step):
        assert r.execute_command("VREM", "c", f"k{i}") == 1
    return {f"k{i}" for i in range(0, n, step)}


def test_offline_compaction_and_refusals(tmp_path):
    data, rows = loaded(tmp_path)
    s = Server(data).start()
    gone = delete_some(s, 6000)
    # The server holds the folder: offline compaction is refused with the reason.
    busy = compact("--collection", "c", "--data", data, check=False)
    assert busy.returncode == 1 and "in use by another Lookalike process" in busy.stderr
    s.stop()
    out = compact("--collection", "c", "--data", data)
    assert f"{6000 - len(gone)} items kept, {len(gone)} dropped, segments 6 -> 1" in out.stdout, out.stdout
    missing = compact("--collection", "nope", "--data", data, check=False)
    assert missing.returncode == 1 and "no collection 'nope'" in missing.stderr
    s = Server(data).start()
    try:
        r = s.client()
        assert r.execute_command("VCARD", "c") == 6000 - len(gone)
        assert r.execute_command("VINFO", "c")[r.execute_command("VINFO", "c").index("sealed-segments") + 1] == 1
        hits = r.execute_command("VSIM", "c", "VALUES", 16, *rows[1], "COUNT", 50)
        assert hits[0] == "k1" and not gone & set(hits)
    finally:
        s.stop()


def test_online_compaction_while_queries_run(tmp_path):
    data, rows = loaded(tmp_path)
    s = Server(data).start()
    try:
        gone = delete_some(s, 6000)
        errors, stop = [], threading.Event()

        def query():
            r = s.client()
            while not stop.is_set():
                for i in (1, 2, 4, 5):
                    hits = r.execute_command("VSIM", "c", "VALUES", 16, *rows[i], "COUNT", 10)
                    if hits[0] != f"k{i}" or gone & set(hits) or len(hits) != 10:
                        errors.append(hits)

        threads = [threading.Thread(target=query) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        out = compact("--collection", "c", "--server", f"127.0.0.1:{s.port}")
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert "segments 6 -> 1" in out.stdout, out.stdout
        r = s.client()
        reply = r.execute_command("VCOMPACT", "c", "RETRAIN")
        assert reply[reply.index("segments-after") + 1] == 1
        assert r.execute_command("VCARD", "c") == 6000 - len(gone)
    finally:
        s.stop()


def test_compaction_killed_part_way_leaves_a_working_collection(tmp_path):
    data, rows = loaded(tmp_path, n=60000, d=32, segment=10000)
    s = Server(data).start()
    r = s.client()
    for i in range(0, 60000, 50):
        r.execute_command("VREM", "c", f"k{i}")
    s.stop()
    p = subprocess.Popen([str(COMPACT), "--collection", "c", "--data", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = Server(data).start()
    try:
        r = s.client()
        assert r.execute_command("VCARD", "c") == 60000 - 1200
        assert r.execute_command("VSIM", "c", "VALUES", 32, *rows[7], "COUNT", 1) == ["k7"]
        assert r.execute_command("VISMEMBER", "c", "k50") == 0
    finally:
        s.stop()
    compact("--collection", "c", "--data", data)  # and it can run again to the end
