"""Compressed HNSW through the real server and redis-py: VADD … Q8 makes an HNSW32,SQ8 set
that rescoring makes exact at the top, VSIM's RESCORE/NORESCORE, and BIN refused with a reason."""
import random

import pytest
import redis
from redis.commands.vectorset.commands import QuantizationOptions

from conftest import Server


def vinfo(r, key):
    reply = r.execute_command("VINFO", key)
    return dict(zip(reply[::2], reply[1::2])) if isinstance(reply, list) else reply


def vectors(n, d, seed):
    rng = random.Random(seed)
    centres = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(12)]
    return [[c + 0.3 * rng.gauss(0, 1) for c in rng.choice(centres)] for _ in range(n)]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)


@pytest.fixture
def sealing_server(tmp_path):
    s = Server(tmp_path / "data", "--seal-threshold", "1000").start()
    yield s
    s.stop()


def load_q8(r, data):
    vs = r.vset()
    pipe = r.pipeline(transaction=False)
    for i, v in enumerate(data):
        pipe.execute_command("VADD", "q8", "VALUES", len(v), *v, f"e{i}", "Q8")
    assert all(x == 1 for x in pipe.execute())
    r.execute_command("SAVE")  # seals what is left: every item is in an HNSW32,SQ8 segment
    return vs


def test_q8_set_is_hnsw_sq8_rescored_to_exact_scores(sealing_server):
    r = sealing_server.client()
    d = 24
    data = vectors(2500, d, seed=3)
    load_q8(r, data)
    info = vinfo(r, "q8")
    assert info["index"] == "HNSW32,SQ8" and info["quant-type"] == "int8"
    assert info["sealed-segments"] >= 2 and info["rescore"] == 4
    hits_found = 0
    for q in vectors(10, d, seed=99):
        # redis-py's own VSIM, as a Redis 8 user calls it: scores are (1 + cos) / 2.
        got = r.vset().vsim("q8", q, with_scores=True, count=10)
        truth = sorted(range(len(data)), key=lambda i: -cosine(q, data[i]))[:10]
        hits_found += len(set(got) & {f"e{i}" for i in truth})
        for key, score in got.items():
            exact = (1 + cosine(q, data[int(key[1:])])) / 2
            assert float(score) == pytest.approx(exact, abs=1e-5)
        ordered = list(got.values())
        assert ordered == sorted(ordered, reverse=True)
    assert hits_found / 100 >= 0.9
    # NORESCORE: the codes' own scores, not all exact.
    q = vectors(1, d, seed=7)[0]
    raw = r.execute_command("VSIM", "q8", "VALUES", d, *q, "WITHSCORES", "COUNT", 10, "NORESCORE")
    pairs = dict(zip(raw[::2], raw[1::2]))
    assert any(abs(float(s) - (1 + cosine(q, data[int(k[1:])])) / 2) > 1e-5 for k, s in pairs.items())
    again = r.execute_command("VSIM", "q8", "VALUES", d, *q, "WITHSCORES", "COUNT", 10, "RESCORE", 8)
    for k, s in zip(again[::2], again[1::2]):
        assert float(s) == pytest.approx((1 + cosine(q, data[int(k[1:])])) / 2, abs=1e-5)


def test_q8_through_redis_py_and_bad_options(server):
    r = server.client()
    assert r.vset().vadd("viaapi", [0.1, 0.9, 0.3], "e1", quantization=QuantizationOptions.Q8) == 1
    assert vinfo(r, "viaapi")["index"] == "HNSW32,SQ8"
    assert r.vset().vadd("plain", [0.1, 0.9, 0.3], "e1", quantization=QuantizationOptions.NOQUANT) == 1
    assert vinfo(r, "plain")["index"] == "HNSW32" and vinfo(r, "plain")["rescore"] == 0
    with pytest.raises(redis.ResponseError, match="BIN is not supported"):
        r.vset().vadd("bin", [0.1, 0.9, 0.3], "e1", quantization=QuantizationOptions.BIN)
    assert r.execute_command("EXISTS", "bin") == 0
    for bad in (["RESCORE"], ["RESCORE", 0], ["RESCORE", 101], ["RESCORE", "x"]):
        with pytest.raises(redis.ResponseError, match="RESCORE|syntax"):
            r.execute_command("VSIM", "viaapi", "ELE", "e1", *bad)
    assert r.execute_command("VSIM", "plain", "ELE", "e1", "RESCORE", 3) == ["e1"]
