"""Runs the real lookalike-server binary on a free loopback port with its own data folder."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("LOOKALIKE_BIN", ROOT / ".build" / "debug"))
SERVER = BIN / "lookalike-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data, *extra):
        self.data = str(data)
        self.extra = list(extra)
        self.port = free_port()
        self.process = None
        self.log = Path(self.data + ".log")

    def start(self):
        self.process = subprocess.Popen(
            [str(SERVER), "--port", str(self.port), "--data", self.data, *self.extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    reply = s.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=timeout)
        return self.process.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self, sig=signal.SIGKILL):
        self.stop(sig)
        return self.start()

    def client(self, **kw):
        """redis-py, RESP2 unless protocol=3 is asked for (redis-py 8 would pick RESP3)."""
        kw.setdefault("decode_responses", True)
        kw.setdefault("protocol", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30, **kw)

    def cli(self, *args, stdin=None):
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], input=stdin,
                             capture_output=True, text=True, timeout=30)
        return out.stdout

    def raw(self, payload: bytes, wait=1.0):
        """Sends bytes on a fresh connection; returns (reply bytes, whether the server closed it)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as s:
            s.sendall(payload)
            chunks, closed = [], False
            deadline = time.time() + wait
            while time.time() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    closed = True
                    break
                chunks.append(chunk)
            return b"".join(chunks), closed


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture
def r(server):
    return server.client()


@pytest.fixture
def r3(server):
    return server.client(protocol=3)


def as_dict(reply, value=lambda v: v):
    """A RESP3 map, or a RESP2 flat key/value list, as a dict."""
    if isinstance(reply, dict):
        return {k: value(v) for k, v in reply.items()}
    return {k: value(v) for k, v in zip(reply[::2], reply[1::2])}
