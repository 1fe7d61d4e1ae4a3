"""The server's log lines for operators (--log-format): one line per administrative or
destructive command, AUTH failures counted and rate-limited, slow commands, seals; JSON lines
parse as JSON, logfmt lines as key=value pairs."""
import json
import re
import time

import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, free_port

LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


def logfmt(line):
    pairs = LOGFMT_PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, f"not logfmt: {line}"
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def json_lines(server):
    return [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]


def audit_lines(lines):
    return [l for l in lines if l["msg"] == "administrative command"]


def test_administrative_commands_are_logged_as_json(tmp_path):
    s = Server(tmp_path / "data", "--log-format", "json").start()
    r = s.client()
    for i in range(5):
        r.execute_command("VADD", "shop", "VALUES", 2, 1, i, f"e{i}")
    r.execute_command("VADD", "other", "VALUES", 2, 1, 1, "x")
    r.execute_command("VCOMPACT", "shop")
    r.execute_command("VCOMPACT", "shop", "STATUS")  # a read a tool polls: not logged
    r.execute_command("SAVE")
    r.execute_command("BGSAVE")
    r.execute_command("CONFIG", "SET", "slowlog-max-len", "64")
    r.execute_command("CONFIG", "GET", "maxclients")  # a read: not logged
    r.execute_command("DEBUG", "RELOAD")
    assert r.execute_command("DEL", "shop", "missing") == 1
    r.execute_command("FLUSHDB")
    r.execute_command("FLUSHALL")
    try:
        r.execute_command("SHUTDOWN")
    except redis.ConnectionError:
        pass  # the reply may or may not arrive before the connection closes
    s.process.wait(timeout=30)

    lines = json_lines(s)  # every line is one JSON object
    assert all({"time", "level", "logger", "msg"} <= set(l) for l in lines)
    audited = audit_lines(lines)
    commands = [l["command"] for l in audited]
    assert commands == ["VCOMPACT", "SAVE", "BGSAVE", "CONFIG", "DEBUG", "DEL", "FLUSHDB", "FLUSHALL", "SHUTDOWN"]
    by_command = {l["command"]: l for l in audited}
    assert by_command["DEL"]["arguments"] == "shop missing" and by_command["DEL"]["result"] == "1"
    assert by_command["CONFIG"]["arguments"] == "SET slowlog-max-len 64"
    assert by_command["VCOMPACT"]["arguments"] == "shop"
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", l["client"]) and l["level"] == "notice" for l in audited)
    dropped = [l for l in lines if l["msg"] == "dropped collection"]
    assert {(l["collection"], l["items"]) for l in dropped} == {("shop", "5"), ("other", "1")}
    # SAVE sealed the mutable segment: the seal's line carries its duration.
    sealed = [l for l in lines if l["msg"] == "sealed segment"]
    assert sealed and all(float(l["seconds"]) >= 0 for l in sealed)


def test_logfmt_lines_and_failed_commands(tmp_path):
    s = Server(tmp_path / "data", "--log-format", "logfmt").start()
    try:
        r = s.client()
        with pytest.raises(redis.ResponseError):
            r.execute_command("CONFIG", "SET", "slowlog-max-len", "-5")
        r.execute_command("DEL", 'odd "name" with spaces')
    finally:
        s.stop()
    parsed = [logfmt(line) for line in s.log.read_text().splitlines() if line.strip()]
    audited = [p for p in parsed if p["msg"] == "administrative command"]
    assert [p["command"] for p in audited] == ["CONFIG", "DEL"]
    assert audited[0]["result"].startswith("error: ERR")
    assert audited[1]["arguments"] == 'odd "name" with spaces' and audited[1]["result"] == "0"


def test_auth_failures_are_counted_and_rate_limited(tmp_path):
    s = Server(tmp_path / "data", "--log-format", "json", "--requirepass", "sesame").start()
    try:
        for _ in range(6):  # raw: redis-py's connection setup would stop at NOAUTH first
            reply, _ = s.raw(b"AUTH guess-xyz\r\n", wait=0.3)
            assert reply.startswith(b"-WRONGPASS")
        good = s.client(password="sesame")
        assert good.info("stats")["acl_access_denied_auth"] == 6
    finally:
        s.stop()
    failures = [l for l in json_lines(s) if l["msg"].startswith("AUTH failed")]
    # The first failure is logged at once; the next five fall within its 10 s window.
    assert len(failures) == 1 and failures[0]["failures-since-last-line"] == "1"
    assert "sesame" not in s.log.read_text() and "guess-xyz" not in s.log.read_text()


def test_slow_commands_are_logged_rate_limited(tmp_path):
    mport = free_port()
    s = Server(tmp_path / "data", "--log-format", "json", "--slowlog-log-slower-than", "0",
               "--slowlog-max-len", "0", "--metrics-port", str(mport)).start()
    started = time.time()
    try:
        r = s.client()
        for _ in range(50):
            r.ping()
        # Every command counts (the threshold is 0), though the slow log keeps none.
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=30) as reply:
            text = reply.read().decode()
        slow_total = [sm.value for f in text_string_to_metric_families(text) for sm in f.samples
                      if sm.name == "lookalike_slow_commands_total"]
        assert slow_total and slow_total[0] >= 50
        assert r.slowlog_len() == 0
    finally:
        s.stop()
    elapsed = time.time() - started
    slow = [l for l in json_lines(s) if l["msg"] == "slow command"]
    assert 1 <= len(slow) <= 1 + int(elapsed / 10)
    assert slow[0]["threshold-micros"] == "0" and "micros" in slow[0]


def test_text_is_the_default_format(server):
    server.client().execute_command("FLUSHALL")
    server.stop()
    line = [l for l in server.log.read_text().splitlines() if "administrative command" in l][0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z notice lookalike\.server : .*command=FLUSHALL", line)
