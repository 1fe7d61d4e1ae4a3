"""Hostile input (issue 17): one command must not crash, hang or starve the server, bad commands
change nothing, and names are byte strings. Each test here failed before its fix."""
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from conftest import Server

BIG = "9223372036854775807"


def rss_bytes(server):
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def alive(server):
    r = server.client()
    assert r.ping()
    return r


# 1. Arithmetic overflow on a VALUES count.
@pytest.mark.parametrize("command", [
    ["VADD", "s", "VALUES", BIG, "1", "a"],
    ["VSIM", "s", "VALUES", BIG, "1"],
    ["VSIM", "missing", "VALUES", BIG, "1"],
    ["VPREDICT", "s", "VALUES", BIG, "1"],
    ["VWITHIN", "s", "VALUES", BIG, "1", "0.5"],
    ["VHISTORY", "s", "1", "a", "ATTENTION", "VALUES", BIG, "1"],
])
def test_huge_values_count_is_an_error(server, command):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 3, 1, 2, 3, "a")
    with pytest.raises(redis.ResponseError, match="VALUES"):
        r.execute_command(*command)
    assert alive(server).execute_command("VCARD", "s") == 1


# 2. abs(Int.min).
def test_vrandmember_most_negative_count(server):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 3, 1, 2, 3, "a")
    reply = r.execute_command("VRANDMEMBER", "s", "-9223372036854775808")
    assert reply == ["a"] * len(reply) and len(reply) >= 1
    assert alive(server).execute_command("VCARD", "s") == 1


# 3. FILTER depth: the parser and the evaluator must not overflow the stack.
@pytest.mark.parametrize("expression", [
    "(" * 30000 + ".a" + ")" * 30000,
    "not " * 100000 + ".a",
    "-" * 100000 + ".a",
    "[" * 100000 + "1" + "]" * 100000,
    "2" + " ** 2" * 100000,
    "1" + " + 1" * 100000 + " > 0",
    ".a == 1" + " or .a == 1" * 5000,
])
def test_filter_too_deep_or_long_is_an_error(server, expression):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 3, 1, 2, 3, "a", "SETATTR", '{"a": 1}')
    for key in ["s", "missing"]:
        with pytest.raises(redis.ResponseError, match="FILTER"):
            r.execute_command("VSIM", key, "ELE", "a", "FILTER", expression)
    assert alive(server).execute_command("VSIM", "s", "ELE", "a", "FILTER", ".a == 1") == ["a"]


def test_filter_within_limits_still_works(server):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 3, 1, 2, 3, "a", "SETATTR", '{"a": 1}')
    nested = "(" * 50 + ".a == 1" + ")" * 50
    assert r.execute_command("VSIM", "s", "ELE", "a", "FILTER", nested) == ["a"]
    chain = ".a == 1" + " or .a == 2" * 100
    assert r.execute_command("VSIM", "s", "ELE", "a", "FILTER", chain) == ["a"]


# 4. KEYS / SCAN MATCH must not backtrack exponentially, nor block other clients.
def test_keys_glob_is_not_exponential(server):
    r = server.client()
    name = "a" * 300
    r.execute_command("VADD", name, "VALUES", 1, 1, "x")
    pattern = "*a" * 12 + "*b"
    fast = server.client()
    fast.connection_pool.connection_kwargs["socket_timeout"] = 10
    assert fast.execute_command("KEYS", pattern) == []
    assert list(fast.execute_command("SCAN", 0, "MATCH", pattern)) in ([0, []], ["0", []])
    assert fast.execute_command("KEYS", "*a*a") == [name]
    assert fast.execute_command("KEYS", "a?a*[a-c]") == [name]


# 5. Before AUTH: small frames only, and a client that never reads cannot grow memory.
def test_unauthenticated_big_frame_is_refused(tmp_path):
    s = Server(tmp_path / "data", "--requirepass", "pw").start()
    try:
        reply, closed = s.raw(b"*1\r\n$300000000\r\n", wait=2)
        assert reply.startswith(b"-ERR Protocol error: unauthenticated"), reply
        assert closed
        reply, closed = s.raw(b"*100\r\n", wait=2)
        assert reply.startswith(b"-ERR Protocol error: unauthenticated"), reply
        # After AUTH the usual limits apply.
        big = b"x" * 100000
        reply, _ = s.raw(b"AUTH pw\r\n*2\r\n$4\r\nECHO\r\n$100000\r\n" + big + b"\r\n", wait=2)
        assert reply.startswith(b"+OK\r\n$100000\r\n"), reply[:40]
    finally:
        s.stop()


