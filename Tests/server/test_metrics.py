"""The Prometheus endpoint (--metrics-port): scraped over HTTP and parsed with prometheus_client's
own text parser; counters must move by exactly the traffic sent."""
import fcntl
import os
import struct
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import SERVER, Server, free_port


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """Sum over every sample of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def listening_ports(pid):
    """TCP ports the process listens on, from /proc (its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.add(int(fields[1].split(":")[1], 16))
    return ports


def test_metrics_port_is_off_by_default(server):
    assert listening_ports(server.process.pid) == {server.port}
    assert "/metrics" not in server.log.read_text()


def test_counters_move_with_the_traffic(tmp_path):
    mport = free_port()
    s = Server(tmp_path / "data", "--metrics-port", str(mport)).start()
    try:
        assert listening_ports(s.process.pid) == {s.port, mport}
        r = s.client()
        before = scrape(mport)
        for i in range(7):
            r.execute_command("VADD", "shop", "VALUES", 3, 1, i, 2, f"item{i}", "SETATTR",
                              '{"category": "%s"}' % ("shoes" if i % 2 else "hats"))
        for _ in range(5):
            r.execute_command("VSIM", "shop", "VALUES", 3, 1, 1, 2, "COUNT", 3)
        for _ in range(2):
            r.execute_command("VSIM", "shop", "VALUES", 3, 1, 1, 2, "FILTER", '.category == "shoes"')
        for _ in range(3):
            try:
                r.execute_command("VADD", "shop", "VALUES", 2, 1, 1, "wrongdim")
            except Exception:
                pass
        r.ping()
        after = scrape(mport)
        slow_logged = r.slowlog_len()  # before any later command could be slow

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("lookalike_commands_total", command="vadd", collection="shop") == 10
        assert delta("lookalike_command_errors_total", command="vadd", collection="shop") == 3
        assert delta("lookalike_commands_total", command="vsim", collection="shop") == 7
        assert delta("lookalike_command_errors_total", command="vsim", collection="shop") == 0
        assert delta("lookalike_commands_total", command="ping", collection="") == 1
        assert delta("lookalike_command_duration_seconds_count", command="vsim", collection="shop") == 7
        assert value(after, "lookalike_command_duration_seconds_bucket", command="vsim", collection="shop", le="+Inf") == 7
        # Every filtered VSIM plans its one segment (the default indexed attribute is category).
        filtered = total(after, "lookalike_filtered_plans_total") - total(before, "lookalike_filtered_plans_total")
        assert filtered >= 2
        # The 7 good writes were committed in group commits whose sizes add up to 7.
        assert delta("lookalike_commit_batch_size_sum") == 7
        assert delta("lookalike_commit_duration_seconds_count") == delta("lookalike_commit_batch_size_count") >= 1
        assert value(after, "lookalike_collection_items", collection="shop") == 7
        assert value(after, "lookalike_collections") == 1
        assert value(after, "lookalike_connected_clients") >= 1
        assert value(after, "lookalike_lmdb_used_bytes") > 0
        # The commands past the 10 ms threshold are the ones SLOWLOG kept (fewer than 128).
        assert delta("lookalike_slow_commands_total") == slow_logged
        # INFO commandstats counts the same commands as the metrics.
        info = r.info("commandstats")["cmdstat_vsim"]
        assert info["calls"] == value(after, "lookalike_commands_total", command="vsim", collection="shop")

        r.execute_command("DEL", "shop")
        gone = scrape(mport)
        assert ("lookalike_collection_items", (("collection", "shop"),)) not in gone
        assert value(gone, "lookalike_collections") == 0
    finally:
        s.stop()


def test_collection_labels_are_capped(tmp_path):
    mport = free_port()
    s = Server(tmp_path / "data", "--metrics-port", str(mport), "--metrics-max-collections", "2").start()
    try:
        r = s.client()
        for name in ["a", "b", "c", "d"]:
            r.execute_command("VADD", name, "VALUES", 2, 1, 2, "x")
        m = scrape(mport)
        labels = {dict(ls).get("collection") for (n, ls) in m if n == "lookalike_commands_total"}
        assert {"a", "b", "_other"} <= labels and not {"c", "d"} & labels
        assert value(m, "lookalike_commands_total", command="vadd", collection="_other") == 2
        assert value(m, "lookalike_collection_items", collection="_other") == 2
    finally:
        s.stop()


def test_healthz_and_unknown_paths(tmp_path):
    mport = free_port()
    s = Server(tmp_path / "data", "--metrics-port", str(mport)).start()
    try:
        assert get(mport, "/healthz") == (200, "serving\n")
        assert get(mport, "/nothing")[0] == 404
        req = urllib.request.Request(f"http://127.0.0.1:{mport}/metrics", method="POST", data=b"x")
        try:
            urllib.request.urlopen(req, timeout=30)
            assert False, "POST answered"
        except urllib.error.HTTPError as e:
            assert e.code == 405
    finally:
        s.stop()


def test_healthz_says_loading_until_the_server_listens(tmp_path):
    """The metrics port opens before the data folder: while the engine cannot open, /healthz
    answers 503 loading, then 200 serving once the server listens. The open is held here by a
    write lock on byte 0 of LMDB's lock file (what LMDB's own open waits on), taken on a folder
    a first run created, so LMDB finds its lock file initialised when the lock goes."""
    data = tmp_path / "data"
    first = Server(data).start()
    first.client().execute_command("VADD", "kept", "VALUES", 2, 1, 2, "a")
    first.stop()
    held = open(data / "lock.mdb", "r+b")
    fcntl.lockf(held, fcntl.LOCK_EX, 1, 0)
    mport, port = free_port(), free_port()
    p = subprocess.Popen([str(SERVER), "--port", str(port), "--data", str(data), "--metrics-port", str(mport)],
                         stderr=subprocess.DEVNULL)
    try:
        health = None
        for _ in range(600):
            try:
                health = get(mport, "/healthz")
                break
            except urllib.error.URLError:
                time.sleep(0.05)
        assert health == (503, "loading\n")
        assert get(mport, "/metrics")[0] == 200
        assert p.poll() is None
        fcntl.lockf(held, fcntl.LOCK_UN, 1, 0)
        held.close()
        for _ in range(600):
            health = get(mport, "/healthz")
            if health[0] == 200:
                break
            time.sleep(0.05)
        assert health == (200, "serving\n")
        assert redis.Redis(port=port, protocol=2).execute_command("VCARD", "kept") == 1
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_healthz_says_read_only_while_the_disk_is_full_and_recovers(tmp_path):
    """A full disk fails every write, unlike one bad write: /healthz answers 503 read-only and
    INFO says so while reads go on; once space is back the next write commits and the server is
    ready again. The disk is a 16 MiB tmpfs (skipped where mounting one is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        mport = free_port()
        s = Server(disk / "data", "--metrics-port", str(mport))
        s.log = tmp_path / "server.log"  # beside the small disk, not on it
        s.start()
        try:
            r = s.client()
            rows = [struct.pack("256f", *[float((i * 7 + j) % 13) + 1 for j in range(256)]) for i in range(64)]
            r.execute_command("VADD", "shop", "FP32", rows[0], "first")
            assert get(mport, "/healthz") == (200, "serving\n")
            st = os.statvfs(disk)
            with open(disk / "ballast", "wb") as f:  # leave about 1 MiB free
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (1 << 20)))
            failure = None
            for i in range(20_000):
                try:
                    r.execute_command("VADD", "shop", "FP32", rows[i % 64], f"k{i}")
                except redis.ResponseError as e:
                    failure = str(e)
                    break
            assert failure is not None, "the disk never filled"
            status, body = get(mport, "/healthz")
            assert status == 503 and body.startswith("read-only: writes failing since"), body
            persistence = r.info("persistence")
            assert persistence["lookalike_writes_failing"] == 1
            assert persistence["lookalike_write_failure_since"] > 0
            assert value(scrape(mport), "lookalike_writes_failing") == 1
            assert len(r.execute_command("VSIM", "shop", "ELE", "first", "COUNT", 3)) == 3  # reads go on
            assert r.execute_command("VISMEMBER", "shop", "first") == 1
            (disk / "ballast").unlink()
            assert r.execute_command("VADD", "shop", "FP32", rows[1], "after") == 1
            assert get(mport, "/healthz") == (200, "serving\n")
            assert r.info("persistence")["lookalike_writes_failing"] == 0
            assert value(scrape(mport), "lookalike_writes_failing") == 0
            assert r.execute_command("VISMEMBER", "shop", "after") == 1
        finally:
            s.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
