"""Redis 8.4's vector-set queries through redis-py, in RESP2 and RESP3, with Redis's semantics:
VRANGE (names in byte order between two bounds), VLINKS (an element's HNSW neighbours, level by
level) and VADD REDUCE (a random projection kept with the set). The expected values are
computed here, independently of the server: sorted byte strings, VSIM's own scores, and Redis's
projection matrix (vset.c: entry (i, j) is +-1/sqrt(input dim), the sign the parity of the bits
of i & j)."""
import math
import random
import struct

import pytest
import time

import redis

from conftest import as_dict

FRUIT = ["apple", "apricot", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew",
         "kiwi", "lemon", "mango", "nectarine", "orange", "papaya", "quince", "raspberry",
         "strawberry", "tangerine", "watermelon"]


def add_fruit(r, key="fruit"):
    names = FRUIT[:]
    random.Random(4).shuffle(names)  # insertion order must not matter
    for i, name in enumerate(names):
        r.execute_command("VADD", key, "VALUES", 2, 1 + i, 1, name)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def rr(request, server):
    return server.client(protocol=request.param)


# ---------------------------------------------------------------------------------------------
# VRANGE key start end [count]


def test_vrange_bounds_as_redis(rr):
    add_fruit(rr)
    q = lambda *a: rr.execute_command("VRANGE", "fruit", *a)
    assert q("-", "+") == sorted(FRUIT)
    # Redis's own test cases (modules/vector-sets/tests/vrange.py).
    assert q("[apple", "[grape", 5) == ["apple", "apricot", "banana", "cherry", "date"]
    assert q("(apple", "[cherry", 10) == ["apricot", "banana", "cherry"]
    assert q("[banana", "(date") == ["banana", "cherry"]
    assert q("(banana", "(banana") == []
    assert q("[banana", "[banana") == ["banana"]
    # Bounds need not be elements; a prefix bound sorts before its extensions.
    assert q("[b", "(d") == ["banana", "cherry"]
    assert q("[ap", "[aps") == ["apple", "apricot"]
    assert q("[ap", "[apr") == ["apple"]  # "apricot" extends "apr": it sorts after it
    assert q("(strawberry", "+") == ["tangerine", "watermelon"]
    assert q("-", "(b") == ["apple", "apricot"]
    assert q("[zzz", "+") == [] and q("[d", "[c") == []
    # count: 0 gives nothing, a negative count everything, more than there are all of them.
    assert q("-", "+", 0) == []
    assert q("-", "+", -1) == sorted(FRUIT)
    assert q("-", "+", 1000) == sorted(FRUIT)
    assert q("-", "+", 3) == sorted(FRUIT)[:3]
    assert rr.execute_command("VRANGE", "nokey", "-", "+") == []


def test_vrange_pages_through_a_changing_set(r):
    add_fruit(r)
    seen, start = [], "-"
    while True:
        page = r.execute_command("VRANGE", "fruit", start, "+", 3)
        if not page:
            break
        assert len(page) <= 3
        seen += page
        start = "(" + page[-1]
        if page[-1] == "elderberry":  # removed and added while iterating: what Redis guarantees
            r.execute_command("VREM", "fruit", "apple")        # behind the cursor: not seen again
            r.execute_command("VREM", "fruit", "kiwi")         # ahead: not returned
            r.execute_command("VADD", "fruit", "VALUES", 2, 1, 2, "lime")  # ahead: returned
    expected = sorted(set(FRUIT) - {"kiwi"} | {"lime"})
    assert seen == expected
    assert r.execute_command("VRANGE", "fruit", "-", "+") == sorted(set(FRUIT) - {"kiwi", "apple"} | {"lime"})


def test_vrange_orders_by_bytes_and_leaves_views_out(server):
    r = server.client(decode_responses=False)
    names = [b"\x01", b"A", b"Z", b"a", b"ab", b"a b", b"b", "\u00e4".encode(), "\u20ac".encode(), b"~"]
    for i, n in enumerate(names):
        r.execute_command("VADD", "bytes", "VALUES", 2, 1, i + 1, n)
    # memcmp order; a name is smaller than its extensions.
    assert r.execute_command("VRANGE", "bytes", "-", "+") == sorted(names)
    assert r.execute_command("VRANGE", "bytes", "[a", "(b") == [b"a", b"a b", b"ab"]
    assert r.execute_command("VRANGE", "bytes", "(~", "+") == ["\u00e4".encode(), "\u20ac".encode()]
    # An item's extra vectors (VIEW) are not elements: VRANGE, like VCARD, leaves them out.
    r.execute_command("VADD", "bytes", "VALUES", 2, 3, 1, b"a", "VIEW", b"side")
    assert r.execute_command("VRANGE", "bytes", "-", "+") == sorted(names)
    assert r.execute_command("VRANGE", "bytes", "[a", "[a") == [b"a"]
    assert r.execute_command("VCARD", "bytes") == len(names)


