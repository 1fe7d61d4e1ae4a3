"""--config FILE (Redis's `directive value` format) against the same flags, and CONFIG REWRITE."""
import subprocess
import time

import pytest
import redis

from conftest import SERVER, Server, free_port


def config_get(r, name):
    return r.config_get(name)[name]


def write(path, text):
    path.write_text(text)
    return str(path)


def test_values_from_the_file_show_in_config_get(tmp_path):
    conf = write(tmp_path / "lookalike.conf", "\n".join([
        "# a comment line",
        "maxclients 123",                # Redis's spelling of --max-clients
        "timeout 50",
        "",
        "slowlog-max-len 7",             # a flag's own name
        'default-index "HNSW16"',        # quoted
        "max-pipeline '4000'",
        "LOOKALIKE-MAX-COUNT 77",        # case-insensitive; CONFIG's lookalike- prefix accepted
    ]) + "\n")
    s = Server(tmp_path / "data", "--config", conf).start()
    try:
        r = s.client()
        assert config_get(r, "maxclients") == "123"
        assert config_get(r, "timeout") == "50"
        assert config_get(r, "slowlog-max-len") == "7"
        assert config_get(r, "lookalike-default-index") == "HNSW16"
        assert config_get(r, "lookalike-max-pipeline") == "4000"
        assert config_get(r, "lookalike-max-count") == "77"
        assert r.info("server")["config_file"] == conf
    finally:
        s.stop()


def test_a_flag_overrides_the_file(tmp_path):
    conf = write(tmp_path / "lookalike.conf", "slowlog-max-len 7\nmax-clients 200\n")
    s = Server(tmp_path / "data", "--config", conf, "--slowlog-max-len", "9").start()
    try:
        r = s.client()
        assert config_get(r, "slowlog-max-len") == "9"
        assert config_get(r, "maxclients") == "200"
    finally:
        s.stop()


def test_port_and_data_from_the_file(tmp_path):
    port = free_port()
    data = tmp_path / "from-file"
    conf = write(tmp_path / "lookalike.conf", f"port {port}\ndir {data}\nbind 127.0.0.1\n")
    p = subprocess.Popen([str(SERVER), "--config", conf], stderr=subprocess.PIPE)
    try:
        r = None
        for _ in range(300):
            try:
                r = redis.Redis(port=port, protocol=2, decode_responses=True)
                r.ping()
                break
            except redis.ConnectionError:
                p.poll()
                assert p.returncode is None
                time.sleep(0.05)
        assert config_get(r, "dir") == str(data)
        assert (data / "data.mdb").exists()
    finally:
        p.terminate()
        p.wait(timeout=30)


@pytest.mark.parametrize("lines,line,words", [
    (["maxclients 10", "# fine", "no-such-flag 1"], 3, "no-such-flag"),
    (["max-clients lots"], 1, "max-clients"),
    (["port 1", "bind 127.0.0.1 -::1"], 2, "one value"),
    (['requirepass "unterminated'], 1, "unbalanced quotes"),
    (["sync sometimes"], 1, "sync"),
])
def test_a_bad_line_stops_the_start_and_is_named(tmp_path, lines, line, words):
    conf = write(tmp_path / "bad.conf", "\n".join(lines) + "\n")
    out = subprocess.run([str(SERVER), "--config", conf, "--data", str(tmp_path / "data"), "--port", str(free_port())],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert f"{conf} line {line}" in out.stderr and words in out.stderr
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_config_rewrite_keeps_comments_and_order(tmp_path):
    original = "\n".join([
        "# Lookalike settings",
        "slowlog-log-slower-than 5000   ",
        "# the slow log's length",
        "slowlog-max-len 10",
        "maxclients 300",
        "slowlog-max-len 11",            # a repeat: the rewrite keeps one line
    ]) + "\n"
    conf = write(tmp_path / "lookalike.conf", original)
    s = Server(tmp_path / "data", "--config", conf).start()
    try:
        r = s.client()
        assert config_get(r, "slowlog-max-len") == "11"  # the last line wins, as in Redis
        r.config_set("slowlog-log-slower-than", "1234")
        r.config_set("slowlog-max-len", "42")
        assert r.execute_command("CONFIG", "REWRITE") == "OK"
    finally:
        s.stop()
    assert (tmp_path / "lookalike.conf").read_text().splitlines() == [
        "# Lookalike settings",
        "slowlog-log-slower-than 1234",
        "# the slow log's length",
        "slowlog-max-len 42",
        "maxclients 300",
    ]
    s = Server(tmp_path / "data", "--config", conf).start()
    try:
        r = s.client()
        assert config_get(r, "slowlog-log-slower-than") == "1234"
        assert config_get(r, "slowlog-max-len") == "42"
        assert config_get(r, "maxclients") == "300"
    finally:
        s.stop()


def test_config_rewrite_appends_settings_the_file_lacks(tmp_path):
    conf = write(tmp_path / "lookalike.conf", "# only a comment\n")
    s = Server(tmp_path / "data", "--config", conf).start()
    try:
        r = s.client()
        r.config_set("slowlog-max-len", "5")
        r.execute_command("CONFIG", "REWRITE")
    finally:
        s.stop()
    assert (tmp_path / "lookalike.conf").read_text() == "# only a comment\nslowlog-max-len 5\n"


def test_config_rewrite_without_a_file_is_an_error(r):
    with pytest.raises(redis.ResponseError, match="running without a config file"):
        r.execute_command("CONFIG", "REWRITE")
