"""Recommendation commands through redis-py and redis-cli: VHISTORY (a user's history as one
query) and VWITHIN (everything within a threshold), on data made here."""
import json
import math
import struct

import pytest
import redis

from conftest import as_dict

# Two clusters on the unit circle of a 3-d space, and one lone item.
ITEMS = {
    "red1": (1, 0.05, 0), "red2": (1, -0.05, 0), "red3": (0.98, 0.1, 0), "red4": (0.97, -0.12, 0),
    "blue1": (0, 1, 0.05), "blue2": (0.05, 1, 0), "blue3": (-0.1, 0.98, 0), "blue4": (0.12, 0.97, 0),
    "lone": (0, 0, 1),
}


def load(r):
    for name, v in ITEMS.items():
        r.execute_command("VADD", "stickers", "VALUES", 3, *v, name, "SETATTR",
                          json.dumps({"category": name.rstrip("0123456789")}))


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_vhistory_mean_weights_attention(r):
    load(r)
    # A user who bought two red stickers gets the other reds, never the two bought.
    got = r.execute_command("VHISTORY", "stickers", 2, "red1", "red2", "COUNT", 2)
    assert sorted(got) == ["red3", "red4"]
    # Weights pull the aggregate towards blue.
    got = r.execute_command("VHISTORY", "stickers", 2, "red1", "blue1", "WEIGHTS", 0.1, 5, "COUNT", 1)
    assert got[0].startswith("blue")
    # Attention towards a blue query vector weights blue1 up in the same history.
    got = r.execute_command("VHISTORY", "stickers", 2, "red1", "blue1", "ATTENTION", "VALUES", 3, 0, 1, 0, "COUNT", 1)
    assert got[0].startswith("blue")
    got = r.execute_command("VHISTORY", "stickers", 2, "red1", "blue1", "ATTENTION", "FP32",
                            struct.pack("<3f", 1, 0, 0), "COUNT", 1)
    assert got[0].startswith("red")
    # The usual VSIM options apply: scores, attributes, filters.
    reply = as_dict(r.execute_command("VHISTORY", "stickers", 1, "red1", "WITHSCORES", "FILTER", '.category == "blue"',
                                      "COUNT", 2), float)
    assert set(reply) <= {"blue1", "blue2", "blue3", "blue4"} and len(reply) == 2


def test_vhistory_errors(r):
    load(r)
    with pytest.raises(redis.ResponseError, match="no element named 'ghost'"):
        r.execute_command("VHISTORY", "stickers", 2, "red1", "ghost")
    with pytest.raises(redis.ResponseError, match="WEIGHTS"):
        r.execute_command("VHISTORY", "stickers", 2, "red1", "red2", "WEIGHTS", 1)
    with pytest.raises(redis.ResponseError, match="names 3 elements"):
        r.execute_command("VHISTORY", "stickers", 3, "red1", "red2")
    with pytest.raises(redis.ResponseError, match="positive integer"):
        r.execute_command("VHISTORY", "stickers", 0, "red1")
    with pytest.raises(redis.ResponseError, match="dimension"):
        r.execute_command("VHISTORY", "stickers", 1, "red1", "ATTENTION", "VALUES", 2, 1, 0)
    assert r.execute_command("VCARD", "stickers") == len(ITEMS)  # nothing changed


def test_vwithin_returns_everything_inside(r):
    load(r)
    q = ITEMS["red1"]
    cosines = {n: sum(a * b for a, b in zip(unit(q), unit(v))) for n, v in ITEMS.items()}
    threshold = 0.99  # Redis-style score (1 + cos) / 2
    inside = {n for n, c in cosines.items() if (1 + c) / 2 >= threshold}
    assert 2 <= len(inside) < len(ITEMS)
    got = as_dict(r.execute_command("VWITHIN", "stickers", "VALUES", 3, *q, threshold, "WITHSCORES"), float)
    assert set(got) == inside
    assert all(s >= threshold for s in got.values())
    # COUNT caps it, keeping the best; TRUTH makes it exact.
    assert r.execute_command("VWITHIN", "stickers", "ELE", "red1", threshold, "COUNT", 1, "TRUTH") == ["red1"]
    with pytest.raises(redis.ResponseError, match="threshold"):
        r.execute_command("VWITHIN", "stickers", "ELE", "red1", "close")