def test_vrange_errors_as_redis(r):
    add_fruit(r)
    for args, pattern in [
        (("fruit", "apple", "+"), "invalid start range format"),
        (("fruit", "-", "grape"), "invalid end range format"),
        (("fruit", "[", "+"), "invalid start range format"),
        (("fruit", "-", "(", ), "invalid end range format"),
        (("fruit", "", "+"), "invalid start range format"),
        (("fruit", "+", "+"), "'-' can only be used as first argument, '\\+' only as second"),
        (("fruit", "-", "-"), "'-' can only be used as first argument"),
        (("fruit", "-", "+", "ten"), "invalid COUNT value"),
        (("nokey", "apple", "+"), "invalid start range format"),  # checked before the key
        (("fruit", "-", "+", 1, 2), "wrong number of arguments"),
        (("fruit", "-"), "wrong number of arguments"),
    ]:
        with pytest.raises(redis.ResponseError, match=pattern):
            r.execute_command("VRANGE", *args)


def test_vrange_through_redis_py_and_after_restart(server):
    v = server.client().vset()
    for i, name in enumerate(["b", "a", "c"]):
        v.vadd("s", [1.0, float(i + 1)], name)
    assert v.vrange("s", "-", "+") == ["a", "b", "c"]
    assert v.vrange("s", "(a", "+", count=1) == ["b"]
    server.restart()  # SIGKILL: the names come back from LMDB, in order
    assert server.client().vset().vrange("s", "-", "+", count=-5) == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------
# VLINKS key element [WITHSCORES]


def gaussian_set(r, key, count=300, dim=8, seed=1, extra=()):
    rng = random.Random(seed)
    vectors = {}
    for i in range(count):
        v = [rng.gauss(0, 1) for _ in range(dim)]
        vectors[f"e{i}"] = v
        r.execute_command("VADD", key, "VALUES", dim, *v, f"e{i}", *extra)
    return vectors


def test_vlinks_levels_highest_first_and_scores_as_vsim(rr):
    # M 4: a small M puts many nodes on upper levels (a node reaches level l with odds 4^-l).
    names = set(gaussian_set(rr, "g", extra=("M", 4)))
    assert rr.execute_command("SAVE") in (True, "OK")  # seals the set into its HNSW graph
    levels_of = {}
    for name in sorted(names):
        links = rr.execute_command("VLINKS", "g", name)
        assert isinstance(links, list) and len(links) >= 1
        for level in links:
            assert isinstance(level, list) and name not in level and set(level) <= names
            assert len(level) == len(set(level))
        assert len(links[-1]) >= 1  # level 0: every node is linked there
        assert all(len(level) <= 4 for level in links[:-1]) and len(links[-1]) <= 8  # M, 2M
        levels_of[name] = links
    tall = [n for n, links in levels_of.items() if len(links) >= 2]
    assert tall, "some node is on two levels or more"
    for name in tall:
        # The first array is the top level: its neighbours are on that level too, so they
        # have at least as many levels as the node.
        for other in levels_of[name][0]:
            assert len(levels_of[other]) >= len(levels_of[name])
    # WITHSCORES: each level a map neighbour -> the score VSIM reports for that pair.
    name = tall[0]
    scored = rr.execute_command("VLINKS", "g", name, "WITHSCORES")
    truth = as_dict(rr.execute_command("VSIM", "g", "ELE", name, "WITHSCORES", "COUNT", 400, "TRUTH"), float)
    assert len(scored) == len(levels_of[name])
    for plain, level in zip(levels_of[name], scored):
        level = as_dict(level, float)
        assert list(level) == plain
        for other, score in level.items():
            assert 0 <= score <= 1 and score == pytest.approx(truth[other], abs=1e-5)


