"""The commands clients send around the vector commands, RESP2 and RESP3, and their errors."""
import pytest
import redis

from conftest import as_dict


def test_connection_commands(r, r3):
    assert r.ping() is True
    assert r.echo("héllo") == "héllo"
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1"
    assert isinstance(r.client_id(), int)
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "mylib") == "OK"
    assert r.execute_command("SELECT", 0)
    with pytest.raises(redis.ResponseError, match="out of range"):
        r.execute_command("SELECT", 1)
    hello = r3.execute_command("HELLO", 3)
    assert hello["proto"] == 3 and hello["server"] == "redis"
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", 4)
    with pytest.raises(redis.AuthenticationError, match="without any password"):
        r.execute_command("AUTH", "secret")


def test_command_and_info(r):
    assert r.command_count() > 20
    commands = r.command()
    assert commands["vsim"]["arity"] == -4 and "write" in commands["vadd"]["flags"]
    info = r.info()
    assert info["redis_version"] == "8.0.0" and "lookalike_version" in info
    for section in ("server", "clients", "memory", "persistence", "stats", "keyspace"):
        assert isinstance(r.info(section), dict)
    assert r.info("clients")["connected_clients"] >= 1


def test_keyspace_commands(r):
    r.execute_command("VADD", "a:1", "VALUES", 2, 1, 0, "x")
    r.execute_command("VADD", "a:2", "VALUES", 2, 1, 0, "x")
    r.execute_command("VADD", "b:1", "VALUES", 2, 1, 0, "x")
    assert r.dbsize() == 3
    assert r.exists("a:1", "a:2", "nope") == 2
    assert r.type("a:1") == "vectorset" and r.type("nope") == "none"
    assert sorted(r.keys("a:*")) == ["a:1", "a:2"]
    assert sorted(r.keys("?:1")) == ["a:1", "b:1"]
    cursor, keys = r.scan(0, match="b*")
    assert cursor == 0 and keys == ["b:1"]
    assert sorted(r.scan_iter()) == ["a:1", "a:2", "b:1"]
    assert r.memory_usage("a:1") > 0
    assert r.delete("a:1", "nope") == 1
    assert r.unlink("a:2") == 1
    assert r.execute_command("VCARD", "a:1") == 0
    assert r.flushall() is True
    assert r.dbsize() == 0


def test_save_bgsave_and_debug_reload(r):
    for i in range(50):
        r.execute_command("VADD", "s", "VALUES", 3, i, 1, 2, f"e{i}")
    assert r.save() is True
    info = as_dict(r.execute_command("VINFO", "s"))
    assert info["mutable-items"] == 0 and info["sealed-segments"] == 1
    r.execute_command("VADD", "s", "VALUES", 3, 7, 7, 7, "late")
    assert r.bgsave()
    assert r.execute_command("DEBUG", "RELOAD") == "OK"
    assert r.execute_command("VCARD", "s") == 51
    assert r.execute_command("VSIM", "s", "ELE", "late", "COUNT", 1) == ["late"]


def test_unknown_commands_and_arity(r):
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCH'"):
        r.execute_command("NOSUCH", "a", "b")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'vcard'"):
        r.execute_command("VCARD")
    assert r.ping()


def test_pipeline_keeps_order_and_read_your_writes(r):
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.execute_command("VADD", "pipe", "VALUES", 2, 1, i + 1, f"e{i}", "METRIC", "L2")
    p.execute_command("VCARD", "pipe")
    p.execute_command("VSIM", "pipe", "VALUES", 2, 1, 500, "COUNT", 1)
    p.execute_command("VREM", "pipe", "e499")
    p.execute_command("VCARD", "pipe")
    out = p.execute()
    assert out[:500] == [1] * 500
    assert out[500] == 500
    assert out[501] == ["e499"]
    assert out[502] == 1 and out[503] == 499


def test_auth_required(tmp_path):
    from conftest import Server
    s = Server(tmp_path / "data", "--requirepass", "s3cret").start()
    try:
        r = s.client()
        with pytest.raises(redis.AuthenticationError):
            r.ping()
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            r.execute_command("VCARD", "x")
        with pytest.raises(redis.AuthenticationError, match="HELLO must be called"):
            s.client(protocol=3).ping()
        with pytest.raises(redis.AuthenticationError):
            s.client(password="wrong").ping()
        ok = s.client(password="s3cret")
        assert ok.ping()
        ok.execute_command("VADD", "k", "VALUES", 2, 1, 0, "e")
        assert s.client(password="s3cret", protocol=3).execute_command("VCARD", "k") == 1
        assert "NOAUTH" in s.cli("VCARD", "k")
        assert s.cli("-a", "s3cret", "--no-auth-warning", "VCARD", "k").strip() == "1"
    finally:
        assert s.stop() == 0


def test_max_clients(tmp_path):
    from conftest import Server
    s = Server(tmp_path / "data", "--max-clients", "2").start()
    try:
        a, b = s.client(), s.client()
        assert a.ping() and b.ping()
        c = s.client()
        with pytest.raises(redis.ConnectionError, match="max number of clients"):
            c.ping()
        assert a.ping()
    finally:
        s.stop()


def test_idle_timeout_closes_connections(tmp_path):
    import socket, time
    from conftest import Server
    s = Server(tmp_path / "data", "--timeout", "1").start()
    try:
        with socket.create_connection(("127.0.0.1", s.port)) as sock:
            time.sleep(2.5)
            sock.settimeout(2)
            assert sock.recv(10) == b""
    finally:
        s.stop()
