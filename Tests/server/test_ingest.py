"""lookalike-ingest end to end: every input format round-trips into a collection (offline into a
data folder, online through the server), bad records are reported by number and skipped,
interrupted loads resume without duplicates, and a running server's folder is refused."""
import json
import math
import random
import signal
import struct
import subprocess
import time

import pytest

from conftest import BIN, Server

INGEST = BIN / "lookalike-ingest"


def vectors(n, d, seed=1):
    rng = random.Random(seed)
    return [[rng.gauss(0, 1) for _ in range(d)] for _ in range(n)]


def write_npy(path, rows, dtype="<f4"):
    d = len(rows[0])
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (dtype, len(rows), d)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    body = b"".join(struct.pack("<%d%s" % (d, "f" if dtype == "<f4" else "e"), *r) for r in rows)
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body)


def write_fvecs(path, rows):
    d = len(rows[0])
    path.write_bytes(b"".join(struct.pack("<i", d) + struct.pack("<%df" % d, *r) for r in rows))


def write_raw(path, rows):
    path.write_bytes(b"".join(struct.pack("<%df" % len(r), *r) for r in rows))


def write_amazon(path, asins, rows):
    path.write_bytes(b"".join(a.encode().ljust(10) + struct.pack("<%df" % len(r), *r) for a, r in zip(asins, rows)))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def ingest(*args, check=True):
    out = subprocess.run([str(INGEST), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"lookalike-ingest failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    return out


def nearest(r, name, vector):
    return r.execute_command("VSIM", name, "VALUES", len(vector), *vector, "COUNT", 1)[0]


@pytest.mark.parametrize("fmt", ["npy", "npy16", "fvecs", "raw"])
def test_each_vector_format_round_trips_offline(tmp_path, fmt):
    rows = vectors(300, 16)
    path = tmp_path / {"npy": "v.npy", "npy16": "v.npy", "fvecs": "v.fvecs", "raw": "v.f32"}[fmt]
    {"npy": lambda: write_npy(path, rows), "npy16": lambda: write_npy(path, rows, "<f2"),
     "fvecs": lambda: write_fvecs(path, rows), "raw": lambda: write_raw(path, rows)}[fmt]()
    meta = tmp_path / "meta.jsonl"
    write_jsonl(meta, [{"id": f"item{i}", "category": f"c{i % 3}", "title": f"thing {i}"} for i in range(300)])
    data = tmp_path / "data"
    extra = ["--dim", 16] if fmt == "raw" else []
    out = ingest("--collection", "things", "--vectors", path, "--meta", meta, "--data", data, "--metric", "l2", *extra)
    assert "300 added" in out.stdout and "0 skipped" in out.stdout
    s = Server(data).start()
    try:
        r = s.client()
        assert r.execute_command("VCARD", "things") == 300
        assert json.loads(r.execute_command("VGETATTR", "things", "item7")) == {"category": "c1", "title": "thing 7"}
        stored = [float(x) for x in r.execute_command("VEMB", "things", "item42")]
        tolerance = 1e-2 if fmt == "npy16" else 1e-6
        assert all(abs(a - b) <= tolerance * max(1, abs(b)) for a, b in zip(stored, rows[42]))
        assert nearest(r, "things", rows[42]) == "item42"
        hits = r.execute_command("VSIM", "things", "VALUES", 16, *rows[0], "CATEGORY", "c2", "COUNT", 5)
        assert len(hits) == 5 and all(int(h[4:]) % 3 == 2 for h in hits)
    finally:
        s.stop()


def test_amazon_formats_round_trip(tmp_path):
    asins = [f"B00{i:07d}" for i in range(50)]
    rows = vectors(50, 4096, seed=3)
    write_amazon(tmp_path / "image_features.b", asins, rows)
    # Amazon metadata: Python literals, single quotes, nested lists, escapes; rows out of order.
    lines = []
    for i in reversed(range(50)):
        # repr() quotes with " when the text holds a ', and escapes the rest.
        title = '"Girl\'s \\"Ballet\\" Tutu \\u00e9"' if i == 5 else f"'thing {i}'"
        lines.append("{'asin': '%s', 'title': %s, 'price': %s, 'categories': [['Toys & Games', 'Dance'], ['Sports']], "
                     "'salesRank': {'Toys & Games': %d}, 'related': {'also_bought': ['X1', 'X2']}, 'gift': True, 'note': None}"
                     % (asins[i], title, 3.17 + i, 1000 + i))
    (tmp_path / "meta.txt").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    out = ingest("--collection", "products", "--vectors", tmp_path / "image_features.b", "--format", "amazon",
                 "--meta", tmp_path / "meta.txt", "--meta-format", "amazon", "--key-field", "asin", "--join", "key",
                 "--data", data, "--index", "Flat", "--fields", "title,price,category,salesRank,gift,note")
    assert "50 added" in out.stdout, out.stdout + out.stderr
    s = Server(data).start()
    try:
        r = s.client()
        attrs = json.loads(r.execute_command("VGETATTR", "products", asins[5]))
        assert attrs == {"title": "Girl's \"Ballet\" Tutu é", "price": 8.17, "category": "Toys & Games",
                         "salesRank": {"Toys & Games": 1005}, "gift": True, "note": None}
        assert nearest(r, "products", rows[9]) == asins[9]
        assert len(r.execute_command("VSIM", "products", "ELE", asins[0], "CATEGORY", "Toys & Games", "COUNT", 50)) == 50
    finally:
        s.stop()


def test_bad_records_are_reported_and_skipped(tmp_path):
    rows = vectors(10, 8)
    rows[3][2] = float("nan")
    write_npy(tmp_path / "v.npy", rows)
    meta = [json.dumps({"id": f"k{i}"}) for i in range(10)]
    meta[5] = '{"id": "k5", broken'
    meta[7] = json.dumps({"name": "no key"})
    (tmp_path / "m.jsonl").write_text("\n".join(meta) + "\n")
    args = ["--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / "m.jsonl", "--data", tmp_path / "data"]
    out = ingest(*args)
    assert "7 added" in out.stdout and "3 skipped" in out.stdout
    assert "row 3: the vector holds NaN" in out.stderr
    assert "line 6: not valid JSON" in out.stderr
    assert "row 7: the metadata has no 'id' field" in out.stderr
    strict = ingest(*args, "--strict", check=False)
    assert strict.returncode == 1 and "stopped at the first bad record" in strict.stderr
    # Unusable files are refused before anything is written, with the reason.
    (tmp_path / "cut.npy").write_bytes((tmp_path / "v.npy").read_bytes()[:-7])
    cut = ingest("--collection", "c", "--vectors", tmp_path / "cut.npy", "--data", tmp_path / "data", check=False)
    assert cut.returncode != 0 and "cut short" in cut.stderr
    wrong = ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--data", tmp_path / "data", "--dim", 9, check=False)
    assert wrong.returncode != 0 and "not 9" in wrong.stderr


def test_a_load_run_again_or_killed_resumes_without_duplicates(tmp_path):
    n = 20000
    rows = vectors(n, 32, seed=9)
    write_npy(tmp_path / "v.npy", rows)
    write_jsonl(tmp_path / "m.jsonl", [{"id": f"k{i}", "category": f"c{i % 5}"} for i in range(n)])
    data = tmp_path / "data"
    args = ["--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / "m.jsonl", "--data", data,
            "--batch", 500, "--sync", "full"]
    # kill -9 part way (once some batches are in), then run the same command again.
    p = subprocess.Popen([str(INGEST), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = ingest(*args)
    added = int(again.stdout.split(" added")[0].split()[-1])
    unchanged = int(again.stdout.split(" unchanged")[0].split()[-1])
    assert added + unchanged == n and added < n, again.stdout
    third = ingest(*args)
    assert f"0 added, 0 updated, {n} unchanged" in third.stdout
    s = Server(data).start()
    try:
        r = s.client()
        assert r.execute_command("VCARD", "c") == n
        assert r.execute_command("VSIM", "c", "ELE", "k123", "COUNT", 1) == ["k123"]
        assert len(r.execute_command("VSIM", "c", "ELE", "k1", "CATEGORY", "c1", "COUNT", 4000)) == 4000
    finally:
        s.stop()


def test_online_ingest_and_the_folder_lock(tmp_path, server):
    rows = vectors(2000, 24, seed=5)
    write_fvecs(tmp_path / "v.fvecs", rows)
    write_jsonl(tmp_path / "m.jsonl", [{"id": f"o{i}", "author": f"a{i % 7}"} for i in range(2000)])
    args = ["--collection", "online", "--vectors", tmp_path / "v.fvecs", "--meta", tmp_path / "m.jsonl",
            "--server", f"127.0.0.1:{server.port}", "--metric", "l2", "--batch", 256]
    out = ingest(*args)
    assert "2000 added" in out.stdout
    r = server.client()
    assert r.execute_command("VCARD", "online") == 2000
    assert nearest(r, "online", rows[77]) == "o77"
    assert "2000 updated" in ingest(*args).stdout  # VADD answers 0 for an unchanged item too
    assert r.execute_command("VCARD", "online") == 2000
    # The running server holds its folder: an offline load there is refused, nothing changes.
    blocked = ingest("--collection", "x", "--vectors", tmp_path / "v.fvecs", "--data", server.data, check=False)
    assert blocked.returncode != 0 and "in use by another Lookalike process" in blocked.stderr
    assert r.execute_command("EXISTS", "x") == 0


# --- Every row accounted for, failures that fail, nothing written before the inputs are checked.

COMPACT = BIN / "lookalike-compact"


def summary(out):
    """The summary's counts: {"added": n, ..., "rows": n}; its parts add up to its rows."""
    line = next(l for l in out.stdout.splitlines() if l.startswith(("done:", "interrupted:")))
    counts = {word: int(number) for number, word in
              (part.split()[:2] for part in line.split(":", 1)[1].split(" in ")[0].split(","))}
    assert counts["added"] + counts["updated"] + counts["unchanged"] + counts["skipped"] == counts["rows"], line
    return counts


def stderr_line(out, text):
    return next((l for l in out.stderr.splitlines() if text in l), "")


def error_line(out):
    """The tool's own error (the engine's log lines may hold "Error" too)."""
    return next((l for l in out.stderr.splitlines() if l.startswith("Error: ")), "")


def test_metadata_shorter_or_longer_than_the_vectors_is_reported(tmp_path):
    write_npy(tmp_path / "v.npy", vectors(200, 8))
    write_jsonl(tmp_path / "short.jsonl", [{"id": f"k{i}"} for i in range(150)])
    write_jsonl(tmp_path / "long.jsonl", [{"id": f"k{i}"} for i in range(250)])

    def load(meta, data, *extra, check=True):
        return ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / meta,
                      "--data", tmp_path / data, *extra, check=check)

    # Shorter: the 50 rows without a record are skipped and counted, in one line with their rows.
    short = load("short.jsonl", "d1")
    assert summary(short) == {"added": 150, "updated": 0, "unchanged": 0, "skipped": 50, "rows": 200}, short.stdout
    warning = stderr_line(short, "warning:")
    assert "150 records" in warning and "200 vectors" in warning and "--join key" in warning, short.stderr
    assert "rows 150 to 199" in stderr_line(short, "skipped:"), short.stderr
    # Longer: the records no vector uses are reported.
    long = load("long.jsonl", "d2")
    assert summary(long) == {"added": 200, "updated": 0, "unchanged": 0, "skipped": 0, "rows": 200}, long.stdout
    assert "250 records" in stderr_line(long, "warning:") and "50 records" in stderr_line(long, "warning:"), long.stderr
    # --strict: refused before anything is written.
    for meta in ("short.jsonl", "long.jsonl"):
        strict = load(meta, "d3", "--strict", check=False)
        assert strict.returncode == 1 and "records" in strict.stderr and "--strict" in strict.stderr, strict.stderr
        assert not (tmp_path / "d3").exists()
    # A prefix (--limit) that the records cover is not a mismatch, even under --strict.
    prefix = load("short.jsonl", "d4", "--limit", 120, "--strict")
    assert summary(prefix)["added"] == 120 and "warning:" not in prefix.stderr, prefix.stderr


def test_duplicate_keys_are_warned_with_their_rows_and_counted(tmp_path):
    rows = vectors(20, 8, seed=2)
    write_npy(tmp_path / "v.npy", rows)
    ids = [f"k{i}" for i in range(20)]
    ids[12] = ids[15] = "k3"
    write_jsonl(tmp_path / "m.jsonl", [{"id": k, "n": i} for i, k in enumerate(ids)])
    data = tmp_path / "data"
    out = ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / "m.jsonl",
                 "--data", data, "--metric", "l2")
    assert summary(out)["rows"] == 20
    assert "2 with a duplicate key" in out.stdout, out.stdout
    assert "'k3'" in stderr_line(out, "rows 3 and 12") and "'k3'" in stderr_line(out, "rows 12 and 15"), out.stderr
    # By key: the same key on two metadata lines is named with both lines.
    asins = [f"B{i:09d}" for i in range(6)]
    write_amazon(tmp_path / "f.b", asins, vectors(6, 4096, seed=6))
    write_jsonl(tmp_path / "a.jsonl", [{"asin": a} for a in asins] + [{"asin": asins[2], "title": "again"}])
    with open(tmp_path / "a.jsonl", "a") as f:
        f.write("{broken\n")
    by_key = ingest("--collection", "p", "--vectors", tmp_path / "f.b", "--format", "amazon", "--meta", tmp_path / "a.jsonl",
                    "--key-field", "asin", "--join", "key", "--data", data, "--index", "Flat")
    assert "lines 3 and 7" in stderr_line(by_key, asins[2]) and "1 with a duplicate key" in by_key.stdout, by_key.stderr
    # A bad metadata line is no row: reported with its line, counted apart, and the rows still add up.
    assert summary(by_key) == {"added": 6, "updated": 0, "unchanged": 0, "skipped": 0, "rows": 6}, by_key.stdout
    assert "line 8: not valid JSON" in by_key.stderr and "1 metadata line skipped" in by_key.stdout, by_key.stdout
    s = Server(data).start()
    try:
        r = s.client()
        assert r.execute_command("VCARD", "c") == 18
        assert json.loads(r.execute_command("VGETATTR", "c", "k3")) == {"n": 15}  # the last row wins
        assert json.loads(r.execute_command("VGETATTR", "p", asins[2])) == {"title": "again"}
    finally:
        s.stop()


def test_every_bad_metadata_message_carries_its_line(tmp_path):
    write_npy(tmp_path / "v.npy", vectors(6, 8))
    lines = [json.dumps({"id": f"k{i}", "big": "x" * (70000 if i == 4 else 1)}) for i in range(6)]
    lines[2] = json.dumps({"name": "no key"})
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    out = ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--meta", tmp_path / "m.jsonl", "--data", tmp_path / "d")
    assert summary(out) == {"added": 4, "updated": 0, "unchanged": 0, "skipped": 2, "rows": 6}, out.stdout
    assert "line 3" in stderr_line(out, "no 'id' field"), out.stderr
    assert "line 5" in stderr_line(out, "bytes, over"), out.stderr


def test_a_failed_seal_fails_the_load_and_an_untrainable_index_stays_exact(tmp_path, server):
    rows = vectors(1200, 16, seed=8)
    write_npy(tmp_path / "v.npy", rows)
    data = tmp_path / "offline"  # "data" is the server fixture's
    # FAISS accepts "PCA32,Flat" for 16-d vectors when the collection is made, and fails its training.
    failed = ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--data", data, "--index", "PCA32,Flat",
                    "--metric", "l2", check=False)
    assert failed.returncode == 1 and "done:" not in failed.stdout, failed.stdout
    error = error_line(failed)
    assert "sealing failed" in error and "PCA matrix cannot output 32 dimensions" in error, failed.stderr
    assert "another --index" in error, error
    assert "sealing:" in failed.stderr and "syncing:" in failed.stderr, failed.stderr  # synced all the same
    s = Server(data).start()
    try:  # what was loaded is stored and searchable (exact)
        r = s.client()
        assert r.execute_command("VCARD", "c") == 1200
        assert nearest(r, "c", rows[5]) == "5"
    finally:
        s.stop()
    # Another collection's failed seal fails a load beside it too (SAVE would fail), and says whose it is.
    beside = ingest("--collection", "other", "--vectors", tmp_path / "v.npy", "--data", data, "--metric", "l2", check=False)
    assert beside.returncode == 1 and "'c', not 'other'" in error_line(beside), beside.stderr
    # Too few items to train IVF1024 (39 per list): the load succeeds and says it stays exact.
    few = ingest("--collection", "ivf", "--vectors", tmp_path / "v.npy", "--limit", 200, "--data", tmp_path / "ivf",
                 "--index", "IVF1024,SQ8", "--metric", "l2")
    assert summary(few)["added"] == 200
    assert "exact" in few.stdout and "39936" in few.stdout, few.stdout
    # Online, SAVE reports the failed seal: the tool fails with the server's message, printed once.
    online = ingest("--collection", "pca", "--vectors", tmp_path / "v.npy", "--server", f"127.0.0.1:{server.port}",
                    "--index", "PCA32,Flat", "--metric", "l2", check=False)
    assert online.returncode == 1 and "done:" not in online.stdout, online.stdout
    error = error_line(online)
    assert "SAVE failed" in error and "PCA matrix" in error and "ERR" not in error, online.stderr


def test_unusable_inputs_leave_no_data_folder(tmp_path):
    write_npy(tmp_path / "v.npy", vectors(10, 384))
    write_npy(tmp_path / "v16.npy", vectors(10, 16))
    (tmp_path / "empty.npy").write_bytes(b"")
    write_npy(tmp_path / "none.npy", [[0.0] * 16])
    (tmp_path / "none.npy").write_bytes((tmp_path / "none.npy").read_bytes()
                                        .replace(b"(1, 16)", b"(0, 16)")[:-64])
    (tmp_path / "def.json").write_text(json.dumps({"name": "x", "dimension": 128}))
    data = tmp_path / "data"
    cases = [
        (["--vectors", tmp_path / "v.npy", "--dim", 128], "not 128"),
        (["--vectors", tmp_path / "v16.npy", "--index", "Bogus"], "rejects the index spec"),
        (["--vectors", tmp_path / "v16.npy", "--meta", tmp_path / "missing.jsonl"], "cannot read"),
        (["--vectors", tmp_path / "none.npy"], "holds no vectors"),
        (["--vectors", tmp_path / "v16.npy", "--definition", tmp_path / "def.json"], "dimension 128"),
    ]
    for args, reason in cases:
        out = ingest("--collection", "c", "--data", data, *args, check=False)
        assert out.returncode == 1 and reason in error_line(out), (args, out.stderr)
        assert not data.exists(), args
    # A collection that exists with another dimension: refused, the folder as it was.
    ingest("--collection", "c", "--vectors", tmp_path / "v16.npy", "--data", data)
    other = ingest("--collection", "c", "--vectors", tmp_path / "v.npy", "--data", data, check=False)
    assert other.returncode == 1 and "16-d" in other.stderr and "another --collection" in other.stderr, other.stderr


def test_compact_prints_the_server_error_once(server):
    out = subprocess.run([str(COMPACT), "--collection", "nope", "--server", f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert out.stderr.strip() == f"Error: 127.0.0.1:{server.port} says: no such key 'nope'", out.stderr
