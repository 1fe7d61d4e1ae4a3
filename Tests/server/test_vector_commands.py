"""Every vector-set command through redis-py, in RESP2 and RESP3, with Redis's reply shapes."""
import json
import math
import struct

import pytest
import redis

from conftest import as_dict


def add_shoes(r):
    assert r.execute_command("VADD", "shoes", "VALUES", 3, 1, 0, 0, "boot1", "SETATTR",
                             json.dumps({"category": "boots", "price": 80})) == 1
    assert r.execute_command("VADD", "shoes", "VALUES", 3, 0.9, 0.1, 0, "boot2", "SETATTR",
                             json.dumps({"category": "boots", "price": 120})) == 1
    assert r.execute_command("VADD", "shoes", "FP32", struct.pack("<3f", 0, 1, 0), "sandal1",
                             "SETATTR", json.dumps({"category": "sandals", "price": 30})) == 1


def test_vadd_returns_1_then_0_and_replaces(r):
    add_shoes(r)
    assert r.execute_command("VADD", "shoes", "VALUES", 3, 0, 0, 1, "boot1") == 0
    assert r.execute_command("VCARD", "shoes") == 3
    emb = [float(x) for x in r.execute_command("VEMB", "shoes", "boot1")]
    assert emb == [0, 0, 1]
    # attributes survive a new vector without SETATTR
    assert json.loads(r.execute_command("VGETATTR", "shoes", "boot1"))["price"] == 80


def test_vsim_shapes_resp2(server, r):
    add_shoes(r)
    assert r.execute_command("VSIM", "shoes", "ELE", "boot1") == ["boot1", "boot2", "sandal1"]
    # The exact RESP2 wire shape: a flat array of element, score[, attributes].
    reply, _ = server.raw(b"VSIM shoes VALUES 3 1 0 0 WITHSCORES COUNT 2\r\n", wait=0.5)
    assert reply.startswith(b"*4\r\n$5\r\nboot1\r\n$1\r\n1\r\n$5\r\nboot2\r\n$"), reply
    reply, _ = server.raw(b"VSIM shoes VALUES 3 1 0 0 WITHSCORES WITHATTRIBS COUNT 1\r\n", wait=0.5)
    attrs = json.dumps({"category": "boots", "price": 80}).encode()
    assert reply == b"*3\r\n$5\r\nboot1\r\n$1\r\n1\r\n$%d\r\n%s\r\n" % (len(attrs), attrs)
    # redis-py turns WITHSCORES into a dict; cosine is reported as Redis does: (1 + cos) / 2
    scores = as_dict(r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "WITHSCORES"), float)
    assert scores["boot1"] == 1.0 and scores["sandal1"] == pytest.approx(0.5, abs=1e-6)


def test_vsim_shapes_resp3(r3):
    add_shoes(r3)
    m = r3.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "WITHSCORES")
    assert isinstance(m, dict) and m["boot1"] == 1.0 and m["sandal1"] == pytest.approx(0.5, abs=1e-6)
    both = r3.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "WITHSCORES", "WITHATTRIBS")
    assert both["boot2"][0] > 0.9 and json.loads(both["boot2"][1])["category"] == "boots"
    attrs = r3.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "WITHATTRIBS")
    assert json.loads(attrs["sandal1"])["price"] == 30
    assert r3.execute_command("VISMEMBER", "shoes", "boot1") is True
    assert r3.execute_command("VISMEMBER", "shoes", "nope") is False
    info = r3.execute_command("VINFO", "shoes")
    assert info["vector-dim"] == 3 and info["size"] == 3
    emb = r3.execute_command("VEMB", "shoes", "boot2")
    assert emb[0] == pytest.approx(0.9, abs=1e-6)


