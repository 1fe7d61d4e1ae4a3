"""Replication without Sentinel: full sync carries the snapshot (segment files included), the
stream carries every kind of write, a replica is read-only and answers reads as its primary
does, WAIT counts acknowledgements, a replica that reconnects resumes from the backlog, one
that fell behind it syncs in full, REPLICAOF NO ONE promotes; and pub/sub, CLIENT KILL TYPE
and Sentinel's failover transaction."""
import json
import random
import socket
import time

import pytest
import redis

from conftest import Server

DIM = 12


def vector(i, version=0):
    rnd = random.Random(i * 7919 + version)
    return [rnd.uniform(-1, 1) for _ in range(DIM)]


def until(what, check, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def snapshot_of(c, key, count=20000):
    """Every element of a collection among the names the tests write (k0…, r0…), with its
    vector and attributes; and the collection's size."""
    names = [f"k{i}" for i in range(count)] if key == "items" else [f"r{i}" for i in range(count)]
    p = c.pipeline(transaction=False)
    for name in names:
        p.execute_command("VEMB", key, name)
        p.execute_command("VGETATTR", key, name)
    replies = p.execute()
    out = {}
    for name, emb, attrs in zip(names, replies[::2], replies[1::2]):
        if emb is not None:
            out[name] = ([round(float(x), 5) for x in emb], attrs)
    assert len(out) == c.execute_command("VCARD", key)
    return out


def write_everything(c, start, n):
    """Adds, updates, attribute changes, removals, a dropped collection, a REDUCE collection."""
    p = c.pipeline(transaction=False)
    for i in range(start, start + n):
        p.execute_command("VADD", "items", "VALUES", DIM, *vector(i), f"k{i}", "SETATTR", json.dumps({"i": i}))
    p.execute()
    for i in range(start, start + n, 10):
        c.execute_command("VADD", "items", "VALUES", DIM, *vector(i, 1), f"k{i}")  # new vector, attributes kept
        c.execute_command("VSETATTR", "items", f"k{i + 1}", json.dumps({"i": i + 1, "changed": True}))
        c.execute_command("VREM", "items", f"k{i + 2}")
    c.execute_command("VADD", f"gone{start}", "VALUES", 3, 1, 2, 3, "x")
    c.execute_command("DEL", f"gone{start}")
    c.execute_command("VADD", "reduced", "REDUCE", 4, "VALUES", DIM, *vector(start), f"r{start}")


@pytest.fixture
def primary(tmp_path):
    s = Server(tmp_path / "primary", "--seal-threshold", "200", "--repl-backlog-mb", "1").start()
    yield s
    s.stop()


def test_full_sync_stream_and_read_only(primary, tmp_path):
    c = primary.client()
    write_everything(c, 0, 1000)
    replica = Server(tmp_path / "replica").start()
    try:
        r = replica.client()
        assert r.execute_command("REPLICAOF", "127.0.0.1", primary.port) in ("OK", True)
        until("the replica online", lambda: r.info("replication")["master_link_status"] == "up")
        # Its data came as files: the primary's sealed segments, not rebuilt on the replica.
        assert list((tmp_path / "replica" / "segments").glob("c*/seg-*.faiss"))
        write_everything(c, 1000, 500)  # through the stream
        assert c.execute_command("WAIT", 1, 10000) == 1
        info = r.info("replication")
        assert info["role"] == "slave" and info["master_link_status"] == "up"
        assert info["master_port"] == primary.port and info["slave_read_only"] == 1
        assert info["slave_repl_offset"] == c.info("replication")["master_repl_offset"]
        for key in ("items", "reduced"):
            assert snapshot_of(r, key) == snapshot_of(c, key)
        assert sorted(r.keys("*")) == sorted(c.keys("*")) == ["items", "reduced"]
        # Exact search (TRUTH): the same names; scores equal to float precision (the replica's
        # segments are sealed on its own schedule, so sums run in another order).
        query = ["VSIM", "items", "VALUES", DIM, *vector(3), "COUNT", 20, "WITHSCORES", "TRUTH"]
        mine, theirs = r.execute_command(*query), c.execute_command(*query)
        assert mine[::2] == theirs[::2]
        assert all(abs(float(a) - float(b)) < 1e-5 for a, b in zip(mine[1::2], theirs[1::2]))
        for write in (["VADD", "items", "VALUES", DIM, *vector(1), "x"], ["VREM", "items", "k5"],
                      ["VSETATTR", "items", "k5", "{}"], ["DEL", "items"], ["FLUSHALL"]):
            with pytest.raises(redis.exceptions.ReadOnlyError):
                r.execute_command(*write)
        assert r.execute_command("VCARD", "items") == c.execute_command("VCARD", "items")
        role = c.execute_command("ROLE")
        assert role[0] == "master" and role[2][0][1] == str(replica.port)
        assert r.execute_command("ROLE")[:3] == ["slave", "127.0.0.1", primary.port]
        # Promotion: the replica takes writes of its own.
        assert r.execute_command("REPLICAOF", "NO", "ONE") in ("OK", True)
        assert r.info("replication")["role"] == "master"
        r.execute_command("VADD", "items", "VALUES", DIM, *vector(9999), "mine")
        assert r.execute_command("VCARD", "items") == c.execute_command("VCARD", "items") + 1
    finally:
        replica.stop()


def test_reconnect_resumes_from_the_backlog_or_syncs_in_full(primary, tmp_path):
    c = primary.client()
    write_everything(c, 0, 300)
    replica = Server(tmp_path / "replica", "--replicaof", f"127.0.0.1 {primary.port}").start()
    try:
        until("the replica online", lambda: replica.client().info("replication")["master_link_status"] == "up")
        assert c.execute_command("WAIT", 1, 10000) == 1
        stats = c.info("stats")
        assert stats["sync_full"] == 1
        replica.kill9()
        write_everything(c, 300, 100)  # well inside the 1 MiB backlog
        replica.start()
        until("the replica back", lambda: replica.client().info("replication")["master_link_status"] == "up")
        assert c.execute_command("WAIT", 1, 10000) == 1
        stats = c.info("stats")
        assert (stats["sync_full"], stats["sync_partial_ok"]) == (1, 1)
        assert snapshot_of(replica.client(), "items") == snapshot_of(c, "items")

        replica.kill9()
        before = c.info("replication")["master_repl_offset"]
        write_everything(c, 400, 12000)  # more than the backlog holds
        info = c.info("replication")
        assert info["master_repl_offset"] - before > 1 << 20 >= info["repl_backlog_histlen"] - 65536
        replica.start()
        until("the replica back", lambda: replica.client().info("replication")["master_link_status"] == "up")
        assert c.execute_command("WAIT", 1, 20000) == 1
        stats = c.info("stats")
        assert (stats["sync_full"], stats["sync_partial_ok"], stats["sync_partial_err"]) == (2, 1, 1)
        assert "fell behind" not in primary.log.read_text()
        assert snapshot_of(replica.client(), "items") == snapshot_of(c, "items")
    finally:
        replica.stop()


def test_wait_without_replicas_times_out_with_zero(primary):
    c = primary.client()
    c.execute_command("VADD", "items", "VALUES", 2, 1, 2, "a")
    assert c.execute_command("WAIT", 0, 0) == 0
    assert c.execute_command("WAIT", 1, 100) == 0


def test_pubsub_resp2_and_resp3(primary):
    for protocol in (2, 3):
        sub = primary.client(protocol=protocol).pubsub()
        sub.subscribe("news")
        sub.psubscribe("n*")
        until("subscriptions", lambda: primary.client().execute_command("PUBSUB", "NUMSUB", "news")[1] == 1)
        assert primary.client().publish("news", "hello") == 2  # the channel and the pattern
        got = []
        until("both messages", lambda: (got.append(sub.get_message(timeout=0.1)) or True) and
              len([m for m in got if m and m["type"] in ("message", "pmessage")]) == 2)
        messages = sorted((m["type"], m["channel"], m["data"]) for m in got if m and m["type"] in ("message", "pmessage"))
        assert messages == [("message", "news", "hello"), ("pmessage", "news", "hello")]
        sub.close()
    assert primary.client().publish("nobody", "x") == 0


def resp(*words):
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def read_until_quiet(s, quiet=0.5):
    """Bytes received until the connection is closed or stays quiet; and whether it closed."""
    s.settimeout(quiet)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        if not chunk:
            return data, True
        data += chunk


def test_sentinel_failover_transaction_and_client_kill_types(primary):
    normal = socket.create_connection(("127.0.0.1", primary.port))
    normal.sendall(resp(b"PING"))
    assert read_until_quiet(normal) == (b"+PONG\r\n", False)
    subscriber = socket.create_connection(("127.0.0.1", primary.port))
    subscriber.sendall(resp(b"SUBSCRIBE", b"__sentinel__:hello"))
    assert read_until_quiet(subscriber)[0].startswith(b"*3\r\n$9\r\nsubscribe")
    flags = [c["flags"] for c in primary.client().client_list()]
    assert "P" in flags
    # Sentinel's sequence on a replica it promotes: every answer in EXEC's array (Redis does not
    # roll back; Sentinel ignores the answers); CONFIG REWRITE fails without a config file.
    sentinel = socket.create_connection(("127.0.0.1", primary.port))
    sentinel.sendall(resp(b"MULTI") + resp(b"SLAVEOF", b"NO", b"ONE") + resp(b"CONFIG", b"REWRITE")
                     + resp(b"CLIENT", b"KILL", b"TYPE", b"normal") + resp(b"CLIENT", b"KILL", b"TYPE", b"pubsub")
                     + resp(b"EXEC"))
    reply, closed = read_until_quiet(sentinel)
    assert not closed
    assert reply.startswith(b"+OK\r\n" + b"+QUEUED\r\n" * 4 + b"*4\r\n+OK\r\n-ERR"), reply
    assert reply.endswith(b":1\r\n:1\r\n"), reply  # one normal client, one subscriber killed
    assert read_until_quiet(normal)[1] and read_until_quiet(subscriber)[1]
    c = primary.client()
    assert c.execute_command("CLIENT", "KILL", "TYPE", "replica") == 0
    with pytest.raises(redis.ResponseError):
        c.execute_command("CLIENT", "KILL", "TYPE", "bogus")
    for s in (normal, subscriber, sentinel):
        s.close()


def test_replica_authenticates_to_a_primary_with_a_password(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    primary = Server(tmp_path / "primary", "--requirepass-file", str(secret)).start()
    replica = Server(tmp_path / "replica", "--requirepass-file", str(secret), "--masterauth-file", str(secret),
                     "--replicaof", f"127.0.0.1 {primary.port}").start()
    try:
        c, r = primary.client(password="s3cret"), replica.client(password="s3cret")
        c.execute_command("VADD", "items", "VALUES", 2, 1, 2, "a")
        until("the replica online", lambda: r.info("replication")["master_link_status"] == "up")
        assert c.execute_command("WAIT", 1, 10000) == 1
        assert r.execute_command("VCARD", "items") == 1
    finally:
        replica.stop()
        primary.stop()
