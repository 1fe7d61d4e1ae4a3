"""Bad bytes on the wire: the connection gets an error, the server and its data stay intact."""
import os
import random
import struct

import pytest


@pytest.fixture
def seeded(server):
    r = server.client()
    for i in range(20):
        r.execute_command("VADD", "keep", "VALUES", 3, 1, i, 2, f"e{i}")
    return server


def assert_intact(server):
    r = server.client()
    assert r.ping()
    assert r.execute_command("VCARD", "keep") == 20
    assert r.execute_command("VSIM", "keep", "ELE", "e5", "COUNT", 1) == ["e5"]


@pytest.mark.parametrize("payload,message", [
    (b"*2\r\n$5\r\nVCARD\r\n", None),                                  # truncated: no reply, no harm
    (b"*1\r\n$999999999999\r\nx\r\n", b"-ERR Protocol error: invalid bulk length"),
    (b"*99999999999999\r\n", b"-ERR Protocol error: invalid multibulk length"),
    (b"*2\r\n$5\r\nVCARD\r\n:4\r\nkeep\r\n", b"-ERR Protocol error: expected '$', got ':'"),
    (b"*1\r\n$4\r\nPINGxx\r\n", b"-ERR Protocol error: bulk string not terminated by CRLF"),
    (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length"),
    (b'VCARD "keep\r\n', b"-ERR Protocol error: unbalanced quotes"),
    (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length"),
])
def test_malformed_frames(seeded, payload, message):
    reply, closed = seeded.raw(payload)
    if message is None:
        assert reply == b""
    else:
        assert reply.startswith(message), reply
        assert closed
    assert_intact(seeded)


def test_too_long_inline_line_is_refused(seeded):
    reply, closed = seeded.raw(b"PING " + b"x" * (70 << 10))
    assert reply.startswith(b"-ERR Protocol error: too big inline request") and closed
    assert_intact(seeded)


def test_inline_commands_work(seeded):
    reply, _ = seeded.raw(b"PING\r\nVCARD keep\r\n\r\nVSIM keep VALUES 3 1 5 2 COUNT 1\r\nECHO 'a b'\r\n")
    assert reply == b"+PONG\r\n:20\r\n*1\r\n$2\r\ne5\r\n$3\r\na b\r\n"


def test_binary_garbage_never_crashes(seeded):
    rng = random.Random(42)
    for _ in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        seeded.raw(junk, wait=0.05)
    # Structured garbage: frames with random lengths and contents.
    for _ in range(100):
        n = rng.randrange(0, 6)
        frame = b"*%d\r\n" % n + b"".join(
            b"$%d\r\n%s\r\n" % (len(x), x) for x in (os.urandom(rng.randrange(0, 20)) for _ in range(n)))
        seeded.raw(frame[: rng.randrange(1, len(frame) + 1)], wait=0.05)
    assert_intact(seeded)


def test_vector_garbage_never_crashes(seeded):
    r = seeded.client(decode_responses=False)
    rng = random.Random(7)
    for _ in range(200):
        args = [rng.choice([b"VADD", b"VSIM", b"VEMB", b"VREM", b"VSETATTR", b"VRANDMEMBER", b"VINFO"]), b"keep"]
        for _ in range(rng.randrange(0, 8)):
            args.append(rng.choice([b"VALUES", b"FP32", b"ELE", b"COUNT", b"-1", b"0", b"3", b"nan", b"1e309",
                                    b"FILTER", b".a ==", b"(((", b"EF", b"SETATTR", b"{", os.urandom(5),
                                    struct.pack("<f", float("nan")) * 3, b"\xff" * 12]))
        try:
            r.execute_command(*args)
        except Exception:
            pass
    assert_intact_after_writes(seeded)


def assert_intact_after_writes(server):
    r = server.client()
    assert r.ping()
    # Random VADDs may have added valid elements; the original ones are all still there, unchanged.
    for i in range(20):
        assert [float(x) for x in r.execute_command("VEMB", "keep", f"e{i}")] == [1, i, 2]


def test_nan_fp32_blob_is_rejected(seeded):
    r = seeded.client()
    import redis
    with pytest.raises(redis.ResponseError, match="NaN"):
        r.execute_command("VADD", "keep", "FP32", struct.pack("<3f", 1, float("nan"), 0), "e1")
    assert_intact(seeded)


def test_frame_limits(tmp_path):
    from conftest import Server
    s = Server(tmp_path / "data", "--max-bulk-bytes", "1000", "--max-arguments", "10").start()
    try:
        reply, closed = s.raw(b"*1\r\n$2000\r\n")
        assert reply.startswith(b"-ERR Protocol error: invalid bulk length") and closed
        reply, closed = s.raw(b"*11\r\n")
        assert reply.startswith(b"-ERR Protocol error: invalid multibulk length") and closed
        assert s.client().ping()
    finally:
        s.stop()


def test_crlf_in_a_command_name_cannot_forge_a_reply(seeded):
    # The unknown-command error echoes the name; a CR/LF inside it must not start a new reply.
    name = b"FOO\r\n+OK"
    reply, _ = seeded.raw(b"*1\r\n$%d\r\n%s\r\nPING\r\n" % (len(name), name))
    lines = reply.split(b"\r\n")
    assert lines[0].startswith(b"-ERR unknown command 'FOO  +OK'") and lines[1] == b"+PONG", reply


def test_every_command_with_cut_arguments_never_crashes(seeded):
    # Each command with its arguments cut short at every length, and with trailing junk.
    r = seeded.client()
    commands = list(r.command())
    assert "vsim" in commands and len(commands) > 20
    full = ["keep", "ELE", "e1", "VALUES", "3", "1", "2", "3", "COUNT", "5", "FILTER", ".a", "SETATTR", "{}"]
    for name in commands:
        if name in ("shutdown", "quit", "flushall", "flushdb", "del", "unlink", "debug"):
            continue
        for n in range(len(full) + 1):
            try:
                r.execute_command(name, *full[:n])
            except Exception:
                pass
    assert_intact_after_writes(seeded)