def test_vlinks_reply_shapes(server, r, r3):
    gaussian_set(r, "g", count=50)
    r.execute_command("SAVE")
    plain = r.execute_command("VLINKS", "g", "e1")
    assert r3.execute_command("VLINKS", "g", "e1") == plain  # arrays of names in both
    # RESP2 WITHSCORES: an array per level of name, score, name, score...
    reply, _ = server.raw(b"VLINKS g e1 WITHSCORES\r\n", wait=0.5)
    assert reply.startswith(b"*%d\r\n*%d\r\n$" % (len(plain), 2 * len(plain[0]))), reply
    # RESP3 WITHSCORES: a map per level, name -> double.
    scored = r3.execute_command("VLINKS", "g", "e1", "WITHSCORES")
    assert all(isinstance(level, dict) for level in scored)
    assert [list(level) for level in scored] == plain
    assert all(isinstance(s, float) for level in scored for s in level.values())


def test_vlinks_redis_py_api_null_and_errors(server, r):
    gaussian_set(r, "g", count=40)
    r.execute_command("SAVE")
    v = server.client().vset()
    links = v.vlinks("g", "e3")
    assert isinstance(links, list) and all(isinstance(level, list) for level in links)
    with_scores = v.vlinks("g", "e3", with_scores=True)
    assert [list(level) for level in with_scores] == links
    assert all(isinstance(s, float) for level in with_scores for s in level.values())
    # Redis: null for a missing key or element.
    assert v.vlinks("g", "ghost") is None and v.vlinks("nokey", "e1") is None
    assert server.client(protocol=3).vset().vlinks("g", "ghost") is None
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("VLINKS", "g", "e3", "WITHATTRIBS")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("VLINKS", "g", "e3", "WITHSCORES", "x")


def linked(r, key, element, seconds=10):
    """VLINKS once the element is linked into the live graph (the indexer's background step)."""
    deadline = time.time() + seconds
    while True:
        try:
            return r.execute_command("VLINKS", key, element)
        except redis.ResponseError as e:
            if "not in an HNSW graph yet" not in str(e) or time.time() > deadline:
                raise
            time.sleep(0.01)


def test_vlinks_for_elements_outside_a_graph(r):
    gaussian_set(r, "g", count=30)
    # New items are linked into the live graph in the background, before any seal.
    assert linked(r, "g", "e0")
    r.execute_command("SAVE")
    assert r.execute_command("VLINKS", "g", "e0")
    # A new vector for a sealed item: linked into the live graph again.
    r.execute_command("VADD", "g", "VALUES", 8, *([1] * 8), "e0")
    assert linked(r, "g", "e0")
    # Indexes without a graph never have links.
    for spec in ("Flat", "IVF2,Flat"):
        key = "x" + spec
        gaussian_set(r, key, count=200, extra=("INDEX", spec))
        r.execute_command("SAVE")
        with pytest.raises(redis.ResponseError, match="has no graph.*HNSW"):
            r.execute_command("VLINKS", key, "e5")
        assert r.execute_command("VLINKS", key, "ghost") is None


def test_vlinks_skips_removed_neighbours_and_survives_restart(server, r):
    gaussian_set(r, "g", count=200, extra=("M", 4))
    r.execute_command("SAVE")
    before = r.execute_command("VLINKS", "g", "e7")
    gone = {n for level in before for n in level[:2]}
    for n in gone:
        r.execute_command("VREM", "g", n)
    after = r.execute_command("VLINKS", "g", "e7")
    assert len(after) == len(before)
    for old, new in zip(before, after):
        assert new == [n for n in old if n not in gone]
    server.restart()  # the graph comes back from the segment file, the tombstones from LMDB
    assert server.client().execute_command("VLINKS", "g", "e7") == after


def test_vlinks_scores_for_l2_sets_are_vsim_distances(r):
    gaussian_set(r, "l2", count=60, extra=("METRIC", "L2"))
    r.execute_command("SAVE")
    links = r.execute_command("VLINKS", "l2", "e2", "WITHSCORES")
    truth = as_dict(r.execute_command("VSIM", "l2", "ELE", "e2", "WITHSCORES", "COUNT", 100, "TRUTH"), float)
    level0 = as_dict(links[-1], float)
    assert level0 and all(s == pytest.approx(truth[n], rel=1e-5) and s > 0 for n, s in level0.items())