def test_vwithin_l2_and_redis_cli(server, r):
    for name, v in ITEMS.items():
        r.execute_command("VADD", "l2set", "VALUES", 3, *v, name, "METRIC", "L2")
    # L2: a distance of at most the threshold.
    assert server.cli("VWITHIN", "l2set", "VALUES", "3", "0", "0", "1", "0.5").split() == ["lone"]


def sticker_shop(r, n=120, dim=8):
    """n stickers: author a<i % 10> (12 each), category c<i % 3>, sales rank a permutation."""
    import random
    rng = random.Random(4)
    for i in range(n):
        v = [rng.gauss(0, 1) for _ in range(dim)]
        r.execute_command("VADD", "shop", "VALUES", dim, *v, f"s{i}", "SETATTR",
                          json.dumps({"author": f"a{i % 10}", "category": f"c{i % 3}", "rank": (i * 7) % n + 1}))


def test_vrecommend_cascade(r, r3, server):
    sticker_shop(r)
    reply = r.execute_command("VRECOMMEND", "shop", "s5", "COUNT", 16, "WITHSCORES",
                              "SAME", "author", "TOP", "rank", "ASC")
    triples = list(zip(reply[0::3], reply[1::3], reply[2::3]))
    assert [t[1] for t in triples] == ["same:author"] * 11 + ["top:rank"] * 5
    assert all(int(k[1:]) % 10 == 5 for k, _, _ in triples[:11]), "the author's stickers first"
    assert len({k for k, _, _ in triples}) == 16 and "s5" not in {k for k, _, _ in triples}
    scores = [float(s) for _, _, s in triples]
    assert scores[:11] == sorted(scores[:11], reverse=True), "nearest first within a stage"
    assert scores[11:] == sorted(scores[11:]), "a TOP stage reports the rank, best first"
    # RESP3: a map from element to [stage, score]; the default stages are author then similar.
    m = r3.execute_command("VRECOMMEND", "shop", "s5", "COUNT", 14)
    assert list(m.values()) == ["same:author"] * 11 + ["similar"] * 3
    # SIMILAR IN category keeps to the item's category.
    reply = r.execute_command("VRECOMMEND", "shop", "s4", "COUNT", 5, "SIMILAR", "IN", "category")
    assert all(int(k[1:]) % 3 == 1 for k in reply[0::2]) and set(reply[1::2]) == {"similar:category"}
    # redis-cli shows element and stage line by line.
    out = server.cli("VRECOMMEND", "shop", "s5", "COUNT", "2", "SAME", "author").split()
    assert out[1::2] == ["same:author", "same:author"]
    with pytest.raises(redis.ResponseError, match="not an indexed attribute"):
        r.execute_command("VRECOMMEND", "shop", "s5", "SAME", "rank")
    with pytest.raises(redis.ResponseError, match="no element named 'ghost'"):
        r.execute_command("VRECOMMEND", "shop", "ghost")
    with pytest.raises(redis.ResponseError, match="unknown VRECOMMEND option"):
        r.execute_command("VRECOMMEND", "shop", "s5", "SIDEWAYS")


