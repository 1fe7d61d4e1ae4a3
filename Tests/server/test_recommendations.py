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
