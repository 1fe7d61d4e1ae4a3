#!/usr/bin/env python3
"""Quick server benchmark over loopback TCP: durable pipelined ingest, then pipelined VSIM
throughput and tie-aware recall@10 against numpy brute force.

Data: ../shared/data/debian-pkgs (63,436 x 384, cosine) when present, else a seeded clustered
set. Needs numpy. Start the server first (release build), e.g.
  .build/release/lookalike-server --port 6390 --data /tmp/bench-data
  python3 Tools/bench/quick_server_bench.py --port 6390
This is the quick check; the full side-by-side benchmark with the peers is issue 6's tool.
"""
import argparse
import socket
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "debian-pkgs" / "vectors.f16.npy"


def load(n, dim, seed):
    if SHARED.exists():
        v = np.load(SHARED).astype(np.float32)
        return v[:n] if n else v, "debian-pkgs"
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    v = centres[rng.integers(0, 200, n or 50000)] + 0.3 * rng.standard_normal((n or 50000, dim)).astype(np.float32)
    return v, "generated"


def frame(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(1 << 20)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t = line[:1]
        if t in (b"+", b":"):
            return line[1:]
        if t == b"-":
            raise RuntimeError(line.decode())
        if t == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 20)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        raise RuntimeError(f"unexpected {line!r}")


def timed_in_threads(worker, parts):
    """Runs worker(part) for every part on its own thread (one connection each); seconds taken."""
    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def ingest(port, key, vectors, connections, batch):
    def worker(part):
        c = Conn(port)
        for start in range(0, len(part), batch):
            chunk = part[start:start + batch]
            c.send(b"".join(frame("VADD", key, "FP32", v.tobytes(), f"e{i}") for i, v in chunk))
            for _ in chunk:
                c.reply()
    items = list(enumerate(vectors))
    return len(vectors) / timed_in_threads(worker, [items[i::connections] for i in range(connections)])


def query(port, key, queries, connections, depth, ef, k=10):
    results = [None] * len(queries)

    def worker(idx):
        c = Conn(port)
        extra = ("EF", ef) if ef else ()
        for start in range(0, len(idx), depth):
            chunk = idx[start:start + depth]
            c.send(b"".join(frame("VSIM", key, "FP32", queries[i].tobytes(), "COUNT", k, *extra) for i in chunk))
            for i in chunk:
                results[i] = [int(x[1:]) for x in c.reply()]
    seconds = timed_in_threads(worker, [list(range(len(queries)))[i::connections] for i in range(connections)])
    return len(queries) / seconds, results


def recall(vectors, queries, results, k=10):
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q @ x.T
    total = 0.0
    for i, found in enumerate(results):
        kth = np.sort(sims[i])[-k]
        total += sum(1 for j in found[:k] if sims[i, j] >= kth - 1e-6) / k
    return total / len(results)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=6390)
    p.add_argument("--count", type=int, default=0, help="items (0: all of the real set)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--depth", type=int, default=32, help="pipelined queries per connection")
    p.add_argument("--batch", type=int, default=2000, help="pipelined VADDs per connection")
    p.add_argument("--ef", type=int, nargs="*", default=[0, 32, 64, 128])
    a = p.parse_args()
    vectors, source = load(a.count, 384, 1)
    key = f"bench-{int(time.time())}"
    rng = np.random.default_rng(2)
    qidx = rng.choice(len(vectors), a.queries, replace=False)
    queries = vectors[qidx] + 0.01 * rng.standard_normal((a.queries, vectors.shape[1])).astype(np.float32)
    rate = ingest(a.port, key, vectors, a.connections, a.batch)
    print(f"data {source}: {len(vectors)} x {vectors.shape[1]}")
    print(f"ingest: {rate:,.0f} items/s (durable, pipelined VADD FP32, {a.connections} connections)")
    c = Conn(a.port)
    c.send(frame("SAVE"))
    c.reply()
    for ef in a.ef:
        qps, res = query(a.port, key, queries, a.connections, a.depth, ef)
        print(f"VSIM COUNT 10 EF {ef or 'default'}: {qps:,.0f} queries/s, recall@10 {recall(vectors, queries, res):.3f}")


if __name__ == "__main__":
    main()