def test_vnewneighbors_batch_job_and_lookup(server, r):
    sticker_shop(r, n=100)
    first_new = r.execute_command("VINFO", "shop")[r.execute_command("VINFO", "shop").index("hnsw-max-node-uid") + 1]
    import random
    rng = random.Random(9)
    for i in range(20):
        r.execute_command("VADD", "shop", "VALUES", 8, *[rng.gauss(0, 1) for _ in range(8)], f"new{i}")
    report = as_dict(r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "ID", first_new, "COUNT", 4, "OUTPUT", "today.jsonl"))
    assert report["new-items"] == 20 and report["existing-items"] == 100
    path = report["output"]
    assert path.startswith(server.data) and path.endswith("/exports/today.jsonl")
    lines = [json.loads(l) for l in open(path)]
    assert [l["key"] for l in lines] == [f"new{i}" for i in range(20)]
    assert all(len(l["neighbors"]) == 4 and all(n["key"].startswith("s") for n in l["neighbors"]) for l in lines)
    # The lookup answers from what the job kept; scores as VSIM reports them ((1 + cos) / 2).
    kept = as_dict(r.execute_command("VNEIGHBORS", "shop", "new3", "WITHSCORES"), float)
    assert list(kept) == [n["key"] for n in lines[3]["neighbors"]]
    for n in lines[3]["neighbors"]:
        assert kept[n["key"]] == pytest.approx((1 + n["score"]) / 2, abs=1e-6)
    assert r.execute_command("VNEIGHBORS", "shop", "s1") is None, "an old item was not listed"
    # The exact answer: VSIM TRUTH over the old items finds the same neighbours.
    truth = r.execute_command("VSIM", "shop", "ELE", "new3", "TRUTH", "COUNT", 30, "FILTER", ".rank > 0")
    assert [k for k in truth if k != "new3"][:4] == list(kept)
    status = as_dict(r.execute_command("VNEWNEIGHBORS", "shop", "STATUS"))
    assert status["running"] == 0 and float(status["progress"]) == 1.0
    assert as_dict(status["last-run"])["new-items"] == 20
    # Kept across kill -9; the next daily run starts where this one stopped.
    server.kill9()
    server.start()
    r = server.client()
    assert list(as_dict(r.execute_command("VNEIGHBORS", "shop", "new3", "WITHSCORES"))) == list(kept)
    r.execute_command("VADD", "shop", "VALUES", 8, *[0.5] * 8, "tomorrow")
    assert as_dict(r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "LAST"))["new-items"] == 1


def test_vnewneighbors_refuses_bad_requests(r):
    sticker_shop(r, n=10)
    for args, message in [
        (["SINCE", "LAST"], "no earlier new-items job"),
        (["SINCE", "ID", "-1"], "SINCE ID needs an id"),
        (["SINCE", "YESTERDAY"], "SINCE takes"),
        (["SINCE", "ID", "0", "OUTPUT", "../../etc/x"], "plain file name"),
        (["SINCE", "ID", "0", "OUTPUT", ".hidden"], "plain file name"),
        (["SINCE", "ID", "0", "COUNT", "5000"], "COUNT must be at most 1000"),
        (["SINCE", "ID", "0", "FAST"], "unknown VNEWNEIGHBORS option"),
        (["NOW"], "needs SINCE"),
    ]:
        with pytest.raises(redis.ResponseError, match=message):
            r.execute_command("VNEWNEIGHBORS", "shop", *args)
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.execute_command("VNEWNEIGHBORS", "nothing", "SINCE", "ID", "0")
    # Ids and times past anything stored: nothing new, and a report that says so.
    for since in (["ID", str(2**64 - 1)], ["TIME", str(2**64 - 1)]):
        report = as_dict(r.execute_command("VNEWNEIGHBORS", "shop", "SINCE", *since))
        assert report["new-items"] == 0
    assert r.execute_command("VCARD", "shop") == 10