def test_vsim_filter_epsilon_truth_ef(r):
    add_shoes(r)
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "FILTER", ".price > 100") == ["boot2"]
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "FILTER",
                             '.category == "boots" and .price < 100') == ["boot1"]
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "FILTER",
                             '.category in ["sandals", "clogs"]') == ["sandal1"]
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "FILTER", ".missing > 1") == []
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "EPSILON", 0.1) == ["boot1", "boot2"]
    assert r.execute_command("VSIM", "shoes", "ELE", "boot1", "TRUTH", "NOTHREAD", "EF", 200,
                             "FILTER-EF", 10) == ["boot1", "boot2", "sandal1"]
    with pytest.raises(redis.ResponseError, match="FILTER"):
        r.execute_command("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "FILTER", ".price >> 3")


def test_vrem_vcard_vdim_vgetattr_vsetattr(r):
    add_shoes(r)
    assert r.execute_command("VDIM", "shoes") == 3
    assert r.execute_command("VREM", "shoes", "boot2") == 1
    assert r.execute_command("VREM", "shoes", "boot2") == 0
    assert r.execute_command("VCARD", "shoes") == 2
    assert r.execute_command("VSETATTR", "shoes", "boot1", '{"category":"wellies"}') == 1
    assert r.execute_command("VGETATTR", "shoes", "boot1") == '{"category":"wellies"}'
    assert r.execute_command("VSETATTR", "shoes", "boot1", "") == 1
    assert r.execute_command("VGETATTR", "shoes", "boot1") is None
    assert r.execute_command("VSETATTR", "shoes", "ghost", "{}") == 0
    assert r.execute_command("VSETATTR", "nokey", "ghost", "{}") == 0
    # As in Redis, attributes are kept as given, JSON or not; FILTER skips what is not JSON.
    assert r.execute_command("VSETATTR", "shoes", "boot1", "{not json") == 1
    assert r.execute_command("VGETATTR", "shoes", "boot1") == "{not json"
    assert "boot1" not in r.execute_command("VSIM", "shoes", "ELE", "boot1", "FILTER", ".category == 'x' or 1")
    assert r.execute_command("VCARD", "nokey") == 0
    with pytest.raises(redis.ResponseError, match="does not exist"):
        r.execute_command("VDIM", "nokey")
    assert r.execute_command("VEMB", "shoes", "ghost") is None
    assert r.execute_command("VGETATTR", "nokey", "x") is None


def test_vemb_raw_and_vrandmember(server, r):
    add_shoes(r)
    kind, blob, norm = server.client(decode_responses=False).execute_command("VEMB", "shoes", "boot2", "RAW")
    assert kind == b"f32" and struct.unpack("<3f", blob)[0] == pytest.approx(0.9)
    assert float(norm) == pytest.approx(math.hypot(0.9, 0.1), rel=1e-6)
    assert r.execute_command("VRANDMEMBER", "shoes") in {"boot1", "boot2", "sandal1"}
    assert sorted(r.execute_command("VRANDMEMBER", "shoes", 10)) == ["boot1", "boot2", "sandal1"]
    assert len(r.execute_command("VRANDMEMBER", "shoes", -7)) == 7
    assert r.execute_command("VRANDMEMBER", "nokey") is None
    assert r.execute_command("VRANDMEMBER", "nokey", 3) == []


def test_metric_and_index_extensions(r):
    assert r.execute_command("VADD", "pts", "VALUES", 2, 3, 4, "a", "METRIC", "L2", "INDEX", "Flat") == 1
    r.execute_command("VADD", "pts", "VALUES", 2, 0, 0, "origin")
    scores = as_dict(r.execute_command("VSIM", "pts", "VALUES", 2, 0, 0, "WITHSCORES"), float)
    assert list(scores) == ["origin", "a"] and scores["origin"] == 0 and scores["a"] == pytest.approx(5, rel=1e-5)
    info = as_dict(r.execute_command("VINFO", "pts"))
    assert info["metric"] == "l2" and info["index"] == "Flat"
    with pytest.raises(redis.ResponseError, match="METRIC only applies"):
        r.execute_command("VADD", "pts", "VALUES", 2, 1, 1, "b", "METRIC", "IP")
    with pytest.raises(redis.ResponseError, match="FAISS rejects"):
        r.execute_command("VADD", "bad", "VALUES", 2, 1, 1, "b", "INDEX", "NoSuchIndex")
    assert r.exists("bad") == 0


def test_vector_errors_change_nothing(r):
    add_shoes(r)
    for args, pattern in [
        (("VADD", "shoes", "VALUES", 2, 1, 0, "x"), "dimension mismatch"),
        (("VADD", "shoes", "VALUES", 3, 1, "nan", 0, "x"), "NaN"),
        (("VADD", "shoes", "VALUES", 3, 1, "inf", 0, "x"), "NaN or infinity"),
        (("VADD", "shoes", "VALUES", 3, 1, "abc", 0, "x"), "not a number"),
        (("VADD", "shoes", "VALUES", 5, 1, 0, 0, "x"), "needs 5 numbers"),
        (("VADD", "shoes", "FP32", b"\x00\x00\x80", "x"), "4 bytes"),
        (("VADD", "shoes", "VALUES", 3, 1, 0, 0, "x", "SETATTR", "x" * 70000), "longer than"),
        (("VADD", "shoes", "VALUES", 3, 1, 0, 0, "x", "BIN"), "BIN is not supported"),
        (("VADD", "shoes", "VALUES", 3, 1, 0, 0, "x", "Q8"), "quantization mismatch"),
        (("VADD", "shoes", "VALUES", 3, 1, 0, 0, "x", "BOGUS"), "unknown VADD option"),
        (("VADD", "shoes", "VALUES", 3, 1, 0, 0, ""), "empty"),
        (("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "COUNT", 0), "COUNT"),
        (("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "COUNT", 10**9), "COUNT"),
        (("VSIM", "shoes", "VALUES", 2, 1, 0), "dimension mismatch"),
        (("VSIM", "shoes", "ELE", "ghost"), "no element"),
        (("VSIM", "shoes", "VALUES", 3, 1, 0, 0, "WHAT"), "unknown VSIM option"),
        (("VADD", "shoes"), "wrong number of arguments"),
    ]:
        with pytest.raises(redis.ResponseError, match=pattern):
            r.execute_command(*args)
    assert r.execute_command("VCARD", "shoes") == 3
    assert r.execute_command("VSIM", "shoes", "ELE", "boot1") == ["boot1", "boot2", "sandal1"]


def test_redis_py_6_plus_vset_api(server):
    r = server.client()
    v = r.vset()
    assert v.vadd("items", [0.1, 0.2, 0.3], "a", attributes={"category": "x"}) == 1
    assert v.vadd("items", [0.3, 0.2, 0.1], "b") == 1
    assert v.vcard("items") == 2
    assert v.vdim("items") == 3
    assert v.vsim("items", "a")[0] == "a"
    scored = v.vsim("items", [0.1, 0.2, 0.3], with_scores=True)
    assert scored["a"] == pytest.approx(1.0)
    assert v.vgetattr("items", "a") == {"category": "x"}
    assert v.vsetattr("items", "b", {"category": "y"}) == 1
    assert v.vsim("items", [0.1, 0.2, 0.3], filter='.category == "y"') == ["b"]
    assert v.vemb("items", "a") == pytest.approx([0.1, 0.2, 0.3])
    assert v.vinfo("items")["size"] == 2
    assert v.vrandmember("items") in ("a", "b")
    assert v.vrem("items", "a") == 1
    r3 = server.client(protocol=3).vset()
    assert r3.vsim("items", [0.3, 0.2, 0.1], with_scores=True)["b"] == pytest.approx(1.0)


def test_category_and_prediction_extensions(r, r3):
    for i in range(30):
        r.execute_command("VADD", "shop", "VALUES", 2, 10 + i * 0.01, 1, f"boot{i}", "SETATTR", '{"category":"boots"}')
        r.execute_command("VADD", "shop", "VALUES", 2, 1, 10 + i * 0.01, f"hat{i}", "SETATTR", '{"category":"hats"}')
    hits = r.execute_command("VSIM", "shop", "VALUES", 2, 10, 1, "CATEGORY", "hats", "COUNT", 5)
    assert len(hits) == 5 and all(h.startswith("hat") for h in hits)
    assert r.execute_command("VSIM", "shop", "VALUES", 2, 10, 1, "CATEGORY", "none") == []
    auto = r.execute_command("VSIM", "shop", "VALUES", 2, 1, 9, "CATEGORY", "AUTO", "COUNT", 40)
    assert len(auto) == 30 and all(h.startswith("hat") for h in auto)
    category, confidence = r.execute_command("VPREDICT", "shop", "VALUES", 2, 9, 1)
    assert category == "boots" and float(confidence) > 0.9
    assert r3.execute_command("VPREDICT", "shop", "ELE", "hat3")[0] == "hats"
    assert r.execute_command("VPREDICT", "nokey", "VALUES", 2, 1, 1) is None
    # CATEGORY and FILTER together: both restrict.
    r.execute_command("VSETATTR", "shop", "hat4", '{"category":"hats","colour":"red"}')
    r.execute_command("VSETATTR", "shop", "boot4", '{"category":"boots","colour":"red"}')
    assert r.execute_command("VSIM", "shop", "VALUES", 2, 1, 1, "CATEGORY", "hats", "FILTER", '.colour == "red"') == ["hat4"]
    # A FILTER on the indexed category is planned like CATEGORY: k come back when k exist.
    hits = r.execute_command("VSIM", "shop", "VALUES", 2, 10, 1, "COUNT", 30, "FILTER", '.category == "hats"')
    assert len(hits) == 30 and all(h.startswith("hat") for h in hits)
