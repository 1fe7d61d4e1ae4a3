"""What Redis clients and tools send every day (issue 13): transactions, CONFIG, CLIENT, SLOWLOG,
MONITOR, TIME, LASTSAVE, ROLE, COMMAND DOCS and the INFO fields tools parse, through redis-py,
redis-cli and redis-benchmark."""
import subprocess
import time

import pytest
import redis


@pytest.mark.parametrize("protocol", [2, 3])
def test_default_transactional_pipeline(server, protocol):
    r = server.client(protocol=protocol)
    with r.pipeline() as p:  # transaction=True: MULTI … EXEC
        p.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
        p.execute_command("VADD", "s", "VALUES", 2, 0, 1, "b")
        p.execute_command("VCARD", "s")
        p.execute_command("VSIM", "s", "VALUES", 2, 1, 0, "COUNT", 1)
        assert p.execute() == [1, 1, 2, ["a"]]
    assert r.execute_command("VCARD", "s") == 2


def test_transaction_errors(server):
    reply, _ = server.raw(b"MULTI\r\nVCARD s\r\nNOSUCH x\r\nEXEC\r\nVCARD s\r\n")
    assert reply.startswith(b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH'"), reply
    assert b"-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n" in reply
    reply, _ = server.raw(b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nVADD s VALUES 1 1 a\r\nDISCARD\r\nVCARD s\r\n")
    assert reply == (b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n"
                     b"-ERR MULTI calls can not be nested\r\n+QUEUED\r\n+OK\r\n:0\r\n"), reply
    # A command that fails while running fails alone, as in Redis.
    reply, _ = server.raw(b"MULTI\r\nVADD s VALUES 2 1 0 a\r\nVADD s VALUES 3 1 0 0 b\r\nVCARD s\r\nEXEC\r\n")
    assert reply.startswith(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n-ERR vector dimension mismatch"), reply
    assert reply.endswith(b":1\r\n"), reply


def test_transactions_in_commandstats_and_slowlog(server):
    # As in Redis: MULTI and EXEC are calls of their own, and each command EXEC runs counts
    # (and is logged when slow) as if it had been sent alone.
    r = server.client()
    r.config_set("slowlog-log-slower-than", 0)
    r.slowlog_reset()
    with r.pipeline() as p:
        p.execute_command("VADD", "tx", "VALUES", 2, 1, 0, "a")
        p.execute_command("VCARD", "tx")
        assert p.execute() == [1, 1]
    stats = r.info("commandstats")
    assert stats["cmdstat_multi"]["calls"] == 1, stats
    assert stats["cmdstat_exec"]["calls"] == 1, stats
    assert stats["cmdstat_vadd"]["calls"] == 1, stats
    assert stats["cmdstat_vcard"]["calls"] == 1, stats
    commands = [(e["command"].decode() if isinstance(e["command"], bytes) else e["command"]) for e in r.slowlog_get(20)]
    assert any(c.startswith("VADD tx VALUES 2") for c in commands), commands
    assert any(c.startswith("VCARD tx") for c in commands), commands
    r.config_set("slowlog-log-slower-than", 10000)


def test_commands_refused_inside_a_transaction_are_recorded(server):
    # As in Redis: a command refused while MULTI queues it (wrong arity) is a rejected call of
    # that command and an error in errorstats, as it is outside a transaction, though EXEC never
    # runs it; EXEC, answering EXECABORT, is a failed call. The commands queued fine run never:
    # no call, no SLOWLOG line (the log is at 0 µs here, so any line would show).
    r = server.client()
    r.config_set("slowlog-log-slower-than", 0)
    r.slowlog_reset()
    with r.pipeline(transaction=True) as p:
        p.execute_command("VDIM", "tx")
        p.execute_command("VCARD", "tx", "extra")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            p.execute()
    stats = r.info("commandstats")
    assert stats["cmdstat_vcard"]["rejected_calls"] == 1 and stats["cmdstat_vcard"]["calls"] == 0, stats
    assert "cmdstat_vdim" not in stats, stats
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_exec"]["failed_calls"] == 1, stats
    errors = r.info("errorstats")
    assert errors["errorstat_ERR"]["count"] == 1 and errors["errorstat_EXECABORT"]["count"] == 1, errors
    commands = [(e["command"].decode() if isinstance(e["command"], bytes) else e["command"]) for e in r.slowlog_get(20)]
    assert not any(c.startswith("VDIM") for c in commands), commands
    assert any(c.startswith("EXEC") for c in commands), commands
    r.config_set("slowlog-log-slower-than", 10000)


def test_config_get_and_set(server):
    r = server.client()
    cfg = r.config_get("*")
    for name in ["maxclients", "save", "appendonly", "databases", "maxmemory", "port", "timeout",
                 "slowlog-log-slower-than", "lookalike-seal-threshold"]:
        assert name in cfg, name
    assert cfg["databases"] == "1" and int(cfg["port"]) == server.port
    assert r.config_get("max*") == {"maxclients": "10000", "maxmemory": "0", "maxmemory-policy": "noeviction"}
    assert r.config_set("slowlog-max-len", 5)
    assert r.config_get("slowlog-max-len") == {"slowlog-max-len": "5"}
    assert r.config_set("save", "")
    with pytest.raises(redis.ResponseError, match="only at start"):
        r.config_set("port", 1)
    with pytest.raises(redis.ResponseError, match="Unknown option"):
        r.config_set("no-such-option", 1)
    with pytest.raises(redis.ResponseError):
        r.config_set("slowlog-max-len", "many")
    assert r.config_get("slowlog-max-len") == {"slowlog-max-len": "5"}


def test_slowlog(server):
    r = server.client()
    r.config_set("slowlog-log-slower-than", 0)
    r.slowlog_reset()
    r.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
    r.execute_command("VSIM", "s", "ELE", "a")
    assert r.slowlog_len() >= 2
    entries = r.slowlog_get(10)
    assert entries[0]["id"] > entries[-1]["id"]
    commands = [e["command"] for e in entries]
    assert any((c.decode() if isinstance(c, bytes) else c).startswith("VSIM s ELE a") for c in commands), commands
    assert all(e["duration"] >= 0 for e in entries)
    r.config_set("slowlog-log-slower-than", -1)
    r.slowlog_reset()
    r.ping()
    assert r.slowlog_len() == 0


def test_client_list_and_kill(server):
    a = server.client(client_name="alpha")
    b = server.client(client_name="beta")
    a.ping(), b.ping()
    listed = {c["name"]: c for c in a.client_list()}
    assert {"alpha", "beta"} <= set(listed)
    assert listed["beta"]["cmd"] in ("ping", "client|setname", "client")
    assert a.client_info()["name"] == "alpha"
    assert a.client_kill_filter(_id=listed["beta"]["id"]) == 1
    time.sleep(0.2)
    assert "beta" not in {c["name"] for c in a.client_list()}
    assert a.ping()
    assert a.client_no_evict("on") and a.client_no_touch("on")


def test_time_lastsave_role_latency_docs(server):
    r = server.client()
    seconds, micros = r.time()
    assert abs(seconds - time.time()) < 5 and 0 <= micros < 1_000_000
    before = r.lastsave()
    time.sleep(1.1)
    r.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
    assert r.save()
    assert r.lastsave() > before
    # A primary with no replicas: its stream offset (the VADD's bytes), no replicas.
    offset = r.info("replication")["master_repl_offset"]
    assert offset > 0 and r.execute_command("ROLE") == ["master", offset, []]
    assert r.execute_command("LATENCY", "LATEST") == []
    # redis-py leaves COMMAND DOCS out on purpose; redis-cli shows it.
    docs = server.cli("COMMAND", "DOCS", "vadd").split("\n")
    assert docs[:2] == ["vadd", "summary"] and "vector set" in docs[2] and "vector_set" in docs


def test_info_fields_tools_parse(server):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
    r.execute_command("VSIM", "missing", "ELE", "a")
    with pytest.raises(redis.ResponseError):
        r.execute_command("VADD", "s", "VALUES", 3, 1, 0, 0, "b")
    info = r.info()
    assert info["blocked_clients"] == 0 and info["role"] == "master"
    assert info["used_memory"] > 0 and info["used_memory_rss"] > 0 and info["used_memory"] != info["used_memory_rss"]
    assert info["used_memory_peak"] >= info["used_memory"]
    assert "instantaneous_ops_per_sec" in info and info["keyspace_misses"] >= 1 and info["keyspace_hits"] >= 1
    assert info["errorstat_ERR"]["count"] >= 1
    stats = r.info("commandstats")
    assert stats["cmdstat_vadd"]["calls"] == 2 and stats["cmdstat_vadd"]["failed_calls"] == 1


def test_monitor_with_redis_cli(server):
    monitor = subprocess.Popen(["redis-cli", "-p", str(server.port), "MONITOR"], stdout=subprocess.PIPE, text=True)
    try:
        assert monitor.stdout.readline().strip() == "OK"
        r = server.client()
        r.execute_command("VCARD", "watched")
        line = monitor.stdout.readline()
        while "VCARD" not in line:
            line = monitor.stdout.readline()
        assert '"VCARD" "watched"' in line and "[0 127.0.0.1:" in line
    finally:
        monitor.kill()
        monitor.wait()


def test_redis_benchmark_and_stat(server):
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", "200", "-c", "4", "-q", "-t", "ping"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Could not fetch server CONFIG" not in out.stdout + out.stderr
    assert "PING" in out.stdout
    stat = subprocess.run(["timeout", "2.5", "stdbuf", "-oL", "redis-cli", "-p", str(server.port), "--stat", "-i", "0.5"],
                          capture_output=True, text=True)
    rows = [line.split() for line in stat.stdout.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert rows, stat.stdout
    # keys, mem, clients, blocked, requests, connections: blocked is a number, not garbage
    assert all(row[3].isdigit() for row in rows), stat.stdout


# Vector-set semantics as Redis documents them.
def vinfo(r, key):
    reply = r.execute_command("VINFO", key)
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))


def test_key_vanishes_with_its_last_element(server):
    r = server.client()
    assert r.execute_command("VADD", "k", "VALUES", 2, 1, 0, "a") == 1
    assert r.execute_command("VREM", "k", "a") == 1
    assert r.execute_command("EXISTS", "k") == 0 and r.execute_command("TYPE", "k") == "none"
    assert r.execute_command("DBSIZE") == 0 and r.execute_command("KEYS", "*") == []
    assert r.execute_command("VADD", "k", "VALUES", 3, 1, 0, 0, "b") == 1
    assert r.execute_command("VDIM", "k") == 3
    # Removal of the last element and re-creation pipelined back to back (one group commit):
    # the VADD after the drop creates the set anew, and no acknowledged write is lost.
    for i in range(20):
        p = r.pipeline(transaction=False)
        p.execute_command("VREM", "k", "b" if i == 0 else f"x{i - 1}")
        p.execute_command("VADD", "k", "VALUES", 3, 1, i, 0, f"x{i}")
        assert p.execute() == [1, 1]
        assert r.execute_command("VCARD", "k") == 1 and r.execute_command("VISMEMBER", "k", f"x{i}") == 1
    r.execute_command("VADD", "k", "VALUES", 3, 1, 2, 0, "x49")
    server.restart()
    r = server.client()
    assert r.execute_command("VCARD", "k") == 2 and r.execute_command("VISMEMBER", "k", "x49") == 1


def test_attributes_as_given_and_zero_vectors(server):
    r = server.client()
    assert r.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a", "SETATTR", "plain text") == 1
    assert r.execute_command("VADD", "s", "VALUES", 2, 1, 1, "b", "SETATTR", '{"z": 1,  "a": 2}') == 1
    assert r.execute_command("VGETATTR", "s", "a") == "plain text"
    assert r.execute_command("VGETATTR", "s", "b") == '{"z": 1,  "a": 2}'
    assert r.execute_command("VSIM", "s", "ELE", "a", "FILTER", ".z == 1") == ["b"]
    assert r.execute_command("VADD", "s", "VALUES", 2, 0, 0, "zero") == 1
    scores = dict(zip(*[iter(r.execute_command("VSIM", "s", "ELE", "zero", "WITHSCORES"))] * 2))
    assert float(scores["a"]) == pytest.approx(0.5)
    assert r.execute_command("VSIM", "s", "VALUES", 2, 0, 0, "COUNT", 3) != []


def test_quantization_words(server):
    r = server.client()
    assert r.execute_command("VADD", "q", "VALUES", 2, 1, 0, "a", "Q8") == 1
    info = vinfo(r, "q")
    assert info["quant-type"] == "int8" and info["hnsw-m"] == 32
    assert r.execute_command("VADD", "q", "VALUES", 2, 0, 1, "b", "Q8") == 1
    with pytest.raises(redis.ResponseError, match="quantization mismatch"):
        r.execute_command("VADD", "q", "VALUES", 2, 0, 1, "c", "NOQUANT")
    assert r.execute_command("VADD", "f", "VALUES", 2, 1, 0, "a", "NOQUANT", "M", 16) == 1
    assert vinfo(r, "f")["quant-type"] == "f32" and vinfo(r, "f")["hnsw-m"] == 16
    with pytest.raises(redis.ResponseError, match="BIN is not supported"):
        r.execute_command("VADD", "b", "VALUES", 2, 1, 0, "a", "BIN")
    assert r.execute_command("EXISTS", "b") == 0
    # redis-py's vset() API, as a Redis 8 user writes it.
    from redis.commands.vectorset.commands import QuantizationOptions
    assert r.vset().vadd("viaapi", [0.1, 0.9], "e1", quantization=QuantizationOptions.Q8) == 1
    assert vinfo(r, "viaapi")["quant-type"] == "int8"


def test_redis_py_5_default_pipeline_and_admin_calls(server):
    from pathlib import Path
    py5 = Path(__file__).resolve().parents[2] / ".build" / "py-redis5" / "bin" / "python"
    if not py5.exists():
        pytest.skip("Tools/test.sh installs redis-py 5 in .build/py-redis5")
    code = f"""
import redis
assert redis.__version__.startswith("5."), redis.__version__
r = redis.Redis(port={server.port}, decode_responses=True)
with r.pipeline() as p:
    p.execute_command("VADD", "p5", "VALUES", 2, 1, 0, "a")
    p.execute_command("VCARD", "p5")
    assert p.execute() == [1, 1]
assert r.config_get("maxclients") == {{"maxclients": "10000"}}
assert any(c["id"] for c in r.client_list())
assert r.slowlog_len() >= 0 and r.time()[0] > 0 and r.lastsave()
assert r.info()["role"] == "master"
print("ok")
"""
    out = subprocess.run([str(py5), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_redis_benchmark_with_vector_commands_and_cli_latency(server):
    r = server.client()
    r.execute_command("VADD", "bench", "VALUES", 3, 1, 0, 0, "seed")
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", "300", "-c", "4", "-r", "1000", "-q",
                          "VADD", "bench", "VALUES", "3", "1", "__rand_int__", "0", "e__rand_int__"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "requests per second" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-n", "300", "-c", "4", "-q",
                          "VSIM", "bench", "VALUES", "3", "1", "2", "0", "COUNT", "5"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "requests per second" in out.stdout, out.stdout + out.stderr
    assert r.execute_command("VCARD", "bench") > 10
    latency = subprocess.run(["timeout", "2", "stdbuf", "-oL", "redis-cli", "-p", str(server.port), "--latency", "--raw"],
                             capture_output=True, text=True)
    fields = latency.stdout.split()
    assert len(fields) >= 4 and all(f.replace(".", "").isdigit() for f in fields[:4]), latency.stdout


def test_redis_exporter_scrapes_the_server(server):
    import shutil
    import socket
    import urllib.request
    exporter = shutil.which("prometheus-redis-exporter")
    if exporter is None:
        pytest.skip("Tools/setup.sh installs prometheus-redis-exporter")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server.client().execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
    p = subprocess.Popen([exporter, "-redis.addr", f"redis://127.0.0.1:{server.port}",
                          "-web.listen-address", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        text = ""
        for _ in range(50):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        lines = {l.split()[0]: l.split()[-1] for l in text.splitlines() if l and not l.startswith("#")}
        assert lines.get("redis_up") == "1", text[:2000]
        assert float(lines["redis_connected_clients"]) >= 1
        assert float(lines["redis_commands_processed_total"]) >= 1
        assert 'redis_db_keys{db="db0"}' in lines and float(lines['redis_db_keys{db="db0"}']) == 1
    finally:
        p.kill()
        p.wait()