def test_several_images_per_item(r, r3, server):
    # A shoe photographed from three sides: the element's own vector, and two views.
    r.execute_command("VADD", "shoes", "VALUES", 3, 1, 0, 0, "boot", "SETATTR", '{"category":"boots"}')
    assert r.execute_command("VADD", "shoes", "VALUES", 3, 0, 1, 0, "boot", "VIEW", "side") == 1
    assert r.execute_command("VADD", "shoes", "VALUES", 3, 0, 0, 1, "boot", "VIEW", "sole") == 1
    r.execute_command("VADD", "shoes", "VALUES", 3, 0.9, 0.1, 0, "sandal", "SETATTR", '{"category":"sandals"}')
    r.execute_command("VADD", "shoes", "VALUES", 3, 0.1, 0.9, 0.1, "clog", "SETATTR", '{"category":"clogs"}')
    assert r.execute_command("VCARD", "shoes") == 3, "items, not vectors"
    # A photo of a sole finds the boot, once, at its best view's score.
    reply = as_dict(r.execute_command("VSIM", "shoes", "VALUES", 3, 0, 0, 1, "WITHSCORES", "COUNT", 3), float)
    assert list(reply) == ["boot", "clog", "sandal"]
    assert reply["boot"] == 1.0
    assert r3.execute_command("VSIM", "shoes", "VALUES", 3, 0, 0.1, 1, "COUNT", 1, "FILTER", '.category == "boots"') == ["boot"]
    # Attributes belong to the item; views follow them.
    r.execute_command("VSETATTR", "shoes", "boot", '{"category":"winter"}')
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 0, 0, 1, "COUNT", 1, "FILTER", '.category == "winter"') == ["boot"]
    with pytest.raises(redis.ResponseError, match="add the item itself before its views"):
        r.execute_command("VADD", "shoes", "VALUES", 3, 1, 1, 1, "ghost", "VIEW", "side")
    with pytest.raises(redis.ResponseError, match="attributes belong to the item"):
        r.execute_command("VADD", "shoes", "VALUES", 3, 1, 1, 1, "boot", "VIEW", "top", "SETATTR", "{}")
    with pytest.raises(redis.ResponseError, match="VIEW needs a name"):
        r.execute_command("VADD", "shoes", "VALUES", 3, 1, 1, 1, "boot", "VIEW", "")
    # Kept across kill -9; removing the item removes its views.
    server.kill9()
    server.start()
    r = server.client()
    assert r.execute_command("VSIM", "shoes", "VALUES", 3, 0, 0, 1, "COUNT", 1) == ["boot"]
    assert r.execute_command("VREM", "shoes", "boot") == 1
    assert r.execute_command("VCARD", "shoes") == 2
    assert "boot" not in r.execute_command("VSIM", "shoes", "VALUES", 3, 0, 0, 1, "COUNT", 5)


def test_a_pipelined_lookup_after_the_batch_job_sees_its_results(r):
    """VNEWNEIGHBORS writes (the kept lists): a VNEIGHBORS pipelined after it on the same
    connection must wait for it, as a read after a write does, and VCOMPACT likewise."""
    sticker_shop(r, n=100)
    first_new = r.execute_command("VINFO", "shop")[r.execute_command("VINFO", "shop").index("hnsw-max-node-uid") + 1]
    for i in range(20):
        r.execute_command("VADD", "shop", "VALUES", 8, *[float((i * 7 + j) % 5) for j in range(8)], f"new{i}")
    for _ in range(5):
        pipe = r.pipeline(transaction=False)
        pipe.execute_command("VNEWNEIGHBORS", "shop", "SINCE", "ID", first_new, "COUNT", 3)
        pipe.execute_command("VNEIGHBORS", "shop", "new7")
        _, kept = pipe.execute()
        assert kept is not None and len(kept) == 3
        r.execute_command("DEL", "shop")
        sticker_shop(r, n=100)
        first_new = r.execute_command("VINFO", "shop")[r.execute_command("VINFO", "shop").index("hnsw-max-node-uid") + 1]
        for i in range(20):
            r.execute_command("VADD", "shop", "VALUES", 8, *[float((i * 7 + j) % 5) for j in range(8)], f"new{i}")