# ---------------------------------------------------------------------------------------------
# VADD key REDUCE dim (FP32 | VALUES ...) element


def redis_projection(v, out):
    n = len(v)
    scale = 1 / math.sqrt(n)
    return [sum((scale if bin(i & j).count("1") % 2 == 0 else -scale) * v[j] for j in range(n))
            for i in range(out)]


def cosine_score(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return (1 + dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))) / 2


def reduced_set(r, key="red", count=60, dim=32, reduced=8, seed=3):
    rng = random.Random(seed)
    vectors = {}
    for i in range(count):
        v = [rng.gauss(0, 1) for _ in range(dim)]
        vectors[f"r{i}"] = v
        blob = struct.pack(f"<{dim}f", *v)
        assert r.execute_command("VADD", key, "REDUCE", reduced, "FP32", blob, f"r{i}") == 1
    return vectors


def test_reduce_projects_as_redis_and_reports_it(rr):
    vectors = reduced_set(rr)
    assert rr.execute_command("VDIM", "red") == 8
    info = as_dict(rr.execute_command("VINFO", "red"))
    assert info["vector-dim"] == 8 and info["projection-input-dim"] == 32 and info["size"] == 60
    # VEMB answers as Redis does for a reduced set: the stored, reduced vector.
    for name in ("r0", "r17"):
        emb = [float(x) for x in rr.execute_command("VEMB", "red", name)]
        assert emb == pytest.approx(redis_projection(vectors[name], 8), rel=1e-4, abs=1e-5)
    rr.execute_command("VADD", "plain", "VALUES", 2, 1, 0, "a")
    assert as_dict(rr.execute_command("VINFO", "plain"))["projection-input-dim"] == 0


def test_reduce_applies_to_every_query_vector(r):
    vectors = reduced_set(r)
    reduced = {n: redis_projection(v, 8) for n, v in vectors.items()}
    q = [math.sin(i) for i in range(32)]
    pq = redis_projection(q, 8)
    expected = sorted(reduced, key=lambda n: -cosine_score(pq, reduced[n]))[:5]
    got = as_dict(r.execute_command("VSIM", "red", "VALUES", 32, *q, "WITHSCORES", "COUNT", 5, "TRUTH"), float)
    assert list(got) == expected
    for n, s in got.items():
        assert s == pytest.approx(cosine_score(pq, reduced[n]), abs=1e-5)
    blob = struct.pack("<32f", *q)
    assert r.execute_command("VSIM", "red", "FP32", blob, "COUNT", 5) == expected
    # As in Redis, a vector already of the reduced dimension is taken as it is.
    assert r.execute_command("VSIM", "red", "VALUES", 8, *pq, "COUNT", 5, "TRUTH") == expected
    assert r.execute_command("VSIM", "red", "ELE", expected[0], "COUNT", 1) == [expected[0]]
    with pytest.raises(redis.ResponseError, match="32.*projected to 8"):
        r.execute_command("VSIM", "red", "VALUES", 5, 1, 2, 3, 4, 5)
    # VWITHIN, VPREDICT and VHISTORY ATTENTION take input-dimension vectors too.
    within = r.execute_command("VWITHIN", "red", "VALUES", 32, *q, 0.0, "TRUTH")
    assert within[:5] == expected
    for name in vectors:
        r.execute_command("VSETATTR", "red", name, '{"category":"%s"}' % ("near" if name in expected else "far"))
    assert r.execute_command("VPREDICT", "red", "VALUES", 32, *q, "COUNT", 3)[0] == "near"
    hist = r.execute_command("VHISTORY", "red", 2, "r1", "r2", "ATTENTION", "VALUES", 32, *q, "COUNT", 3)
    assert len(hist) == 3 and "r1" not in hist and "r2" not in hist


