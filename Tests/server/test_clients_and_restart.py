"""redis-cli and redis-py 5 as real clients; durability across SIGKILL; graceful SIGTERM/SHUTDOWN."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import as_dict

ROOT = Path(__file__).resolve().parents[2]
PY_REDIS5 = ROOT / ".build" / "py-redis5" / "bin" / "python"


def test_redis_cli_first_session_from_readme(server):
    # The session README.md shows, as written there.
    assert server.cli("VADD", "stickers", "VALUES", "4", "0.1", "0.9", "0.2", "0.4", "cat-01",
                      "SETATTR", '{"author":"mika","category":"animals"}').strip() == "1"
    assert server.cli("VADD", "stickers", "VALUES", "4", "0.2", "0.8", "0.1", "0.5", "cat-02",
                      "SETATTR", '{"author":"jo","category":"animals"}').strip() == "1"
    assert server.cli("VADD", "stickers", "VALUES", "4", "0.9", "0.1", "0.7", "0.1", "car-01",
                      "SETATTR", '{"author":"mika","category":"vehicles"}').strip() == "1"
    assert server.cli("VSIM", "stickers", "ELE", "cat-01", "COUNT", "2").split() == ["cat-01", "cat-02"]
    out = server.cli("VSIM", "stickers", "ELE", "cat-01", "FILTER", '.author == "mika"').split()
    assert out == ["cat-01", "car-01"]
    assert server.cli("VSIM", "stickers", "ELE", "cat-01", "CATEGORY", "vehicles").split() == ["car-01"]
    out = server.cli("VSIM", "stickers", "VALUES", "4", "0.1", "0.9", "0.2", "0.4", "WITHSCORES", "WITHATTRIBS",
                     "COUNT", "1").splitlines()
    assert out == ["cat-01", "1", '{"author":"mika","category":"animals"}']
    assert server.cli("VCARD", "stickers").strip() == "3"
    assert "vectorset" in server.cli("TYPE", "stickers")
    # The recommendations README.md shows next.
    out = server.cli("VRECOMMEND", "stickers", "cat-01", "COUNT", "10", "SAME", "author", "SIMILAR", "IN", "category").split()
    assert out == ["car-01", "same:author", "cat-02", "similar:category"]
    assert server.cli("VHISTORY", "stickers", "2", "cat-01", "car-01", "COUNT", "5").split() == ["cat-02"]
    assert server.cli("VWITHIN", "stickers", "ELE", "cat-01", "0.98").split() == ["cat-01", "cat-02"]
    assert "new-items" in server.cli("VNEWNEIGHBORS", "stickers", "SINCE", "TIME", "1795392000", "COUNT", "5", "INCLUDE-NEW",
                                     "OUTPUT", "today.jsonl")
    assert server.cli("VNEIGHBORS", "stickers", "cat-02").split() == ["cat-01", "car-01"]
    assert server.cli("VADD", "stickers", "VALUES", "4", "0.8", "0.2", "0.6", "0.2", "cat-01", "VIEW", "back").strip() == "1"
    assert server.cli("VCARD", "stickers").strip() == "3"
    # RESP3 through redis-cli -3
    assert "cat-01" in server.cli("-3", "VSIM", "stickers", "ELE", "cat-01", "WITHSCORES", "COUNT", "1")
    # redis-cli pipes: many commands on one connection
    script = "".join(f"VADD bulk VALUES 2 {i} 1 e{i}\n" for i in range(1, 201)) + "VCARD bulk\n"
    assert server.cli(stdin=script).split()[-1] == "200"


def test_redis_py_before_6_with_execute_command(server):
    code = f"""
import json, redis
r = redis.Redis(port={server.port}, decode_responses=True)
assert redis.__version__.startswith(("4.", "5.")), redis.__version__
assert r.execute_command("VADD", "old", "VALUES", 3, 1, 0, 0, "a", "SETATTR", json.dumps({{"category": "x"}})) == 1
assert r.execute_command("VADD", "old", "VALUES", 3, 0, 1, 0, "b") == 1
assert r.execute_command("VSIM", "old", "ELE", "a") == ["a", "b"]
flat = r.execute_command("VSIM", "old", "VALUES", 3, 1, 0, 0, "WITHSCORES")
assert flat[0] == "a" and float(flat[1]) == 1.0
assert r.execute_command("VGETATTR", "old", "a") == '{{"category": "x"}}'
print("ok")
"""
    if not PY_REDIS5.exists():
        pytest.skip("Tools/test.sh installs redis-py 5 in .build/py-redis5")
    out = subprocess.run([str(PY_REDIS5), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_sigkill_loses_no_acknowledged_write(server):
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def writer(n):
        r = server.client()
        i = 0
        while not stop.is_set():
            key = f"w{n}-{i}"
            vec = [n + 1, i % 97 + 1, 1.5]
            try:
                p = r.pipeline(transaction=False)
                p.execute_command("VADD", "crash", "VALUES", 3, *vec, key, "SETATTR", json.dumps({"n": n, "i": i}))
                p.execute_command("VADD", "crash", "VALUES", 3, *vec, key + "-del")
                p.execute_command("VREM", "crash", key + "-del")
                out = p.execute(raise_on_error=False)
            except Exception:
                return
            if out[0] == 1:
                with lock:
                    acked[key] = (vec, i)
            if out[2] == 1:
                with lock:
                    acked[key + "-del"] = None
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(3)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100
    server.start()
    r = server.client()
    for key, value in acked.items():
        if value is None:
            assert r.execute_command("VISMEMBER", "crash", key) == 0, key
            continue
        vec, i = value
        assert [float(x) for x in r.execute_command("VEMB", "crash", key)] == vec, key
        assert json.loads(r.execute_command("VGETATTR", "crash", key))["i"] == i
    sample = random.Random(1).sample([k for k, v in acked.items() if v], 20)
    for key in sample:
        hits = r.execute_command("VSIM", "crash", "ELE", key, "WITHSCORES", "COUNT", 1, "TRUTH")
        assert list(as_dict(hits, float).values()) == [1.0]


def test_sigterm_finishes_and_exits_zero(server):
    r = server.client()
    for i in range(100):
        r.execute_command("VADD", "t", "VALUES", 2, 1, i + 1, f"e{i}")
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    assert server.client().execute_command("VCARD", "t") == 100


def test_shutdown_command(server):
    r = server.client()
    r.execute_command("VADD", "t", "VALUES", 2, 1, 1, "e")
    try:
        r.execute_command("SHUTDOWN")
    except Exception:
        pass
    assert server.process.wait(timeout=30) == 0
    server.start()
    assert server.client().execute_command("VCARD", "t") == 1
