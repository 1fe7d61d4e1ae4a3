"""Running as a service: the systemd unit passes `systemd-analyze verify`, the server tells
systemd it is ready (sd_notify READY=1 over $NOTIFY_SOCKET) and stopping, and the example
config file starts a server."""
import os
import shutil
import signal
import socket
import subprocess

import pytest
import redis

from conftest import ROOT, SERVER, Server, free_port


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_file_verifies(tmp_path):
    unit = (ROOT / "Tools" / "lookalike.service").read_text()
    assert "Type=notify" in unit and "LimitNOFILE=" in unit
    # verify checks that ExecStart's program exists: point it at the binary under test.
    unit = unit.replace("/usr/local/bin/lookalike-server", str(SERVER.resolve()))
    path = tmp_path / "lookalike.service"
    path.write_text(unit)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Unknown or bad settings are only warnings for verify: there must be none.
    assert "lookalike.service" not in out.stderr + out.stdout, out.stderr


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_and_stopping_are_notified(tmp_path, abstract):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@lookalike-test-{os.getpid()}-{free_port()}"
        listener.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        listener.bind(name)
    listener.settimeout(60)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=name)
    p = subprocess.Popen([str(SERVER), "--port", str(port), "--data", str(tmp_path / "data")], env=env,
                         stderr=subprocess.DEVNULL)
    try:
        ready = listener.recv(4096).decode()
        assert ready.split("\n") == ["READY=1", f"MAINPID={p.pid}"]
        # Ready means ready: the port answers at once.
        assert redis.Redis(port=port, protocol=2).ping()
        p.send_signal(signal.SIGTERM)
        assert listener.recv(4096) == b"STOPPING=1"
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        listener.close()


def test_no_notify_socket_is_fine(server):
    assert server.client().ping()


def test_the_example_config_starts_a_server(tmp_path):
    mport = free_port()
    s = Server(tmp_path / "data", "--config", str(ROOT / "Tools" / "lookalike.conf"), "--metrics-port", str(mport)).start()
    try:
        r = s.client()
        assert r.config_get("maxclients") == {"maxclients": "10000"}
        assert r.config_get("dir") == {"dir": str(tmp_path / "data")}  # the flag overrides `dir`
    finally:
        s.stop()
    assert "level=info" in s.log.read_text()  # log-format logfmt from the file