def flood(port, payload, seconds):
    """Sends `payload` repeatedly for `seconds` without reading; returns bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    sent, deadline = 0, time.time() + seconds
    try:
        while time.time() < deadline:
            try:
                sent += sock.send(payload)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
    finally:
        return sock, sent


def test_unauthenticated_flood_does_not_grow_memory(tmp_path):
    s = Server(tmp_path / "data", "--requirepass", "pw").start()
    try:
        before = rss_bytes(s)
        socks = [flood(s.port, b"PING\r\n" * 100000, 3)[0] for _ in range(3)]
        grown = rss_bytes(s) - before
        assert grown < 100 << 20, f"RSS grew by {grown >> 20} MiB"
        for sock in socks:
            sock.close()
        r = s.client(password="pw")
        assert r.ping()
        info = r.info("stats")
        assert info["client_output_buffer_limit_disconnections"] >= 1 or grown < 20 << 20
    finally:
        s.stop()


# 6. After AUTH: a pipeline whose replies are never read is disconnected at the output limit.
def test_unread_replies_are_bounded(tmp_path):
    s = Server(tmp_path / "data", "--client-output-buffer-limit", str(8 << 20)).start()
    try:
        r = s.client()
        p = r.pipeline(transaction=False)
        attrs = '{"text": "' + "y" * 500 + '"}'
        for i in range(2000):
            p.execute_command("VADD", "big", "VALUES", 2, 1, i, f"e{i}", "SETATTR", attrs)
        p.execute()
        before = rss_bytes(s)
        command = b"*6\r\n$4\r\nVSIM\r\n$3\r\nbig\r\n$3\r\nELE\r\n$2\r\ne1\r\n$5\r\nCOUNT\r\n$4\r\n2000\r\n"
        command = command.replace(b"*6", b"*7") + b"$11\r\nWITHATTRIBS\r\n"
        sock, _ = flood(s.port, command * 100, 5)
        time.sleep(1)
        grown = rss_bytes(s) - before
        assert grown < 200 << 20, f"RSS grew by {grown >> 20} MiB"
        sock.close()
        info = r.info("stats")
        assert info["client_output_buffer_limit_disconnections"] >= 1
        assert r.execute_command("VCARD", "big") == 2000
    finally:
        s.stop()


def test_slow_reader_gets_every_reply(server):
    """Backpressure, not loss: a client that reads slowly still gets every reply in order."""
    r = server.client()
    attrs = '{"text": "' + "y" * 200 + '"}'
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.execute_command("VADD", "s", "VALUES", 2, 1, i, f"e{i}", "SETATTR", attrs)
    p.execute()
    p = r.pipeline(transaction=False)
    for i in range(300):
        p.execute_command("VSIM", "s", "ELE", f"e{i}", "COUNT", 500, "WITHATTRIBS")
    replies = p.execute()
    assert len(replies) == 300 and all(len(x) == 1000 for x in replies)


# 7. Names are byte strings.
def test_names_are_binary_safe(server):
    r = server.client(decode_responses=False)
    assert r.execute_command("VADD", b"u", "VALUES", 2, 1, 0, b"\xff") == 1
    assert r.execute_command("VADD", b"u", "VALUES", 2, 0, 1, b"\xfe") == 1
    assert r.execute_command("VCARD", b"u") == 2
    assert sorted(r.execute_command("VSIM", b"u", "VALUES", 2, 1, 0)) == [b"\xfe", b"\xff"]
    assert r.execute_command("VSIM", b"u", "VALUES", 2, 1, 0, "COUNT", 1) == [b"\xff"]
    assert r.execute_command("VISMEMBER", b"u", b"\xfd") == 0
    # A valid UTF-8 name that looks like the server's own escape stays itself.
    tricky = "\U0010ff80x".encode()
    assert r.execute_command("VADD", b"u", "VALUES", 2, 1, 1, tricky) == 1
    assert r.execute_command("VSIM", b"u", "VALUES", 2, 1, 1, "COUNT", 1) == [tricky]
    assert r.execute_command("VCARD", b"u") == 3

    assert r.execute_command("VADD", b"c\xff", "VALUES", 2, 1, 0, b"a") == 1
    assert r.execute_command("DEL", b"c\x80") == 0
    assert r.execute_command("EXISTS", b"c\xff") == 1
    assert sorted(r.execute_command("KEYS", b"c*")) == [b"c\xff"]
    assert r.execute_command("KEYS", b"c\xff") == [b"c\xff"]
    assert r.execute_command("SCAN", 0, "MATCH", b"c?")[1] == [b"c\xff"]
    assert r.execute_command("VRANDMEMBER", b"c\xff") == b"a"

    server.restart()
    r = server.client(decode_responses=False)
    assert r.execute_command("VCARD", b"u") == 3
    assert r.execute_command("VSIM", b"u", "VALUES", 2, 0, 1, "COUNT", 1) == [b"\xfe"]
    assert r.execute_command("DEL", b"c\xff") == 1


# 8. FLUSHALL / FLUSHDB with a bad argument change nothing.
@pytest.mark.parametrize("command", [["FLUSHALL", "BOGUS"], ["FLUSHDB", "nonsense"], ["FLUSHALL", "SYNC", "x"]])
def test_flush_with_bad_argument_changes_nothing(server, command):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 2, 1, 0, "a")
    with pytest.raises(redis.ResponseError):
        r.execute_command(*command)
    assert r.execute_command("VCARD", "s") == 1
    assert r.execute_command("FLUSHALL", "ASYNC") == "OK" or True
    assert r.execute_command("EXISTS", "s") == 0


# 9. A rejected VADD creates nothing.
@pytest.mark.parametrize("bad", [
    ["VALUES", 2, "nan", 1, "a"],
    ["VALUES", 2, 1, "inf", "a"],
    ["VALUES", 2, 1, 1, "a", "SETATTR", "{not json"],
    ["VALUES", 2, 1, 1, "x" * 600],
    ["VALUES", 2, 1, 1, ""],
    ["VALUES", 2, 1, 1, "a", "INDEX", "NoSuchIndex"],
])
def test_rejected_vadd_creates_no_collection(server, bad):
    r = server.client()
    with pytest.raises(redis.ResponseError):
        r.execute_command("VADD", "fresh", *bad)
    assert r.execute_command("EXISTS", "fresh") == 0
    assert r.execute_command("VADD", "fresh", "VALUES", 3, 1, 2, 3, "a") == 1
    assert r.execute_command("VDIM", "fresh") == 3


# 10. HELLO with a syntax error after AUTH must not authenticate.
def test_hello_syntax_error_does_not_authenticate(tmp_path):
    s = Server(tmp_path / "data", "--requirepass", "pw").start()
    try:
        reply, _ = s.raw(b"HELLO 3 AUTH default pw BOGUS\r\nDBSIZE\r\n", wait=1)
        assert reply.startswith(b"-ERR"), reply
        assert b"NOAUTH" in reply.split(b"\r\n", 1)[1], reply
        reply, _ = s.raw(b"HELLO 3 AUTH default pw SETNAME x\r\nDBSIZE\r\n", wait=1)
        assert reply.endswith(b":0\r\n"), reply
    finally:
        s.stop()


# 11. A seal that fails (no room for the segment) leaves nothing behind and is reported.
def test_failed_seal_leaves_no_temporaries_and_save_reports_it(server):
    r = server.client()
    p = r.pipeline(transaction=False)
    for i in range(300):
        p.execute_command("VADD", "s", "VALUES", 3, 1, i, 2, f"e{i}")
    p.execute()
    segments = Path(server.data) / "segments"
    segments.mkdir(exist_ok=True)
    blockers = [segments / f"c{n}" for n in range(1, 4)]
    for b in blockers:
        if b.is_dir():
            os.rmdir(b)
        b.write_text("not a folder")  # the segment cannot be written, as on a full disk
    with pytest.raises(redis.ResponseError, match="indexing 's' failed"):
        r.execute_command("SAVE")
    assert r.execute_command("VCARD", "s") == 300
    assert r.execute_command("VSIM", "s", "ELE", "e7", "COUNT", 1) == ["e7"]
    info = dict(zip(*[iter(r.execute_command("VINFO", "s"))] * 2))
    assert "failed" in info["index-state"]
    assert not list(segments.rglob("*.tmp"))
    for b in blockers:
        b.unlink()
    assert r.execute_command("SAVE") in (True, "OK")
    info = dict(zip(*[iter(r.execute_command("VINFO", "s"))] * 2))
    assert info["sealed-segments"] == 1 and info["index-state"] == "indexed"


def test_index_too_small_to_train_stays_exact(server):
    r = server.client()
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.execute_command("VADD", "ivf", "VALUES", 4, 1, i, 2, i % 7, f"e{i}", "INDEX", "IVF1024,SQ8")
    p.execute()
    assert r.execute_command("SAVE") in (True, "OK")
    info = dict(zip(*[iter(r.execute_command("VINFO", "ivf"))] * 2))
    assert info["sealing-segments"] == 0 and info["mutable-items"] == 200
    assert "exact" in info["index-state"] and "39936" in info["index-state"]
    assert r.execute_command("VSIM", "ivf", "ELE", "e9", "COUNT", 1) == ["e9"]
    server.restart()
    r = server.client()
    assert r.execute_command("VCARD", "ivf") == 200
    assert r.execute_command("SAVE") in (True, "OK")


# 11. A killed batch job leaves no partial export, and STATUS says it was cut short.
def test_killed_batch_job_leaves_no_partial_export(server):
    r = server.client()
    import random
    rng = random.Random(7)
    p = r.pipeline(transaction=False)
    import struct
    for i in range(20000):
        p.execute_command("VADD", "big", "FP32", struct.pack("64f", *[rng.random() for _ in range(64)]), f"e{i}")
        if i % 2000 == 1999:
            p.execute()
            p = r.pipeline(transaction=False)
    p.execute()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"VNEWNEIGHBORS big SINCE ID 0 COUNT 50 INCLUDE-NEW OUTPUT out.jsonl\r\n")
    deadline = time.time() + 20
    while time.time() < deadline:
        status = dict(zip(*[iter(r.execute_command("VNEWNEIGHBORS", "big", "STATUS"))] * 2))
        if status["running"] == 1 and status["rows-scored"] > 0:
            break
        time.sleep(0.02)
    assert status["running"] == 1, "the job ended before it could be killed; make it larger"
    server.kill9()
    sock.close()
    exports = Path(server.data) / "exports"
    server.start()
    assert not (exports / "out.jsonl").exists()
    assert not [f for f in exports.iterdir()] if exports.exists() else True
    r = server.client()
    status = dict(zip(*[iter(r.execute_command("VNEWNEIGHBORS", "big", "STATUS"))] * 2))
    aborted = dict(zip(*[iter(status["aborted-run"])] * 2))
    assert "stopped" in aborted["reason"] and aborted["output"].endswith("out.jsonl")
    done = dict(zip(*[iter(r.execute_command("VNEWNEIGHBORS", "big", "SINCE", "ID", 19990, "OUTPUT", "out.jsonl"))] * 2))
    assert done["new-items"] == 10 and (exports / "out.jsonl").exists()
    assert [f.name for f in exports.iterdir()] == ["out.jsonl"]
    status = dict(zip(*[iter(r.execute_command("VNEWNEIGHBORS", "big", "STATUS"))] * 2))
    assert status["aborted-run"] is None


# Limits on counts: a hostile count is an error, never a huge allocation.
@pytest.mark.parametrize("command", [
    ["VSIM", "s", "ELE", "a", "EF", "5000"],
    ["VSIM", "s", "ELE", "a", "COUNT", BIG],
    ["VSIM", "s", "ELE", "a", "NPROBE", BIG],
    ["VSIM", "s", "ELE", "a", "FILTER-EF", BIG],
    ["VRECOMMEND", "s", "a", "EF", BIG],
    ["SCAN", "0", "COUNT", "-1"],
])
def test_count_arguments_are_bounded(server, command):
    r = server.client()
    r.execute_command("VADD", "s", "VALUES", 3, 1, 2, 3, "a")
    with pytest.raises(redis.ResponseError):
        r.execute_command(*command)
    assert alive(server).execute_command("VCARD", "s") == 1


# --timeout also closes a client that trickles a frame too slowly to ever finish it.
def test_timeout_closes_trickling_client(tmp_path):
    s = Server(tmp_path / "data", "--timeout", "2").start()
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        frame = b"*2\r\n$4\r\nECHO\r\n$20\r\n" + b"x" * 20 + b"\r\n"
        closed_after = None
        started = time.time()
        for byte in frame:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.time() - started
                break
            sock.settimeout(0.5)
            try:
                if sock.recv(100) == b"":
                    closed_after = time.time() - started
                    break
            except socket.timeout:
                pass
        assert closed_after is not None and closed_after < 8, "a trickled frame kept the connection"
        sock.close()
        assert s.client().ping()
    finally:
        s.stop()


# Secrets out of `ps`: the password from a file or the environment.
def test_password_from_file_and_environment(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = Server(tmp_path / "data", "--requirepass-file", str(secret)).start()
    try:
        assert "s3cret" not in " ".join(s.process.args)
        with pytest.raises(redis.AuthenticationError):
            s.client().ping()
        assert s.client(password="s3cret").ping()
    finally:
        s.stop()
    env_server = Server(tmp_path / "data2")
    os.environ["LOOKALIKE_REQUIREPASS"] = "fromenv"
    try:
        env_server.start()
        assert env_server.client(password="fromenv").ping()
    finally:
        del os.environ["LOOKALIKE_REQUIREPASS"]
        env_server.stop()


def test_warning_when_listening_beyond_loopback_without_password(tmp_path):
    s = Server(tmp_path / "data", "--host", "0.0.0.0").start()
    try:
        assert s.client().ping()
    finally:
        s.stop()
    assert "without a password" in s.log.read_text()