def test_reduce_later_vadds_behave_as_redis(r):
    reduced_set(r, count=3)
    v32 = [float(i % 5 + 1) for i in range(32)]
    for args, pattern in [
        # Every later VADD repeats REDUCE with the set's dimension, and input-dimension values.
        (("VALUES", 32, *v32, "x"), "dimension mismatch.*REDUCE 8"),
        (("VALUES", 8, *v32[:8], "x"), "dimension mismatch.*REDUCE 8"),
        (("REDUCE", 4, "VALUES", 32, *v32, "x"), "projection dimension mismatch.*8"),
        (("REDUCE", 8, "VALUES", 16, *v32[:16], "x"), "input dimension mismatch for projection.*got 16.*32"),
    ]:
        with pytest.raises(redis.ResponseError, match=pattern):
            r.execute_command("VADD", "red", *args)
    assert r.execute_command("VCARD", "red") == 3
    assert r.execute_command("VADD", "red", "REDUCE", 8, "VALUES", 32, *v32, "r1") == 0  # replaced
    r.execute_command("VADD", "plain", "VALUES", 4, 1, 2, 3, 4, "a")
    with pytest.raises(redis.ResponseError, match="no projection"):
        r.execute_command("VADD", "plain", "REDUCE", 2, "VALUES", 4, 1, 2, 3, 4, "b")
    with pytest.raises(redis.ResponseError, match="dimension mismatch"):
        r.execute_command("VADD", "plain", "REDUCE", 2, "VALUES", 6, 1, 2, 3, 4, 5, 6, "b")
    for args, pattern in [
        (("REDUCE", 0, "VALUES", 4, 1, 2, 3, 4, "b"), "invalid vector specification.*REDUCE"),
        (("REDUCE", -2, "VALUES", 4, 1, 2, 3, 4, "b"), "invalid vector specification.*REDUCE"),
        (("REDUCE", "two", "VALUES", 4, 1, 2, 3, 4, "b"), "invalid vector specification.*REDUCE"),
        (("REDUCE", 5, "VALUES", 4, 1, 2, 3, 4, "b"), "invalid vector specification.*larger"),
        (("REDUCE", 4, "VALUES", 4, 1, 2, 3, 4, "b"), "REDUCE 4 .*smaller"),
        (("REDUCE", 2, "VALUES", 4, 1, 2, "nan", 4, "b"), "NaN"),
    ]:
        with pytest.raises(redis.ResponseError, match=pattern):
            r.execute_command("VADD", "new", *args)
        assert r.exists("new") == 0  # a refused first VADD creates nothing


def test_reduce_matrix_survives_restart_and_del(server, r):
    vectors = reduced_set(r, count=10)
    before = [float(x) for x in r.execute_command("VEMB", "red", "r4")]
    server.restart()  # SIGKILL: the set, and its matrix, come back from LMDB
    r = server.client()
    assert [float(x) for x in r.execute_command("VEMB", "red", "r4")] == before
    assert as_dict(r.execute_command("VINFO", "red"))["projection-input-dim"] == 32
    new = [float(i) - 10 for i in range(32)]
    r.execute_command("VADD", "red", "REDUCE", 8, "VALUES", 32, *new, "late")
    assert [float(x) for x in r.execute_command("VEMB", "red", "late")] == \
        pytest.approx(redis_projection(new, 8), rel=1e-4, abs=1e-5)
    q = vectors["r4"]
    assert r.execute_command("VSIM", "red", "VALUES", 32, *q, "COUNT", 1) == ["r4"]
    r.execute_command("SAVE")  # sealed into HNSW: queries are projected the same way
    assert r.execute_command("VSIM", "red", "VALUES", 32, *q, "COUNT", 1) == ["r4"]
    # DEL forgets the projection with the set: the name can hold a plain set again.
    assert r.delete("red") == 1
    assert r.execute_command("VADD", "red", "VALUES", 3, 1, 2, 3, "a") == 1
    assert r.execute_command("VDIM", "red") == 3
    assert as_dict(r.execute_command("VINFO", "red"))["projection-input-dim"] == 0


def test_reduce_through_redis_py(server):
    v = server.client().vset()
    rng = random.Random(9)
    data = {f"p{i}": [rng.uniform(-1, 1) for _ in range(16)] for i in range(20)}
    for name, vec in data.items():
        assert v.vadd("py", vec, name, reduce_dim=4) == 1
    assert v.vdim("py") == 4 and v.vinfo("py")["projection-input-dim"] == 16
    assert v.vemb("py", "p3") == pytest.approx(redis_projection(data["p3"], 4), rel=1e-4, abs=1e-5)
    assert v.vsim("py", data["p3"], count=1) == ["p3"]
    v3 = server.client(protocol=3).vset()
    assert v3.vinfo("py")["projection-input-dim"] == 16
    assert v3.vsim("py", data["p5"], with_scores=True, count=1) == {"p5": pytest.approx(1.0)}
